// Package httpframe finds HTTP/1.x requests in the ordered bytes of a TCP
// stream, as a server would frame them: request line, header block, and a
// body delimited by Content-Length or chunked coding.
//
// It is pure Go: it neither reads sockets nor knows where the bytes came from.
//
// A Parser serves one client-to-server stream (it satisfies the Stream
// interface of package reassembly) and hands each complete request, head
// and whole body, to Config.Emit. Requests whose body is incomplete, too
// large, or not wanted by Config.Keep are framed but not emitted, and every
// such decision is counted in Stats by Reason.
//
// Framing follows RFC 9112, with these choices where it leaves room:
//   - bare LF line ends are accepted, and empty lines before a request line
//     are skipped;
//   - obs-fold and whitespace between a field name and its colon are
//     refused as malformed;
//   - a Transfer-Encoding whose last coding is chunked frames the body and
//     overrides Content-Length; any other Transfer-Encoding, or one in
//     HTTP/1.0, is malformed;
//   - Content-Length may repeat one value, in several fields or as a list;
//     differing or non-decimal values are malformed;
//   - a request framed soundly that a server would still refuse (HTTP/1.1
//     without Host, several Host fields, a target of no known form) is
//     counted as malformed and skipped, and framing goes on;
//   - CONNECT and the HTTP/2 preface end HTTP/1 on the stream; a protocol
//     upgrade request is skipped and may end it, so the parser then looks
//     for a request line, as it does after a gap, malformed input, or a
//     mid-stream start (see Stats.Resyncs).
package httpframe

import (
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

	Method  Span // e.g. "GET"
	Target  Span // request target: origin-form, absolute-form, authority-form or "*"
	Version Span // "HTTP/1.1" or "HTTP/1.0"
	Minor   int  // 1 for HTTP/1.1, 0 for HTTP/1.0

	Headers []Header // in wire order

	// HeadEnd is the offset in Raw where the body starts.
	HeadEnd int
	// Chunked is true when the body is in chunked transfer coding.
	Chunked bool
	// ContentLength is the declared Content-Length, or -1 when absent (or
	// when Chunked overrides it).
	ContentLength int64
	// BodyLen is the length of the body after removing the chunked coding.
	BodyLen int64

	// Client and Server are the endpoints of the connection that carried the
	// request: Client sent it to Server.
	Client netip.AddrPort
	Server netip.AddrPort
	// Time is the capture time of the first byte of the request.
	Time time.Time

	// Route is the consumer's: Config.Keep may set it (to the rule that
	// selected the request, say) and Config.Emit finds it there.
	Route int
	// SkipAs is the reason counted when Config.Keep returns false; it is
	// ReasonSampled unless Keep sets another.
	SkipAs Reason

	release func(*Request)
	blk     *block // the pooled buffer behind Raw, nil when Raw is not pooled
}

// Bytes returns the bytes of span s.
func (r *Request) Bytes(s Span) []byte { return r.Raw[s.Start:s.End] }

// Head returns the request line and header block, including the blank line.
func (r *Request) Head() []byte { return r.Raw[:r.HeadEnd] }

// Body returns the body bytes as framed on the wire.
func (r *Request) Body() []byte { return r.Raw[r.HeadEnd:] }

// Header returns the value span of the first header field named name,
// compared without regard to ASCII case, and whether there is one. It does
// not allocate.
func (r *Request) Header(name string) (Span, bool) {
	for i := range r.Headers {
		h := &r.Headers[i]
		if httpsyntax.EqualFold(r.Raw[h.Name.Start:h.Name.End], name) {
			return h.Value, true
		}
	}
	return Span{}, false
}
