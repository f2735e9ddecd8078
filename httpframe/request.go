package httpframe

import (
	"bytes"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"

	"net/netip"
	"time"
)

// Span is a half-open byte range [Start, End) of Request.Raw.
type Span struct{ Start, End int }

// Len returns the length of the span.
func (s Span) Len() int { return s.End - s.Start }

// Header is one header field as it appeared on the wire.
type Header struct {
	Name  Span // the field name, as sent (case preserved)
	Value Span // the field value, without surrounding whitespace
	Line  Span // the whole field line including its line ending
}

// Request is one complete request as the client sent it.
type Request struct {
	// Raw holds the request exactly as captured: the request line, the
	// header block up to and including the blank line, then the body bytes as
	// framed on the wire (chunk sizes, extensions and trailers included).
	Raw []byte

	MethodSpan  Span // e.g. "GET"
	TargetSpan  Span // request target: origin-form, absolute-form, authority-form or "*"
	VersionSpan Span // "HTTP/1.1" or "HTTP/1.0"
	Minor       int  // 1 for HTTP/1.1, 0 for HTTP/1.0

	Headers []Header // in wire order

	// HeadEnd is the offset in Raw where the body starts.
	HeadEnd int
	// Chunked is true when the body is in chunked transfer coding.
	Chunked bool
	// ContentLength is the declared Content-Length, or -1 when absent (or
	// when Chunked overrides it).
	ContentLength int64
	// DecodedLen is the length of the body after removing the chunked coding.
	DecodedLen int64

	// ClientAddr and ServerAddr are the endpoints of the connection that
	// carried the request: ClientAddr sent it to ServerAddr.
	ClientAddr netip.AddrPort
	ServerAddr netip.AddrPort
	// Captured is the capture time of the first byte of the request, and
	// Completed that of its last byte.
	Captured, Completed time.Time

	// UpgradeH2C is set on a request that asks to switch the connection
	// to HTTP/2 (Upgrade: h2c with HTTP2-Settings): it is HTTP/2's stream
	// 1, and what the client sends after it is HTTP/2.
	UpgradeH2C bool

	tag any // the consumer's, from Config.Keep to Config.Emit

	release func(*Request)
	blk     *block // the pooled buffer behind Raw, nil when Raw is not pooled
}

// Bytes returns the bytes of span s.
func (r *Request) Bytes(s Span) []byte { return r.Raw[s.Start:s.End] }

// Head returns the request line and header block, including the blank line.
func (r *Request) Head() []byte { return r.Raw[:r.HeadEnd] }

// WireBody returns the body bytes as framed on the wire.
func (r *Request) WireBody() []byte { return r.Raw[r.HeadEnd:] }

// HeaderSpan returns the value span of the first header field named name,
// compared without regard to ASCII case, and whether there is one. It does
// not allocate.
func (r *Request) HeaderSpan(name string) (Span, bool) {
	for i := range r.Headers {
		h := &r.Headers[i]
		if httpsyntax.EqualFold(r.Raw[h.Name.Start:h.Name.End], name) {
			return h.Value, true
		}
	}
	return Span{}, false
}

// The methods below make *Request an httpmsg.Request: the view every stage
// after framing uses. They read Raw in place and do not allocate.

var _ httpmsg.Request = (*Request)(nil)

// Proto returns HTTP10 or HTTP11.
func (r *Request) Proto() httpmsg.Proto {
	if r.Minor == 0 {
		return httpmsg.HTTP10
	}
	return httpmsg.HTTP11
}

// StreamID is 0: HTTP/1 has no streams.
func (r *Request) StreamID() uint32 { return 0 }

// Method returns the request method.
func (r *Request) Method() []byte { return r.Bytes(r.MethodSpan) }

// Target returns the request target as sent.
func (r *Request) Target() []byte { return r.Bytes(r.TargetSpan) }

// Scheme returns the scheme of an absolute-form target, or nil.
func (r *Request) Scheme() []byte {
	t := r.Target()
	if i := bytes.Index(t, []byte("://")); i > 0 && isScheme(t[:i]) {
		return t[:i]
	}
	return nil
}

