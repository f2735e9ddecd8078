package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// answer is the whole answer of the sink to any request.
const answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

// Serve answers every HTTP/1.1 request on addr with an empty 200 until
// ctx ends. It frames requests itself (Content-Length and chunked bodies)
// and answers pipelined requests in order, writing the answers of
// everything read in one go at once, so that it costs far less than the
// replay it serves: what is measured is the replay. ready receives the
// address listened on.
func Serve(ctx context.Context, addr string, ready func(string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ready(ln.Addr().String())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			Answer(c)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// Answer answers the requests of one connection until it ends or sends
// something that is not HTTP/1.1.
func Answer(c net.Conn) { AnswerWith(c, Hooks{}) }

// Hooks let a caller see the requests that AnswerWith answers; every field
// may be nil.
type Hooks struct {
	// Header sees each header line of a request: its name and its value
	// without surrounding blanks. Both are valid only during the call.
	Header func(name, value []byte)
	// Request is called once a request has been read whole, before it is
	// answered; it returns how long to wait before answering (answers
	// still go out in order, as a real server sends them).
	Request func() time.Duration
	// BadBody is called when a body cannot be framed, which ends the
	// connection.
	BadBody func()
}

// AnswerWith is Answer that calls h's hooks.
func AnswerWith(c net.Conn, h Hooks) {
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 16<<10)
	var chunk httpsyntax.ChunkedScanner
	for {
		length, chunked, err := readHead(br, h.Header)
		if err != nil {
			return
		}
		if chunked {
			chunk.Reset()
			for !chunk.Done() {
				b, err := br.Peek(max(1, br.Buffered()))
				if err != nil {
					return
				}
				n, _, err := chunk.Scan(b)
				if err != nil {
					if h.BadBody != nil {
						h.BadBody()
					}
					return
				}
				br.Discard(n)
			}
		} else if _, err := br.Discard(int(length)); err != nil {
			if h.BadBody != nil {
				h.BadBody()
			}
			return
		}
		if h.Request != nil {
			if delay := h.Request(); delay > 0 {
				if bw.Flush() != nil {
					return
				}
				time.Sleep(delay)
			}
		}
		bw.WriteString(answer)
		if br.Buffered() == 0 && bw.Flush() != nil {
			return
		}
	}
}

// readHead reads a request head and returns how its body is framed;
// header, if not nil, sees each header line.
func readHead(br *bufio.Reader, header func(name, value []byte)) (length int64, chunked bool, err error) {
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = fmt.Errorf("header line longer than %d bytes", br.Size())
			}
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0 && first:
			continue // a stray line end between requests
		case len(line) == 0:
			return length, chunked, nil
		case first:
			first = false
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, io.ErrUnexpectedEOF
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.HasSuffix(bytes.ToLower(value), []byte("chunked"))
		}
		if header != nil {
			header(name, value)
		}
	}
}
