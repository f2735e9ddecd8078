package shadow

import (
	"bufio"
	"errors"
	"io"
)

// protocolError is a response the reader cannot frame. The connection cannot
// be used after it, since the next response's start is unknown.
type protocolError string

func (e protocolError) Error() string { return "shadow response: " + string(e) }

const (
	// readBufferSize is the response reader's buffer, reused for the life of
	// a worker. It also bounds one status, header or chunk-size line.
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
	// close is true when the connection ends after this response: the
	// server said so, or an HTTP/1.0 server did not say keep-alive, or the
	// body was delimited by the end of the connection.
	close bool
}

// readResponse reads the response to one request from br, skipping interim
// (1xx) responses, and discards its body. head is true when the request was
// HEAD, whose response never has a body. It reads no byte past the end of
// the response and allocates nothing.
func readResponse(br *bufio.Reader, head bool) (response, error) {
	budget := maxHeaderBytes
	for {
		res, body, err := readHead(br, &budget)
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
			err = discardChunked(br)
		case bodyLength:
			err = discardN(br, body.length)
		default:
			res.close = true
			err = discardToEOF(br)
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
func readHead(br *bufio.Reader, budget *int) (response, bodyFraming, error) {
	var res response
	var body bodyFraming
	line, err := readLine(br, budget)
	if err != nil {
		return res, body, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return res, body, protocolError("malformed status line")
	}
	minor := line[7]
	if minor < '0' || minor > '9' {
		return res, body, protocolError("malformed status line")
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return res, body, protocolError("malformed status code")
		}
		res.status = res.status*10 + int(c-'0')
	}
	http10 := minor == '0'
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
		colon := 0
		for colon < len(line) && line[colon] != ':' {
			colon++
		}
		if colon == 0 || colon == len(line) {
			return res, body, protocolError("malformed header line")
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		switch classify(name) {
		case fieldContentLength:
			n, ok := parseContentLength(value)
			if !ok || (length >= 0 && n != length) {
				return res, body, protocolError("invalid Content-Length")
			}
			length = n
		case fieldTransferEncoding:
			hasTE = true
			// Only the last coding matters: chunked must be final for the
			// body to be self-delimiting.
			chunked = lastListItemIs(value, "chunked")
		case fieldConnection:
			if hasToken(value, "close") {
				res.close = true
			}
			if hasToken(value, "keep-alive") {
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
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
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

// parseContentLength accepts 1*DIGIT, or a list of identical values as some
// servers send after merging fields.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	for len(v) > 0 {
		var item []byte
		item, v = nextListItem(v)
		if len(item) == 0 || len(item) > 18 {
			return 0, false
		}
		var m int64
		for _, c := range item {
			if c < '0' || c > '9' {
				return 0, false
			}
			m = m*10 + int64(c-'0')
		}
		if n >= 0 && m != n {
			return 0, false
		}
		n = m
	}
	return n, n >= 0
}

func lastListItemIs(v []byte, tok string) bool {
	var last []byte
	for len(v) > 0 {
		var item []byte
		item, v = nextListItem(v)
		if len(item) > 0 {
			last = item
		}
	}
	return equalFold(last, tok)
}

// discardN drops exactly n body bytes.
func discardN(br *bufio.Reader, n int64) error {
	for n > 0 {
		step := min(n, discardStep)
		d, err := br.Discard(int(step))
		n -= int64(d)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// discardChunked drops a chunked body: chunks, the last chunk and the
// trailer section.
func discardChunked(br *bufio.Reader) error {
	budget := maxHeaderBytes
	for {
		line, err := readLine(br, &budget)
		if err != nil {
			return err
		}
		// The budget bounds size lines and trailers, not chunk data.
		budget = maxHeaderBytes
		size, ok := parseChunkSize(line)
		if !ok {
			return protocolError("malformed chunk size")
		}
		if size == 0 {
			for {
				line, err := readLine(br, &budget)
				if err != nil {
					return err
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		if err := discardN(br, size); err != nil {
			return err
		}
		line, err = readLine(br, &budget)
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return protocolError("missing CRLF after chunk data")
		}
	}
}

// parseChunkSize parses the hex size of a chunk-size line, ignoring chunk
// extensions.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == ' ' || c == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}

// discardToEOF drops a body delimited by the end of the connection.
func discardToEOF(br *bufio.Reader) error {
	for {
		_, err := br.Discard(discardStep)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
