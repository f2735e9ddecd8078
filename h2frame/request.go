package h2frame

import (
	"net/netip"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// span is a range of a Request's arena; n < 0 means absent.
type span struct{ off, n int32 }

var none = span{0, -1}

func (s span) ok() bool { return s.n >= 0 }

type field struct{ name, value span }

// Request is one request captured on an HTTP/2 stream. It implements
// httpmsg.Request over one arena: every name, value and held body byte is
// in one pooled buffer, and the Request itself is pooled, so a request
// costs no allocation once the pools are warm.
type Request struct {
	blk      *block // the arena; never nil while the request is live
	fields   []field
	trailers []field

	method, scheme, authority, path, protocol span
	host                                      span // the first host field, for Authority when :authority is absent
	body                                      span

	stream *httpmsg.BodyStream
	id     uint32
	client netip.AddrPort
	server netip.AddrPort
	time   time.Time
}

var _ httpmsg.Request = (*Request)(nil)

// maxPooledFields bounds the field capacity a pooled Request keeps, so that
// one request with thousands of fields does not pin memory forever.
const maxPooledFields = 128

var requestPool = sync.Pool{New: func() any { return new(Request) }}

func newRequest(id uint32, client, server netip.AddrPort, t time.Time) *Request {
	r := requestPool.Get().(*Request)
	r.blk = getBlock(1 << 10)
	r.method, r.scheme, r.authority, r.path, r.protocol, r.host, r.body = none, none, none, none, none, none, none
	r.id, r.client, r.server, r.time = id, client, server, t
	return r
}

// Release hands the request's buffers back to the pools. It must be called
// exactly once; nothing of the request may be used after.
func (r *Request) Release() {
	putBlock(r.blk)
	fs, ts := r.fields[:0], r.trailers[:0]
	if cap(fs) > maxPooledFields {
		fs = nil
	}
	if cap(ts) > maxPooledFields {
		ts = nil
	}
	*r = Request{fields: fs, trailers: ts}
	requestPool.Put(r)
}

// add copies b into the arena.
func (r *Request) add(b []byte) span {
	r.blk = appendBlock(r.blk, b)
	return span{int32(len(r.blk.b) - len(b)), int32(len(b))}
}

func (r *Request) bytes(s span) []byte {
	if s.n < 0 {
		return nil
	}
	return r.blk.b[s.off : s.off+s.n : s.off+s.n]
}

// Proto is HTTP2.
func (r *Request) Proto() httpmsg.Proto { return httpmsg.HTTP2 }

// StreamID is the stream that carried the request.
func (r *Request) StreamID() uint32 { return r.id }

// Method is :method.
func (r *Request) Method() []byte { return r.bytes(r.method) }

// Scheme is :scheme.
func (r *Request) Scheme() []byte { return r.bytes(r.scheme) }

// Authority is :authority, or the first host field when the client sent no
// :authority; nil when it sent neither.
func (r *Request) Authority() []byte {
	if r.authority.ok() {
		return r.bytes(r.authority)
	}
	return r.bytes(r.host)
}

// Path is :path.
func (r *Request) Path() []byte { return r.bytes(r.path) }

// Header returns the value of the first regular field named name (ASCII
// case folded; HTTP/2 names are lower case).
func (r *Request) Header(name string) ([]byte, bool) {
	for _, f := range r.fields {
		if httpsyntax.EqualFold(r.bytes(f.name), name) {
			return r.bytes(f.value), true
		}
	}
	return nil, false
}

// VisitHeaders calls fn with every regular field in wire order (cookie
// crumbs as sent, one field each) until fn returns false.
func (r *Request) VisitHeaders(fn func(name, value []byte) bool) {
	for _, f := range r.fields {
		if !fn(r.bytes(f.name), r.bytes(f.value)) {
			return
		}
	}
}

// VisitTrailers calls fn with every trailer field of a request held whole,
// in order, until fn returns false. A streaming request's trailers come
// through its BodyStream.
func (r *Request) VisitTrailers(fn func(name, value []byte) bool) {
	for _, f := range r.trailers {
		if !fn(r.bytes(f.name), r.bytes(f.value)) {
			return
		}
	}
}

// NumHeaders returns the number of regular fields.
func (r *Request) NumHeaders() int { return len(r.fields) }

// BodyLen is the length of the body, or -1 while it is streaming.
func (r *Request) BodyLen() int64 {
	if r.stream != nil {
		return -1
	}
	return int64(max(r.body.n, 0))
}

// VisitBody calls fn with the body, in one piece, when the request is
// whole; it visits nothing while the body is streaming.
func (r *Request) VisitBody(fn func(b []byte) bool) {
	if r.stream == nil && r.body.n > 0 {
		fn(r.bytes(r.body))
	}
}

// Stream is the body still arriving, for a request emitted before its end;
// nil when the body is whole.
func (r *Request) Stream() *httpmsg.BodyStream { return r.stream }

// Client is the address of the client that sent the request.
func (r *Request) Client() netip.AddrPort { return r.client }

// Server is the address the client sent it to.
func (r *Request) Server() netip.AddrPort { return r.server }

// Time is the capture time of the first byte of the request's HEADERS frame.
func (r *Request) Time() time.Time { return r.time }
