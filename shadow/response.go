package shadow

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// protocolError is a response the reader cannot frame. The connection cannot
// be used after it, since the next response's start is unknown.
type protocolError string

func (e protocolError) Error() string { return "shadow response: " + string(e) }

const (
	// readBufferSize is each connection's response buffer. It also bounds
	// one status or header line.
	readBufferSize = 16 << 10
	// maxHeaderBytes bounds one response's header block, interim responses
	// included, so that a broken shadow cannot keep the reader in a header
	// block forever.
	maxHeaderBytes = 1 << 20
	// discardStep is how much Discard is asked for at once when a body's
	// length is unknown or larger than an int.
	discardStep = 1 << 30
)

// response is what the reader needs to know about one final response.
type response struct {
	status int
	proto  httpmsg.Proto
	// close is true when the connection ends after this response: the
	// server said so, or an HTTP/1.0 server did not say keep-alive, or the
	// body was delimited by the end of the connection.
	close bool
}

// capture collects an answer for SenderConfig.Answer: fields in one arena,
// the body up to a cap. A nil *capture keeps nothing.
type capture struct {
	max     int // body bytes kept
	body    []byte
	bodyLen int64
	header  fieldList
	trailer fieldList
	line    []byte // a trailer line that spans reads
}

// fieldList holds fields as offsets into one arena, turned into slices at
// the end (the arena may move while it grows).
type fieldList struct {
	arena []byte
	offs  []int // per field: name start, value start, value end
}

func (l *fieldList) add(name, value []byte) {
	l.offs = append(l.offs, len(l.arena))
	l.arena = append(l.arena, name...)
	l.offs = append(l.offs, len(l.arena))
	l.arena = append(l.arena, value...)
	l.offs = append(l.offs, len(l.arena))
}

// addString is add for the strings an HPACK decoder gives.
func (l *fieldList) addString(name, value string) {
	l.offs = append(l.offs, len(l.arena))
	l.arena = append(l.arena, name...)
	l.offs = append(l.offs, len(l.arena))
	l.arena = append(l.arena, value...)
	l.offs = append(l.offs, len(l.arena))
}

// copyFrom appends the fields of from.
func (l *fieldList) copyFrom(from *fieldList) {
	base := len(l.arena)
	l.arena = append(l.arena, from.arena...)
	for _, o := range from.offs {
		l.offs = append(l.offs, base+o)
	}
}

func (l *fieldList) reset() { l.arena, l.offs = l.arena[:0], l.offs[:0] }

func (l *fieldList) fields() []httpmsg.Field {
	if len(l.offs) == 0 {
		return nil
	}
	out := make([]httpmsg.Field, 0, len(l.offs)/3)
	for i := 0; i < len(l.offs); i += 3 {
		n, v, e := l.offs[i], l.offs[i+1], l.offs[i+2]
		out = append(out, httpmsg.Field{Name: l.arena[n:v:v], Value: l.arena[v:e:e]})
	}
	return out
}

func (c *capture) keep(b []byte) {
	c.bodyLen += int64(len(b))
	if room := c.max - len(c.body); room > 0 {
		c.body = append(c.body, b[:min(room, len(b))]...)
	}
}

// answer returns what was captured as an Answer.
func (c *capture) answer(res response) *httpmsg.Answer {
	return &httpmsg.Answer{
		Proto:     res.proto,
		Status:    res.status,
		Header:    c.header.fields(),
		Trailer:   c.trailer.fields(),
		Body:      c.body,
		BodyLen:   c.bodyLen,
		Truncated: c.bodyLen > int64(len(c.body)),
	}
}

// readResponse reads the response to one request from br, skipping interim
// (1xx) responses, and discards its body, or keeps it in c when c is not
// nil. head is true when the request was HEAD, whose response never has a
// body. It reads no byte past the end of the response, and without c it
// allocates nothing.
func readResponse(br *bufio.Reader, head bool, sc *httpsyntax.ChunkedScanner, c *capture) (response, error) {
	budget := maxHeaderBytes
	for {
		if c != nil {
			c.header.reset()
		}
		res, body, err := readHead(br, &budget, c)
		if err != nil {
			return res, err
		}
		if res.status >= 100 && res.status < 200 {
			if res.status == 101 {
				// We never ask to switch protocols; a switched connection
				// cannot carry the next response.
				return res, protocolError("unexpected 101 Switching Protocols")
			}
			// 100 Continue and friends: the final response follows. The
			// body was sent without waiting, as a client may.
			continue
		}
		if head || res.status == 204 || res.status == 304 {
			return res, nil
		}
		switch body.kind {
		case bodyChunked:
			err = readChunked(br, sc, c)
		case bodyLength:
			err = readN(br, body.length, c)
		default:
			res.close = true
			err = readToEOF(br, c)
		}
		return res, err
	}
}

type bodyKind uint8

const (
	bodyToClose bodyKind = iota
	bodyLength
	bodyChunked
)

type bodyFraming struct {
	kind   bodyKind
	length int64
}