// Authority returns the authority of an absolute-form target (which a
// server must prefer to Host, RFC 9112 3.2.2), else the Host field, else
// nil.
func (r *Request) Authority() []byte {
	if auth, _, ok := splitAbsolute(r.Target()); ok {
		return auth
	}
	v, _ := r.Header("Host")
	return v
}

// Path returns the target without scheme and authority: the origin-form
// target itself, what follows the authority of an absolute-form one ("/"
// when nothing does), or "*".
func (r *Request) Path() []byte {
	t := r.Target()
	if _, rest, ok := splitAbsolute(t); ok {
		if len(rest) == 0 || rest[0] != '/' {
			return slash
		}
		return rest
	}
	return t
}

var slash = []byte("/")

// Header returns the value of the first field named name (ASCII case
// folded).
func (r *Request) Header(name string) ([]byte, bool) {
	s, ok := r.HeaderSpan(name)
	if !ok {
		return nil, false
	}
	return r.Bytes(s), true
}

// VisitHeaders calls fn with every header field in wire order.
func (r *Request) VisitHeaders(fn func(name, value []byte) bool) {
	for i := range r.Headers {
		h := &r.Headers[i]
		if !fn(r.Bytes(h.Name), r.Bytes(h.Value)) {
			return
		}
	}
}

// VisitTrailers calls fn with the trailer fields of a chunked body.
func (r *Request) VisitTrailers(fn func(name, value []byte) bool) {
	if !r.Chunked {
		return
	}
	walkChunks(r.WireBody(), nil, fn)
}

// BodyLen returns the decoded body length.
func (r *Request) BodyLen() int64 { return r.DecodedLen }

// VisitBody calls fn with the decoded body: the body itself, or the data
// of each chunk.
func (r *Request) VisitBody(fn func(b []byte) bool) {
	body := r.WireBody()
	if !r.Chunked {
		if len(body) > 0 {
			fn(body)
		}
		return
	}
	walkChunks(body, fn, nil)
}

// Stream is nil: an HTTP/1 request is emitted whole.
func (r *Request) Stream() *httpmsg.BodyStream { return nil }

// Client returns the address that sent the request.
func (r *Request) Client() netip.AddrPort { return r.ClientAddr }

// Server returns the address the request was sent to.
func (r *Request) Server() netip.AddrPort { return r.ServerAddr }

// Time returns the capture time of the request's first byte.
func (r *Request) Time() time.Time { return r.Captured }

// Ended returns the capture time of the request's last byte: from it the
// primary's latency is measured on the wire.
func (r *Request) Ended() time.Time { return r.Completed }

// splitAbsolute splits an absolute-form target into its authority (without
// userinfo) and what follows it.
func splitAbsolute(t []byte) (auth, rest []byte, ok bool) {
	i := bytes.Index(t, []byte("://"))
	if i <= 0 || !isScheme(t[:i]) {
		return nil, nil, false
	}
	t = t[i+3:]
	end := bytes.IndexAny(t, "/?#")
	if end < 0 {
		end = len(t)
	}
	auth, rest = t[:end], t[end:]
	if at := bytes.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	return auth, rest, true
}

// isScheme reports whether b is a URI scheme: ALPHA *( ALPHA / DIGIT / "+"
// / "-" / "." ).
func isScheme(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// walkChunks walks a chunked body that the framer accepted, calling data
// with each chunk's data and trailer with each trailer field. Either may be
// nil; returning false stops the walk.
func walkChunks(b []byte, data func([]byte) bool, trailer func(name, value []byte) bool) {
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			return
		}
		size := int64(0)
		for _, c := range line {
			d := httpsyntax.Unhex(c)
			if d > 15 {
				break
			}
			size = size<<4 | int64(d)
		}
		b = rest
		if size == 0 {
			break
		}
		if int64(len(b)) < size {
			return
		}
		if data != nil && !data(b[:size]) {
			return
		}
		b = b[size:]
		if _, rest, ok := bytes.Cut(b, []byte("\n")); ok {
			b = rest
		} else {
			return
		}
	}
	if trailer == nil {
		return
	}
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return
		}
		b = rest
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && !trailer(name, httpsyntax.TrimOWS(value)) {
			return
		}
	}
}
