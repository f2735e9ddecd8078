package httpmsg

import (
	"net/netip"
	"time"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// Proto is the protocol a message was captured in.
type Proto uint8

// Protocols.
const (
	ProtoUnknown Proto = iota
	HTTP10
	HTTP11
	HTTP2
)

var protoNames = [...]string{"unknown", "HTTP/1.0", "HTTP/1.1", "HTTP/2"}

// String returns the protocol as HTTP writes it: "HTTP/1.1", "HTTP/2".
func (p Proto) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return "unknown"
}

// Label returns the protocol as a metric label value: "http1" or "http2".
func (p Proto) Label() string {
	if p == HTTP2 {
		return "http2"
	}
	return "http1"
}

// Field is one header or trailer field.
type Field struct {
	Name  []byte
	Value []byte
}

// Request is one captured request, as every stage after framing sees it.
type Request interface {
	// Proto is the protocol the request was captured in.
	Proto() Proto
	// StreamID is the HTTP/2 stream of the request; 0 for HTTP/1.
	StreamID() uint32
	// Method is the request method: "GET", "POST", ...
	Method() []byte
	// Scheme is "http" or "https" when the request names one (:scheme, or
	// an absolute-form target); nil for an HTTP/1 origin-form target.
	Scheme() []byte
	// Authority is host[:port] as the client named the server:
	// :authority, or the authority of an absolute-form target, else the
	// Host field. Nil when the request names none (HTTP/1.0 without Host).
	Authority() []byte
	// Path is the target without scheme and authority, query included:
	// :path, an origin-form target, or what follows the authority of an
	// absolute-form one ("/" when nothing does). "*" for asterisk-form.
	Path() []byte
	// Header returns the value of the first regular field named name,
	// compared without regard to ASCII case. Pseudo-header fields are not
	// fields here; Host is one for HTTP/1.
	Header(name string) ([]byte, bool)
	// VisitHeaders calls fn with every regular field in wire order until
	// fn returns false.
	VisitHeaders(fn func(name, value []byte) bool)
	// VisitTrailers calls fn with every trailer field held, in order,
	// until fn returns false.
	VisitTrailers(fn func(name, value []byte) bool)
	// BodyLen is the length of the decoded body (transfer coding removed,
	// content coding kept), or -1 while the body is streaming.
	BodyLen() int64
	// VisitBody calls fn with the decoded body, in order, in one or more
	// pieces, until fn returns false. It visits nothing while the body is
	// streaming: then every byte comes through Stream.
	VisitBody(fn func(b []byte) bool)
	// Stream is the body still arriving, for a request mirrored while its
	// client is still sending it (a long upload, a streaming call); nil
	// when the body is whole.
	Stream() *BodyStream
	// Client sent the request to Server.
	Client() netip.AddrPort
	Server() netip.AddrPort
	// Time is the capture time of the request's first byte.
	Time() time.Time
	// Release hands the request's buffers back. It must be called exactly
	// once, by the last owner; nothing of the request may be used after.
	Release()
}

// HeaderValue is a convenience for Request.Header that returns nil when
// the field is absent.
func HeaderValue(r Request, name string) []byte {
	v, _ := r.Header(name)
	return v
}

// Answer is a response held whole in memory, owned by whoever holds it: the
// primary's answer as captured, or the shadow's as read by the sender, kept
// for comparison. Body holds the body after removing the transfer framing
// (chunks), with its content coding; past a cap only a prefix is kept.
type Answer struct {
	Proto  Proto
	Status int
	// Header and Trailer are the fields in wire order; names as sent
	// (HTTP/2 names are lower case).
	Header  []Field
	Trailer []Field
	// Body holds at most the cap's worth of the body; BodyLen is the
	// whole length and Truncated says that Body is only its start.
	Body      []byte
	BodyLen   int64
	Truncated bool
	// Start is when the first byte of the answer was seen; End when the
	// last one was.
	Start, End time.Time
}

// Get returns the value of the first header field named name (ASCII case
// folded), and whether there is one.
func (a *Answer) Get(name string) ([]byte, bool) {
	for _, f := range a.Header {
		if httpsyntax.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return nil, false
}
