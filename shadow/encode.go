package shadow

import (
	"strconv"
	"sync"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// fieldScan is what the neutral-view outputs need to know of a request's
// fields before they write the first one. Scans are pooled: they hold only
// slices of the request, cleared when put back.
type fieldScan struct {
	visit   func(name, value []byte) bool // fs.add, made once per scan so that a visit allocates nothing
	fields  []httpmsg.Field               // regular fields, in order
	conn    [][]byte                      // values of the Connection fields
	lastXFF int                           // index in fields of the last X-Forwarded-For, or -1
	cookies int                           // Cookie fields
	hasCL   bool                          // a Content-Length field is present
}

var scanPool = sync.Pool{New: func() any { return new(fieldScan) }}

func scanFields(r httpmsg.Request) *fieldScan {
	fs := scanPool.Get().(*fieldScan)
	fs.lastXFF = -1
	if fs.visit == nil {
		fs.visit = fs.add
	}
	r.VisitHeaders(fs.visit)
	return fs
}

func (fs *fieldScan) add(name, value []byte) bool {
	switch classify(name) {
	case fieldConnection:
		fs.conn = append(fs.conn, value)
	case fieldXFF:
		fs.lastXFF = len(fs.fields)
	case fieldCookie:
		fs.cookies++
	case fieldContentLength:
		fs.hasCL = true
	}
	fs.fields = append(fs.fields, httpmsg.Field{Name: name, Value: value})
	return true
}

func (fs *fieldScan) free() {
	clear(fs.fields)
	clear(fs.conn)
	*fs = fieldScan{visit: fs.visit, fields: fs.fields[:0], conn: fs.conn[:0]}
	scanPool.Put(fs)
}

// nominated reports whether a Connection field of the request names name:
// such a field is hop-by-hop by declaration.
func (fs *fieldScan) nominated(name []byte) bool {
	for _, v := range fs.conn {
		if httpsyntax.HasToken(v, name) {
			return true
		}
	}
	return false
}

// sendable reports whether a field of a neutral request may be written as
// it is: a token for a name, and a value without control characters. The
// framers check both; this keeps a broken producer from splitting a
// request on the shadow.
func sendable(name, value []byte) bool {
	if !httpsyntax.IsToken(name) {
		return false
	}
	for _, c := range value {
		if httpsyntax.Class(c)&httpsyntax.ClassValue == 0 && c < 0x80 {
			return false
		}
	}
	return true
}

// EncodeHTTP1 appends r, from the protocol-neutral view, as an HTTP/1.1
// request for the shadow: the request line from the method and path, Host
// from the authority by the host rule (or from the server's address), the
// regular fields by the same X-Forwarded-For, hop-by-hop, remove and set
// rules as AppendHTTP1, Cookie fields joined with "; " (RFC 9113 8.2.3),
// then the body: with Content-Length when it is whole, or chunked when it
// carries trailers (with them) or is still streaming (then only the head is
// appended: the sender writes the stream's chunks and trailers after it).
// Content-Length and Transfer-Encoding fields of r are replaced by ours.
func (w *Rewriter) EncodeHTTP1(dst []byte, r httpmsg.Request) []byte {
	fs := scanFields(r)
	defer fs.free()

	dst = append(dst, r.Method()...)
	dst = append(dst, ' ')
	if p := r.Path(); len(p) > 0 {
		dst = append(dst, p...)
	} else {
		dst = append(dst, '/')
	}
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = w.appendAuthority(dst, r)
	dst = append(dst, "\r\n"...)

	xff := w.xff && r.Client().IsValid()
	var setDone uint64
	cookieDone := false
	for i, f := range fs.fields {
		kind := classify(f.Name)
		switch kind {
		case fieldHost, fieldContentLength, fieldTransferEncoding, fieldConnection, fieldHopByHop, fieldTE:
			continue
		}
		if len(fs.conn) > 0 && (kind == fieldOther || kind == fieldCookie) && fs.nominated(f.Name) {
			continue
		}
		if w.removes(f.Name) {
			continue
		}
		if j := w.setIndex(f.Name); j >= 0 {
			if setDone&(1<<j) == 0 {
				dst = append(dst, w.set[j].line...)
				setDone |= 1 << j
			}
			continue
		}
		if !sendable(f.Name, f.Value) {
			continue
		}
		switch {
		case kind == fieldCookie && fs.cookies > 1:
			if cookieDone {
				continue
			}
			cookieDone = true
			dst = append(dst, f.Name...)
			dst = append(dst, ": "...)
			sep := false
			for _, g := range fs.fields[i:] {
				if classify(g.Name) != fieldCookie || len(g.Value) == 0 || !sendable(g.Name, g.Value) {
					continue
				}
				if sep {
					dst = append(dst, "; "...)
				}
				dst = append(dst, g.Value...)
				sep = true
			}
			dst = append(dst, "\r\n"...)
		case kind == fieldXFF && i == fs.lastXFF && xff:
			dst = append(dst, f.Name...)
			dst = append(dst, ": "...)
			if len(f.Value) > 0 {
				dst = append(dst, f.Value...)
				dst = append(dst, ", "...)
			}
			dst = appendClientAddr(dst, r.Client())
			dst = append(dst, "\r\n"...)
		default:
			dst = append(dst, f.Name...)
			dst = append(dst, ": "...)
			dst = append(dst, f.Value...)
			dst = append(dst, "\r\n"...)
		}
	}
	if xff && fs.lastXFF < 0 {
		dst = append(dst, "X-Forwarded-For: "...)
		dst = appendClientAddr(dst, r.Client())
		dst = append(dst, "\r\n"...)
	}
	for j := range w.set {
		if setDone&(1<<j) == 0 {
			dst = append(dst, w.set[j].line...)
		}
	}

	if r.Stream() != nil {
		return append(dst, "Transfer-Encoding: chunked\r\n\r\n"...)
	}
	hasTrailers := false
	r.VisitTrailers(func(_, _ []byte) bool { hasTrailers = true; return false })
	if hasTrailers {
		// Each piece of the body is a chunk.
		dst = append(dst, "Transfer-Encoding: chunked\r\n\r\n"...)
		r.VisitBody(func(b []byte) bool {
			if len(b) > 0 {
				dst = strconv.AppendInt(dst, int64(len(b)), 16)
				dst = append(dst, "\r\n"...)
				dst = append(dst, b...)
				dst = append(dst, "\r\n"...)
			}
			return true
		})
		dst = append(dst, "0\r\n"...)
		r.VisitTrailers(func(name, value []byte) bool {
			dst = appendTrailer(dst, name, value)
			return true
		})
		return append(dst, "\r\n"...)
	}
	// The length of what VisitBody gives, which is what goes out.
	var n int64
	r.VisitBody(func(b []byte) bool { n += int64(len(b)); return true })
	if n > 0 || fs.hasCL {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, n, 10)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	r.VisitBody(func(b []byte) bool { dst = append(dst, b...); return true })
	return dst
}

// appendTrailer appends one trailer line, unless the field may not be a
// trailer (framing, routing) or cannot be written safely.
func appendTrailer(dst, name, value []byte) []byte {
	switch classify(name) {
	case fieldHost, fieldContentLength, fieldTransferEncoding, fieldConnection, fieldHopByHop, fieldTE:
		return dst
	}
	if !sendable(name, value) {
		return dst
	}
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// Fields appends the header list of r as an HTTP/2 shadow is to get it,
// and returns the extended slice: the pseudo-header fields :method,
// :scheme (r.Scheme(), else the shadow's: "http" for a Rewriter not made by
// a sender), :authority (by the host rule, like Host), :path, then the
// regular fields by the same X-Forwarded-For, hop-by-hop, remove and set
// rules as AppendHTTP1, with names in lower case. Host becomes :authority
// and Transfer-Encoding is dropped (HTTP/2 frames bodies itself); "te" is
// kept as "te: trailers" when it lists trailers, the one value HTTP/2
// allows. The slices alias r's buffers, or one buffer allocated for the
// call, so the fields are valid as long as r is.
func (w *Rewriter) Fields(dst []httpmsg.Field, r httpmsg.Request) []httpmsg.Field {
	dst, _ = w.appendFields(dst, nil, r)
	return dst
}

// appendFields is Fields with the buffer for what the fields do not take
// from r given by the caller (an HTTP/2 connection reuses one): it is used
// when it is large enough, else replaced by a new one, which is returned
// for the next call. The fields are valid until buf is used again.
func (w *Rewriter) appendFields(dst []httpmsg.Field, buf []byte, r httpmsg.Request) ([]httpmsg.Field, []byte) {
	fs := scanFields(r)
	defer fs.free()

	// One buffer for what the fields do not take from r: the authority,
	// lower-cased names, the appended X-Forwarded-For. It is sized so that
	// it does not grow (were it to, the slices already taken would keep the
	// old array, which stays as written).
	size := len(r.Authority()) + len(w.literal) + len(hostSuffix) + 128
	for i, f := range fs.fields {
		size += len(f.Name)
		if i == fs.lastXFF {
			size += len(f.Value) + 2 + 64
		}
	}
	if cap(buf) < size {
		buf = make([]byte, 0, max(size, 2*cap(buf)))
	}
	buf = buf[:0]
	take := func(from int) []byte { return buf[from:len(buf):len(buf)] }

	scheme := r.Scheme()
	if len(scheme) == 0 {
		scheme = schemeHTTP
		if w.scheme == "https" {
			scheme = schemeHTTPS
		}
	}
	path := r.Path()
	if len(path) == 0 {
		path = pathRoot
	}
	buf = w.appendAuthority(buf, r)
	dst = append(dst,
		httpmsg.Field{Name: nameMethod, Value: r.Method()},
		httpmsg.Field{Name: nameScheme, Value: scheme},
		httpmsg.Field{Name: nameAuthority, Value: take(0)},
		httpmsg.Field{Name: namePath, Value: path},
	)
	lower := func(name []byte) []byte {
		for _, c := range name {
			if 'A' <= c && c <= 'Z' {
				from := len(buf)
				for _, c := range name {
					if 'A' <= c && c <= 'Z' {
						c += 'a' - 'A'
					}
					buf = append(buf, c)
				}
				return take(from)
			}
		}
		return name
	}

	xff := w.xff && r.Client().IsValid()
	var setDone uint64
	teDone := false
	for i, f := range fs.fields {
		kind := classify(f.Name)
		switch kind {
		case fieldHost, fieldTransferEncoding, fieldConnection, fieldHopByHop:
			continue
		case fieldTE:
			if !teDone && httpsyntax.HasToken(f.Value, "trailers") {
				teDone = true
				dst = append(dst, httpmsg.Field{Name: nameTE, Value: valueTrailers})
			}
			continue
		}
		if len(fs.conn) > 0 && (kind == fieldOther || kind == fieldCookie) && fs.nominated(f.Name) {
			continue
		}
		if w.removes(f.Name) {
			continue
		}
		if j := w.setIndex(f.Name); j >= 0 {
			if setDone&(1<<j) == 0 {
				dst = append(dst, httpmsg.Field{Name: w.set[j].lower, Value: w.set[j].value})
				setDone |= 1 << j
			}
			continue
		}
		name := lower(f.Name)
		if kind == fieldXFF && i == fs.lastXFF && xff {
			from := len(buf)
			if len(f.Value) > 0 {
				buf = append(buf, f.Value...)
				buf = append(buf, ", "...)
			}
			buf = appendClientAddr(buf, r.Client())
			dst = append(dst, httpmsg.Field{Name: name, Value: take(from)})
			continue
		}
		dst = append(dst, httpmsg.Field{Name: name, Value: f.Value})
	}
	if xff && fs.lastXFF < 0 {
		from := len(buf)
		buf = appendClientAddr(buf, r.Client())
		dst = append(dst, httpmsg.Field{Name: nameXFF, Value: take(from)})
	}
	for j := range w.set {
		if setDone&(1<<j) == 0 {
			dst = append(dst, httpmsg.Field{Name: w.set[j].lower, Value: w.set[j].value})
		}
	}
	return dst, buf
}

// The names and values Fields makes up, made once: a conversion in place
// would allocate per request. Callers never modify the fields.
var (
	nameMethod, nameScheme, nameAuthority, namePath = []byte(":method"), []byte(":scheme"), []byte(":authority"), []byte(":path")
	nameTE, valueTrailers, nameXFF                  = []byte("te"), []byte("trailers"), []byte("x-forwarded-for")
	schemeHTTP, schemeHTTPS, pathRoot               = []byte("http"), []byte("https"), []byte("/")
)

// requestSize is what a request is charged against the byte budget: its
// bytes as captured for HTTP/1, an estimate of its HTTP/1.1 form for the
// neutral view (a streaming body is bounded by its stream, not here).
func requestSize(r httpmsg.Request) int64 {
	if h1, ok := asHTTP1(r); ok {
		return int64(len(h1.Raw))
	}
	z := sizerPool.Get().(*sizer)
	z.n = int64(len(r.Method()) + len(r.Path()) + 2*len(r.Authority()) + 128)
	r.VisitHeaders(z.visit)
	r.VisitTrailers(z.visit)
	if b := r.BodyLen(); b > 0 {
		z.n += b + 32
	}
	n := z.n
	sizerPool.Put(z)
	return n
}

// sizer adds up field sizes for requestSize. Sizers are pooled with their
// visitor made once, so that sizing a request allocates nothing.
type sizer struct {
	n     int64
	visit func(name, value []byte) bool
}

var sizerPool = sync.Pool{New: func() any {
	z := new(sizer)
	z.visit = func(name, value []byte) bool {
		z.n += int64(len(name) + len(value) + 4)
		return true
	}
	return z
}}