// readHead reads a status line and header block.
func readHead(br *bufio.Reader, budget *int, c *capture) (response, bodyFraming, error) {
	var res response
	var body bodyFraming
	line, err := readLine(br, budget)
	if err != nil {
		return res, body, err
	}
	status, minor, ok := httpsyntax.ParseStatusLine(line)
	if !ok {
		return res, body, protocolError("malformed status line")
	}
	res.status = status
	http10 := minor == 0
	res.proto = httpmsg.HTTP11
	if http10 {
		res.proto = httpmsg.HTTP10
	}
	keepAlive, hasTE, chunked := false, false, false
	length := int64(-1)
	for {
		line, err := readLine(br, budget)
		if err != nil {
			return res, body, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding continues the previous field; none of
			// the fields we interpret may be folded in practice, so skip.
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return res, body, protocolError("malformed header line")
		}
		name, value := line[:colon], httpsyntax.TrimOWS(line[colon+1:])
		if c != nil {
			c.header.add(name, value)
		}
		switch classify(name) {
		case fieldContentLength:
			n, ok := httpsyntax.ParseContentLength(value)
			if !ok || (length >= 0 && n != length) {
				return res, body, protocolError("invalid Content-Length")
			}
			length = n
		case fieldTransferEncoding:
			hasTE = true
			// Only the last coding matters: chunked must be final for the
			// body to be self-delimiting.
			chunked = httpsyntax.LastElementIs(value, "chunked")
		case fieldConnection:
			if httpsyntax.HasToken(value, "close") {
				res.close = true
			}
			if httpsyntax.HasToken(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	if http10 && !keepAlive {
		res.close = true
	}
	switch {
	case hasTE && chunked:
		body.kind = bodyChunked
	case hasTE:
		body.kind = bodyToClose
	case length >= 0:
		body.kind, body.length = bodyLength, length
	}
	return res, body, nil
}

// readLine returns the next line without its line ending. The slice points
// into br's buffer and is valid until the next read.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, protocolError("line too long")
		}
		return nil, unexpectedEOF(err)
	}
	if *budget -= len(line); *budget < 0 {
		return nil, protocolError("header block too large")
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readN reads exactly n body bytes, keeping the first ones in c.
func readN(br *bufio.Reader, n int64, c *capture) error {
	for c != nil && n > 0 && len(c.body) < c.max {
		if _, err := br.Peek(1); err != nil {
			return unexpectedEOF(err)
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		c.keep(b)
		br.Discard(len(b))
		n -= int64(len(b))
	}
	if c != nil {
		c.bodyLen += n
	}
	for n > 0 {
		d, err := br.Discard(int(min(n, discardStep)))
		n -= int64(d)
		if err != nil {
			return unexpectedEOF(err)
		}
	}
	return nil
}

// readToEOF reads a body delimited by the end of the connection.
func readToEOF(br *bufio.Reader, c *capture) error {
	for {
		if c == nil {
			_, err := br.Discard(discardStep)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		b, _ := br.Peek(br.Buffered())
		c.keep(b)
		br.Discard(len(b))
	}
}

// Where readChunked is in a chunked body when it feeds framing lines.
const (
	chunkSize    = iota // a chunk-size line
	chunkDataEnd        // the line end after chunk data
	chunkTrailer        // the trailer section
)

// readChunked reads a chunked body: chunks, the last chunk and the trailer
// section, as httpsyntax.ChunkedScanner finds its end. Without c it feeds
// the scanner whatever is buffered; with c it feeds framing one line at a
// time, so that it knows which bytes are chunk data and which lines are
// trailers.
func readChunked(br *bufio.Reader, sc *httpsyntax.ChunkedScanner, c *capture) error {
	sc.Reset()
	phase := chunkSize
	for {
		if _, err := br.Peek(1); err != nil {
			return unexpectedEOF(err)
		}
		buf, _ := br.Peek(br.Buffered())
		if c == nil {
			n, done, err := sc.Scan(buf)
			br.Discard(n)
			if err != nil {
				return protocolError(err.Error())
			}
			if done {
				return nil
			}
			continue
		}
		if p := sc.Pending(); p > 0 {
			data := buf[:min(p, int64(len(buf)))]
			c.keep(data)
			n, _, _ := sc.Scan(data)
			br.Discard(n)
			continue
		}
		line, whole := buf, false
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, whole = buf[:i+1], true
		}
		n, done, err := sc.Scan(line)
		if phase == chunkTrailer {
			c.line = append(c.line, line[:n]...)
		}
		br.Discard(n)
		if err != nil {
			return protocolError(err.Error())
		}
		if done {
			return nil
		}
		if !whole {
			continue
		}
		switch phase {
		case chunkSize:
			phase = chunkDataEnd
			if sc.Pending() == 0 {
				phase = chunkTrailer // the last chunk
			}
		case chunkDataEnd:
			phase = chunkSize
		case chunkTrailer:
			t := bytes.TrimRight(c.line, "\r\n")
			if i := bytes.IndexByte(t, ':'); i > 0 {
				c.trailer.add(t[:i], httpsyntax.TrimOWS(t[i+1:]))
			}
			c.line = c.line[:0]
		}
	}
}
