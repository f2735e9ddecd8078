// Package httpframe finds HTTP/1.x requests in the ordered bytes of a TCP
// stream, as a server would frame them: request line, header block, and a
// body delimited by Content-Length or chunked coding.
//
// It is pure Go: it neither reads sockets nor knows where the bytes came from.
package httpframe

import (
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

	release func(*Request)
}

// Bytes returns the bytes of span s.
func (r *Request) Bytes(s Span) []byte { return r.Raw[s.Start:s.End] }

// Head returns the request line and header block, including the blank line.
func (r *Request) Head() []byte { return r.Raw[:r.HeadEnd] }

// Body returns the body bytes as framed on the wire.
func (r *Request) Body() []byte { return r.Raw[r.HeadEnd:] }
