package httpsyntax

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestChunkedScanner(t *testing.T) {
	cases := []struct {
		name    string
		in      string // the body, then possibly bytes that follow it
		n       int    // bytes of the body; -1 when it never ends
		decoded int64
		err     error
	}{
		{"empty body", "0\r\n\r\nGET", 5, 0, nil},
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", 15, 5, nil},
		{"hex sizes and leading zeros", "00A\r\n0123456789\r\n0000\r\n\r\n", 25, 10, nil},
		{"upper and lower hex", "a\r\n0123456789\r\nB\r\n0123456789a\r\n0\r\n\r\n", 36, 21, nil},
		{"extensions", "5;a=b;c=\"d e\"\r\nhello\r\n0;last\r\n\r\n", 32, 5, nil},
		{"whitespace before extension", "5 \t; a = b\r\nhello\r\n0\r\n\r\n", 24, 5, nil},
		{"trailers", "1\r\nx\r\n0\r\nA: 1\r\nB-2:two words\r\n\r\nrest", 32, 1, nil},
		{"bare LF", "1\nx\n0\nA: 1\n\n", 12, 1, nil},
		{"not ended", "5\r\nhello\r\n", -1, 5, nil},
		{"no size", "\r\n", 0, 0, ErrChunkedSyntax},
		{"bad size", "x\r\n", 0, 0, ErrChunkedSyntax},
		{"negative size", "-1\r\n", 0, 0, ErrChunkedSyntax},
		{"junk after size", "5x\r\n", 1, 0, ErrChunkedSyntax},
		{"CR without LF", "5\rhello", 2, 0, ErrChunkedSyntax},
		{"data too long", "1\r\nxy\r\n", 4, 1, ErrChunkedSyntax},
		{"control byte in extension", "1;\x01\r\n", 2, 0, ErrChunkedSyntax},
		{"obs-fold in trailers", "0\r\nA: 1\r\n 2\r\n\r\n", 9, 0, ErrChunkedSyntax},
		{"trailer without colon", "0\r\nA\r\n\r\n", 4, 0, ErrChunkedSyntax},
		{"size overflow", "1" + strings.Repeat("0", 16) + "\r\n", 16, 0, ErrChunkedTooLarge},
		{"size line too long", "1;" + strings.Repeat("x", maxChunkLine), maxChunkLine, 0, ErrChunkedTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, then byte by byte: the outcome must be the same.
			for _, step := range []int{len(tc.in), 1} {
				var s ChunkedScanner
				total, done := 0, false
				var err error
				for off := 0; off < len(tc.in) && !done && err == nil; off += step {
					piece := tc.in[off:min(off+step, len(tc.in))]
					var n int
					n, done, err = s.Scan([]byte(piece))
					total += n
					if err == nil && !done && n != len(piece) {
						t.Fatalf("step %d: consumed %d of %d without error or end", step, n, len(piece))
					}
				}
				if !errors.Is(err, tc.err) {
					t.Fatalf("step %d: error %v, want %v", step, err, tc.err)
				}
				if tc.err != nil && total != tc.n {
					t.Errorf("step %d: error at %d, want %d", step, total, tc.n)
				}
				if tc.err == nil && (done != (tc.n >= 0) || done && total != tc.n) {
					t.Errorf("step %d: done=%v after %d bytes, want end at %d", step, done, total, tc.n)
				}
				if s.Decoded() != tc.decoded {
					t.Errorf("step %d: decoded %d, want %d", step, s.Decoded(), tc.decoded)
				}
				if done != s.Done() {
					t.Errorf("step %d: Done() = %v", step, s.Done())
				}
			}
		})
	}
}

func TestChunkedScannerLimits(t *testing.T) {
	s := ChunkedScanner{MaxTrailerBytes: 10}
	_, _, err := s.Scan([]byte("0\r\nA: 123456789\r\n\r\n"))
	if !errors.Is(err, ErrChunkedTooLarge) {
		t.Fatalf("trailer over the limit: %v", err)
	}
	if _, _, again := s.Scan([]byte("0\r\n\r\n")); again != err {
		t.Fatalf("the error does not stick: %v", again)
	}
	s.Reset()
	if s.MaxTrailerBytes != 10 {
		t.Fatalf("Reset lost MaxTrailerBytes")
	}
	n, _, _ := s.Scan([]byte("8\r\nab"))
	if n != 5 || s.Pending() != 6 || s.Decoded() != 2 {
		t.Fatalf("n=%d pending=%d decoded=%d", n, s.Pending(), s.Decoded())
	}
}

// ExampleChunkedScanner finds where a chunked body ends on a buffered
// reader, leaving what follows it unread.
func ExampleChunkedScanner() {
	br := bufio.NewReaderSize(strings.NewReader("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"), 16)
	var s ChunkedScanner
	for {
		if _, err := br.Peek(1); err != nil {
			fmt.Println("cut short:", err)
			return
		}
		buf, _ := br.Peek(br.Buffered())
		n, done, err := s.Scan(buf)
		if err != nil {
			fmt.Println(err)
			return
		}
		br.Discard(n)
		if done {
			break
		}
	}
	rest, _ := io.ReadAll(br)
	fmt.Printf("body of %d bytes, then %q\n", s.Decoded(), rest)
	// Output: body of 9 bytes, then "HTTP/1.1 200 OK\r\n"
}
