package shadow

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/shadowtee/shadowtee/httpsyntax"
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
		{name: "bad status code", in: "HTTP/1.1 2x0 OK\n\n", err: "malformed status line"},
		{name: "conflicting content-lengths", in: "HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: 3\n\nhi", err: "Content-Length"},
		{name: "negative content-length", in: "HTTP/1.1 200 OK\nContent-Length: -1\n\n", err: "Content-Length"},
		{name: "header without colon", in: "HTTP/1.1 200 OK\nBroken\n\n", err: "malformed header"},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nzz\n", err: "malformed chunked body"},
		{name: "chunk without CRLF", in: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nabc\n0\n\n", err: "malformed chunked body"},
		{name: "chunk size overflow", in: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n10000000000000000\n", err: "limit exceeded"},
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
			var sc httpsyntax.ChunkedScanner
			res, err := readResponse(br, tc.head, &sc, nil)
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

// Reading with or without capture consumes the same bytes, in pieces of
// any size; the capture holds the decoded body up to its cap and the
// trailers.
func TestReadResponseCapture(t *testing.T) {
	const next = "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
	in := crlf("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nX-A:  1 \n\n" +
		"4;name=value\nwiki\n5\npedia\nA\n in chunks\n0\nX-Trailer: 1\nX-Other:two words\n\n")
	for _, size := range []int{32, 33, 64, readBufferSize} {
		for _, max := range []int{0, 5, 100} {
			br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in+next)), size)
			if size == readBufferSize {
				br = bufio.NewReaderSize(strings.NewReader(in+next), size)
			}
			var sc httpsyntax.ChunkedScanner
			c := &capture{max: max}
			res, err := readResponse(br, false, &sc, c)
			if err != nil {
				t.Fatalf("buffer %d cap %d: %v", size, max, err)
			}
			a := c.answer(res)
			want := "wikipedia in chunks"[:min(max, 19)]
			if a.Status != 200 || string(a.Body) != want || a.BodyLen != 19 || a.Truncated != (max < 19) ||
				len(a.Header) != 2 || string(a.Header[1].Value) != "1" ||
				len(a.Trailer) != 2 || string(a.Trailer[0].Name) != "X-Trailer" || string(a.Trailer[1].Value) != "two words" {
				t.Errorf("buffer %d cap %d: %+v", size, max, a)
			}
			if rest, _ := io.ReadAll(br); string(rest) != next {
				t.Errorf("buffer %d: left %q", size, rest)
			}
		}
	}
}

// Without capture, reading an answer allocates nothing.
func TestReadResponseDoesNotAllocate(t *testing.T) {
	in := crlf("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nConnection: keep-alive\n\n4\nwiki\n0\nX-T: 1\n\n" +
		"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello")
	sr := strings.NewReader(in)
	br := bufio.NewReaderSize(sr, readBufferSize)
	var sc httpsyntax.ChunkedScanner
	n := testing.AllocsPerRun(100, func() {
		sr.Reset(in)
		br.Reset(sr)
		for range 2 {
			if _, err := readResponse(br, false, &sc, nil); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestFailReasonOfProtocolAndEOF(t *testing.T) {
	var sc httpsyntax.ChunkedScanner
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"))
	_, err := readResponse(br, false, &sc, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) || failReasonOf(err) != FailReset {
		t.Errorf("truncated body: %v -> %v, want reset", err, failReasonOf(err))
	}
	br = bufio.NewReader(strings.NewReader("garbage\r\n"))
	_, err = readResponse(br, false, &sc, nil)
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
	if DropOverflow.String() != "overflow" || DropClosed.String() != "closed" {
		t.Errorf("drop labels %q %q", DropOverflow, DropClosed)
	}
	causes := []string{"idle_timeout", "shadow_closed", "connection_close", "timeout", "error", "shutdown"}
	for c := range CloseCause(NumCloseCauses) {
		if c.String() != causes[c] {
			t.Errorf("CloseCause %d = %q, want %q", c, c, causes[c])
		}
	}
}
