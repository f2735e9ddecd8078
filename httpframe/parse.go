package httpframe

import (
	"bytes"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// headKind says what a parsed head asks of the parser.
type headKind uint8

const (
	headOK      headKind = iota // a request that can be mirrored
	headBad                     // malformed: the framing is unknown
	headReject                  // framed soundly, but a server would refuse it
	headConnect                 // CONNECT: a tunnel follows
	headUpgrade                 // a protocol upgrade may follow the body
	headH2C                     // an upgrade to HTTP/2: the request is stream 1
)

// scanHeadEnd looks for the blank line that ends a header block. nl carries
// the progress across calls: 0 inside a line, 1 just after a LF, 2 after a
// LF and a CR. It returns the count of bytes of b up to and including the
// blank line's LF, or -1 when b does not reach it.
func scanHeadEnd(nl *uint8, b []byte) int {
	i := 0
	for i < len(b) {
		switch *nl {
		case 0:
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				return -1
			}
			i += j + 1
			*nl = 1
			continue
		case 1:
			switch b[i] {
			case '\n':
				return i + 1
			case '\r':
				*nl = 2
			default:
				*nl = 0
			}
		case 2:
			if b[i] == '\n' {
				return i + 1
			}
			*nl = 0
			continue // b[i] may itself be a LF
		}
		i++
	}
	return -1
}

// framing gathers the header fields that decide how a request is framed
// and whether it can be mirrored.
type framing struct {
	clFirst     Span // the first Content-Length value element
	clCount     int  // Content-Length value elements seen
	cl          int64
	te          bool // a Transfer-Encoding field is present
	teChunked   bool // the last transfer coding is chunked
	hosts       int  // Host field lines
	upgrade     bool // a non-empty Upgrade field
	upgradeH2C  bool // Upgrade lists "h2c"
	settings    int  // HTTP2-Settings fields
	connUpgrade bool // Connection lists "upgrade"
	bad         bool // a framing field is invalid
}

// parseHead parses raw, a complete head whose request line lineMatch has
// accepted, into r: spans, framing fields and Headers.
func parseHead(raw []byte, r *Request) headKind {
	sp1 := bytes.IndexByte(raw, ' ')
	sp2 := sp1 + 1 + bytes.IndexByte(raw[sp1+1:], ' ')
	r.MethodSpan = Span{0, sp1}
	r.TargetSpan = Span{sp1 + 1, sp2}
	r.VersionSpan = Span{sp2 + 1, sp2 + 9}
	r.Minor = int(raw[sp2+8] - '0')
	i := sp2 + 9
	if raw[i] == '\r' {
		i++
	}
	i++

	var f framing
	r.Headers = r.Headers[:0]
	for {
		if raw[i] == '\n' {
			i++
			break
		}
		if raw[i] == '\r' && raw[i+1] == '\n' {
			i += 2
			break
		}
		lf := i + bytes.IndexByte(raw[i:], '\n')
		end := lf
		if raw[end-1] == '\r' {
			end--
		}
		// field-name ":" OWS field-value OWS. No whitespace before the colon
		// and no obs-fold (a line starting with whitespace): a server must
		// refuse the former and may refuse the latter (RFC 9112 5.1, 5.2),
		// and both leave room for disagreement on framing.
		j := i
		for j < end && httpsyntax.Class(raw[j])&httpsyntax.ClassToken != 0 {
			j++
		}
		if j == i || j == end || raw[j] != ':' {
			return headBad
		}
		vs, ve := httpsyntax.TrimOWSBounds(raw, j+1, end)
		for k := vs; k < ve; k++ {
			if httpsyntax.Class(raw[k])&httpsyntax.ClassValue == 0 {
				return headBad
			}
		}
		h := Header{Name: Span{i, j}, Value: Span{vs, ve}, Line: Span{i, lf + 1}}
		r.Headers = append(r.Headers, h)
		f.field(raw, h)
		i = lf + 1
	}
	r.HeadEnd = i
	r.ContentLength = -1
	r.Chunked = false
	r.DecodedLen = 0

	method := raw[r.MethodSpan.Start:r.MethodSpan.End]
	if string(method) == "CONNECT" {
		return headConnect
	}
	// A server must treat a Transfer-Encoding in HTTP/1.0 as faulty framing
	// (RFC 9112 6.1).
	if f.bad || f.te && (!f.teChunked || r.Minor == 0) {
		return headBad
	}
	switch {
	case f.te:
		r.Chunked = true
	case f.clCount > 0:
		r.ContentLength = f.cl
		r.DecodedLen = f.cl
	}
	// A server ignores Upgrade in HTTP/1.0 (RFC 9110 7.8).
	if f.upgrade && f.connUpgrade && r.Minor == 1 {
		// An upgrade to h2c carries exactly one HTTP2-Settings (RFC 7540
		// 3.2.1); the request itself is then HTTP/2's stream 1.
		if f.upgradeH2C && f.settings == 1 && f.hosts == 1 && validTarget(raw[r.TargetSpan.Start:r.TargetSpan.End]) {
			return headH2C
		}
		return headUpgrade
	}
	if f.hosts > 1 || f.hosts == 0 && r.Minor == 1 || !validTarget(raw[r.TargetSpan.Start:r.TargetSpan.End]) {
		return headReject
	}
	return headOK
}

