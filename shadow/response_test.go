package shadow

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	const next = "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name   string
		in     string // "\n" becomes "\r\n"; next is appended after it
		head   bool
		status int
		close  bool
		err    string // substring of the error, "" for success
		eof    bool   // the response ends at EOF: do not append next
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", status: 200},
		{name: "no reason phrase", in: "HTTP/1.1 200\nContent-Length: 0\n\n", status: 200},
		{name: "identical content-lengths", in: "HTTP/1.1 200 OK\nContent-Length: 2, 2\nContent-Length: 2\n\nhi", status: 200},
		{name: "chunked with extensions and trailers", in: "HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n" +
			"4;name=value\nwiki\n5\npedia\nA\n in chunks\n0\nX-Trailer: 1\nX-Other: 2\n\n", status: 200},
		{name: "HEAD ignores Content-Length", in: "HTTP/1.1 200 OK\nContent-Length: 1000\n\n", head: true, status: 200},
		{name: "HEAD ignores chunked", in: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n", head: true, status: 200},
		{name: "204 has no body", in: "HTTP/1.1 204 No Content\nContent-Length: 10\n\n", status: 204},
		{name: "304 has no body", in: "HTTP/1.1 304 Not Modified\nTransfer-Encoding: chunked\n\n", status: 304},
		{name: "interim responses skipped", in: "HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </a>\n\nHTTP/1.1 201 Created\nContent-Length: 1\n\nx", status: 201},
		{name: "connection close", in: "HTTP/1.1 200 OK\nConnection: Keep-Alive, CLOSE\nContent-Length: 1\n\nx", status: 200, close: true},
		{name: "HTTP/1.0 closes by default", in: "HTTP/1.0 200 OK\nContent-Length: 1\n\nx", status: 200, close: true},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 1\n\nx", status: 200},
		{name: "read to close", in: "HTTP/1.1 200 OK\n\nall of this until EOF", status: 200, close: true, eof: true},
		{name: "transfer coding without chunked: read to close", in: "HTTP/1.1 200 OK\nTransfer-Encoding: gzip\nContent-Length: 3\n\nuntil EOF", status: 200, close: true, eof: true},
		{name: "status outside the registry", in: "HTTP/1.1 799 Odd\nContent-Length: 0\n\n", status: 799},
		{name: "101 is refused", in: "HTTP/1.1 101 Switching Protocols\nUpgrade: h2c\n\n", err: "101"},
		{name: "malformed status line", in: "HTTP/2 200 OK\n\n", err: "malformed status line"},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH_9.6\n", err: "malformed status line"},
		{name: "bad status code", in: "HTTP/1.1 2x0 OK\n\n", err: "malformed status code"},
		{name: "conflicting content-lengths", in: "HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: 3\n\nhi", err: "Content-Length"},
		{name: "negative content-length", in: "HTTP/1.1 200 OK\nContent-Length: -1\n\n", err: "Content-Length"},
		{name: "header without colon", in: "HTTP/1.1 200 OK\nBroken\n\n", err: "malformed header"},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nzz\n", err: "chunk size"},
		{name: "chunk without CRLF", in: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nabc\n0\n\n", err: "missing CRLF"},
		{name: "truncated body", in: "HTTP/1.1 200 OK\nContent-Length: 10\n\nshort", err: "unexpected EOF", eof: true},
		{name: "truncated head", in: "HTTP/1.1 200 OK\nContent-Le", err: "unexpected EOF", eof: true},
		{name: "line too long", in: "HTTP/1.1 200 OK\nX-Big: " + strings.Repeat("a", readBufferSize) + "\n\n", err: "line too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := crlf(tc.in)
			if !tc.eof {
				in += next
			}
			br := bufio.NewReaderSize(strings.NewReader(in), readBufferSize)
			res, err := readResponse(br, tc.head)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.status != tc.status || res.close != tc.close {
				t.Errorf("got status %d close %v, want %d %v", res.status, res.close, tc.status, tc.close)
			}
			if tc.eof {
				return
			}
			// Not one byte of the next response may have been consumed.
			rest, _ := io.ReadAll(br)
			if string(rest) != next {
				t.Errorf("left %q, want the next response", rest)
			}
		})
	}
}

func TestFailReasonOfProtocolAndEOF(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"))
	_, err := readResponse(br, false)
	if !errors.Is(err, io.ErrUnexpectedEOF) || failReasonOf(err) != FailReset {
		t.Errorf("truncated body: %v -> %v, want reset", err, failReasonOf(err))
	}
	br = bufio.NewReader(strings.NewReader("garbage\r\n"))
	_, err = readResponse(br, false)
	if failReasonOf(err) != FailProtocol {
		t.Errorf("garbage: %v -> %v, want protocol", err, failReasonOf(err))
	}
}

func TestReasonLabels(t *testing.T) {
	want := []string{"connect", "tls", "write", "timeout", "aborted", "reset", "protocol", "shutdown", "backoff"}
	for r := range FailReason(NumFailReasons) {
		if r.String() != want[r] {
			t.Errorf("FailReason %d = %q, want %q", r, r, want[r])
		}
	}
	if DropQueueFull.String() != "queue_full" || DropClosed.String() != "closed" {
		t.Errorf("drop labels %q %q", DropQueueFull, DropClosed)
	}
}
