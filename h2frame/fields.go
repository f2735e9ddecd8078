package h2frame

import (
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// blockCheck is what every sink learns about a header block besides its
// fields: its decoded size, and whether it is usable.
type blockCheck struct {
	size      int // RFC 9113 header list size so far
	limit     int
	tooLarge  bool
	malformed bool
	unknowns  int
	regular   bool // a regular field was seen: no pseudo-header may follow
}

// admit counts a field and reports whether to keep it.
func (c *blockCheck) admit(name, value []byte) bool {
	c.size += len(name) + len(value) + entryOverhead
	if c.size > c.limit {
		c.tooLarge = true
	}
	return !c.tooLarge && !c.malformed && c.unknowns == 0
}

// reason says why the block cannot be used, or NumReasons when it can.
func (c *blockCheck) reason() Reason {
	switch {
	case c.unknowns > 0:
		return ReasonStateUnknown
	case c.tooLarge:
		return ReasonHeaderTooLarge
	case c.malformed:
		return ReasonMalformed
	}
	return NumReasons
}

// regularOK checks a regular field as RFC 9113 8.2 asks of a request or
// response: a lower-case token name, no connection-specific field, a value
// without NUL, CR, LF or surrounding whitespace.
func regularOK(name, value []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !httpsyntax.IsTchar(c) || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	switch string(name) { // no allocation: the conversion is only compared
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return false
	case "te":
		if string(value) != "trailers" {
			return false
		}
	}
	return valueOK(value)
}

func valueOK(v []byte) bool {
	if len(v) > 0 && (isWS(v[0]) || isWS(v[len(v)-1])) {
		return false
	}
	for _, c := range v {
		if c == 0 || c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// requestSink decodes a request's header block, or its trailers, into the
// request's arena.
type requestSink struct {
	blockCheck
	r        *Request
	trailers bool
	pseudo   bool // a pseudo-header field was seen
}

func (s *requestSink) unknown() { s.unknowns++ }

func (s *requestSink) field(name, value []byte) {
	if !s.admit(name, value) {
		return
	}
	r := s.r
	if len(name) > 0 && name[0] == ':' {
		s.pseudo = true
		if s.trailers || s.regular || !valueOK(value) {
			s.malformed = true
			return
		}
		var p *span
		switch string(name) {
		case ":method":
			p = &r.method
		case ":scheme":
			p = &r.scheme
		case ":authority":
			p = &r.authority
		case ":path":
			p = &r.path
		case ":protocol":
			p = &r.protocol
		default:
			s.malformed = true
			return
		}
		if p.ok() {
			s.malformed = true
			return
		}
		*p = r.add(value)
		return
	}
	s.regular = true
	if !regularOK(name, value) {
		s.malformed = true
		return
	}
	f := field{name: r.add(name), value: r.add(value)}
	if s.trailers {
		r.trailers = append(r.trailers, f)
		return
	}
	if !r.host.ok() && string(name) == "host" {
		r.host = f.value
	}
	r.fields = append(r.fields, f)
}

// check finishes a request head: the pseudo-header fields a server needs
// (RFC 9113 8.3.1). CONNECT, plain or extended, is told apart.
func (s *requestSink) check() Reason {
	if why := s.reason(); why != NumReasons {
		return why
	}
	r := s.r
	if !r.method.ok() {
		return ReasonMalformed
	}
	if string(r.bytes(r.method)) == "CONNECT" || r.protocol.ok() {
		return ReasonConnect
	}
	if !r.scheme.ok() || !r.path.ok() || r.path.n == 0 || !httpsyntax.IsToken(r.bytes(r.method)) {
		return ReasonMalformed
	}
	return NumReasons
}

// answerSink decodes a response's header block or trailers into fields that
// the Answer will own. The bytes go to one buffer per block.
type answerSink struct {
	blockCheck
	buf      []byte
	spans    []field
	status   int
	trailers bool
	seen     bool // :status was seen
}

func (s *answerSink) unknown() { s.unknowns++ }

func (s *answerSink) field(name, value []byte) {
	if !s.admit(name, value) {
		return
	}
	if len(name) > 0 && name[0] == ':' {
		if s.trailers || s.regular || s.seen || string(name) != ":status" || len(value) != 3 {
			s.malformed = true
			return
		}
		n, ok := httpsyntax.ParseDecimal(value)
		if !ok || n < 100 {
			s.malformed = true
			return
		}
		s.status, s.seen = int(n), true
		return
	}
	s.regular = true
	if !regularOK(name, value) {
		s.malformed = true
		return
	}
	f := field{name: span{int32(len(s.buf)), int32(len(name))}}
	s.buf = append(s.buf, name...)
	f.value = span{int32(len(s.buf)), int32(len(value))}
	s.buf = append(s.buf, value...)
	s.spans = append(s.spans, f)
}

// fields copies the decoded fields into memory the Answer owns: one buffer
// and one slice.
func (s *answerSink) fields() []httpmsg.Field {
	if len(s.spans) == 0 {
		return nil
	}
	own := append([]byte(nil), s.buf...)
	out := make([]httpmsg.Field, len(s.spans))
	for i, f := range s.spans {
		out[i] = httpmsg.Field{
			Name:  own[f.name.off : f.name.off+f.name.n : f.name.off+f.name.n],
			Value: own[f.value.off : f.value.off+f.value.n : f.value.off+f.value.n],
		}
	}
	return out
}