// field records what header field h says about framing.
func (f *framing) field(raw []byte, h Header) {
	name, value := raw[h.Name.Start:h.Name.End], raw[h.Value.Start:h.Value.End]
	switch len(name) {
	case 4:
		if httpsyntax.EqualFold(name, "host") {
			f.hosts++
		}
	case 7:
		if httpsyntax.EqualFold(name, "upgrade") && len(value) > 0 {
			f.upgrade = true
			f.upgradeH2C = f.upgradeH2C || httpsyntax.HasToken(value, "h2c")
		}
	case 14:
		if httpsyntax.EqualFold(name, "http2-settings") {
			f.settings++
		} else if httpsyntax.EqualFold(name, "content-length") {
			f.contentLength(raw, h.Value)
		}
	case 10:
		if httpsyntax.EqualFold(name, "connection") {
			httpsyntax.ForEachElement(value, func(e []byte) {
				if httpsyntax.EqualFold(e, "upgrade") {
					f.connUpgrade = true
				}
			})
		}
	case 17:
		if httpsyntax.EqualFold(name, "transfer-encoding") {
			f.transferEncoding(value)
		}
	}
}

// contentLength accepts a list of identical decimal values, in one field
// line or several. Values are compared as text, as other servers do, so
// that "5" and "05" count as differing.
func (f *framing) contentLength(raw []byte, v Span) {
	if v.Len() == 0 {
		f.bad = true
		return
	}
	start := v.Start
	for start <= v.End {
		end := start + bytes.IndexByte(raw[start:v.End], ',')
		if end < start {
			end = v.End
		}
		s, e := httpsyntax.TrimOWSBounds(raw, start, end)
		elem := raw[s:e]
		n, ok := httpsyntax.ParseDecimal(elem)
		switch {
		case !ok:
			f.bad = true
			return
		case f.clCount == 0:
			f.clFirst, f.cl = Span{s, e}, n
		case !bytes.Equal(elem, raw[f.clFirst.Start:f.clFirst.End]):
			f.bad = true
			return
		}
		f.clCount++
		start = end + 1
	}
}

// transferEncoding follows the list of codings; only the last may be
// chunked (RFC 9112 6.1).
func (f *framing) transferEncoding(v []byte) {
	f.te = true
	httpsyntax.ForEachElement(v, func(e []byte) {
		name := e
		if k := bytes.IndexByte(e, ';'); k >= 0 {
			name = bytes.TrimRight(e[:k], " \t")
		}
		if f.teChunked || !httpsyntax.IsToken(name) {
			f.bad = true // chunked applied before another coding, or junk
		}
		f.teChunked = httpsyntax.EqualFold(name, "chunked")
	})
}

// validTarget reports whether t is a request-target fit for a method other
// than CONNECT: origin-form ("/..."), asterisk-form ("*") or absolute-form
// ("scheme:..."). A server refuses anything else.
func validTarget(t []byte) bool {
	if t[0] == '/' || len(t) == 1 && t[0] == '*' {
		return true
	}
	if c := t[0] | 0x20; c < 'a' || c > 'z' {
		return false
	}
	for i := 1; i < len(t); i++ {
		switch c := t[i]; {
		case c == ':':
			return true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '+', c == '-', c == '.':
		default:
			return false
		}
	}
	return false
}
