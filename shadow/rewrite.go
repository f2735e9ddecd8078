package shadow

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// hostSuffix is what an in-proxy mirror appends to the host of a shadowed
// request, so that the shadow can tell mirrored traffic from real traffic.
const hostSuffix = "-shadow"

// ShadowHost returns host with "-shadow" appended to its host part, keeping a
// port: the port separator is the last ':' after the last ']' (so IPv6
// literals keep their brackets and colons).
//
//	foo.bar.com       -> foo.bar.com-shadow
//	foo.bar.com:8080  -> foo.bar.com-shadow:8080
//	[::1]:8080        -> [::1]-shadow:8080
//	[::1]             -> [::1]-shadow
func ShadowHost(host string) string {
	var buf [128]byte
	return string(appendShadowHost(buf[:0], []byte(host)))
}

func appendShadowHost(dst, host []byte) []byte {
	if i := httpsyntax.PortStart(host); i >= 0 {
		dst = append(dst, host[:i]...)
		dst = append(dst, hostSuffix...)
		return append(dst, host[i:]...)
	}
	dst = append(dst, host...)
	return append(dst, hostSuffix...)
}

// IsShadowed reports whether authority (a Host field or :authority) names a
// host whose host part already ends in "-shadow", without regard to ASCII
// case: such a request is a mirror itself, and mirroring it again would
// loop when a shadow listens on a watched port.
func IsShadowed(authority []byte) bool {
	host := authority
	if i := httpsyntax.PortStart(host); i >= 0 {
		host = host[:i]
	}
	return len(host) >= len(hostSuffix) && httpsyntax.EqualFold(host[len(host)-len(hostSuffix):], hostSuffix)
}

// HeaderValue is one header field to set on mirrored requests.
type HeaderValue struct {
	Name  string
	Value string
}

// RewriteConfig says how a captured request is changed before it goes to the
// shadow. The zero value gives the behaviour of an in-proxy mirror.
type RewriteConfig struct {
	// NoHostSuffix keeps Host (and an absolute-form target's authority, and
	// :authority) as the client sent it, instead of appending "-shadow".
	NoHostSuffix bool
	// Host, when not empty, replaces the host (and port) of every request, in
	// the Host field, in an absolute-form target and in :authority; it
	// turns the suffix off.
	Host string
	// SetHeaders are applied last, in order: the first field of that name is
	// replaced in place and later ones removed, or the field is added at the
	// end of the header block when absent.
	SetHeaders []HeaderValue
	// RemoveHeaders are removed from every request (after the Host,
	// X-Forwarded-For and hop-by-hop rules, before SetHeaders).
	RemoveHeaders []string
	// NoXFF leaves X-Forwarded-For as the client sent it.
	NoXFF bool
}

type hostMode uint8

const (
	hostSuffixed hostMode = iota
	hostKept
	hostLiteral
)

// maxSetHeaders bounds SetHeaders so that the rewriter can track which ones
// it has applied in a single machine word.
const maxSetHeaders = 64

// Rewriter turns captured requests into the requests the shadow gets. It is
// immutable and safe for concurrent use. It has three outputs, one rule set:
//
//   - AppendHTTP1 splices an HTTP/1 request as captured (*httpframe.Request),
//     byte for byte except for what the rules change;
//   - EncodeHTTP1 writes any request of the protocol-neutral view (an
//     HTTP/2 request for an HTTP/1 shadow) as HTTP/1.1;
//   - Fields lists a request's fields as an HTTP/2 sender encodes them.
//
// AppendRequest picks the first or the second by the request's type.
//
// What changes, and nothing else (every other byte of the request line, the
// header lines and the body is copied as captured, in order):
//   - Host gets the "-shadow" suffix (ShadowHost), or is kept, or replaced by
//     the literal. An absolute-form target's authority gets the same rule so
//     that target and Host agree. A request without Host gets one, made from
//     the absolute target's authority if there is one, otherwise from the
//     address the client connected to (Request.Server).
//   - X-Forwarded-For: ", <client address>" is appended to the last field of
//     that name, or "X-Forwarded-For: <client address>" is added at the end.
//   - Hop-by-hop fields belong to the client's connection, not to ours:
//     Connection, Keep-Alive, Proxy-Connection, TE, Upgrade and every field
//     named in a Connection field are removed. TE is dropped whole, even
//     "TE: trailers", for HTTP/1: it only tells the server what our response
//     reader accepts, and ours accepts chunked and trailers without being
//     asked (Fields keeps "te: trailers", which HTTP/2 gRPC servers want).
//     A Connection field cannot remove Host, Content-Length,
//     Transfer-Encoding or X-Forwarded-For: losing the framing fields would
//     make the shadow read the body as the next request.
//     Transfer-Encoding and Content-Length stay, and the body stays framed
//     byte for byte (chunked stays chunked, trailers included).
//   - HTTP/1.0 requests get "Connection: keep-alive", since the shadow
//     connection is persistent.
//   - Then RemoveHeaders, then SetHeaders.
type Rewriter struct {
	mode    hostMode
	literal []byte
	set     []setField
	remove  []string
	xff     bool   // append the client address to X-Forwarded-For
	scheme  string // :scheme of Fields when the request names none
}

type setField struct {
	name  string
	lower []byte // name in lower case, for Fields
	value []byte
	line  []byte // "Name: value\r\n"
}

// NewRewriter checks cfg and returns a Rewriter for it.
func NewRewriter(cfg RewriteConfig) (*Rewriter, error) {
	w := &Rewriter{xff: !cfg.NoXFF, scheme: "http"}
	switch {
	case cfg.Host != "":
		if err := httpsyntax.CheckAuthority(cfg.Host); err != nil {
			return nil, err
		}
		w.mode, w.literal = hostLiteral, []byte(cfg.Host)
	case cfg.NoHostSuffix:
		w.mode = hostKept
	}

	for _, name := range cfg.RemoveHeaders {
		if !httpsyntax.IsToken(name) {
			return nil, fmt.Errorf("remove header %q: not a valid header name", name)
		}
		if httpsyntax.IsFramingField(name) {
			return nil, fmt.Errorf("remove header %q: this field cannot be removed", name)
		}
		w.remove = append(w.remove, name)
		if httpsyntax.EqualFold(name, "x-forwarded-for") {
			w.xff = false
		}
	}
	if len(cfg.SetHeaders) > maxSetHeaders {
		return nil, fmt.Errorf("set headers: %d given, at most %d", len(cfg.SetHeaders), maxSetHeaders)
	}
	for i, hv := range cfg.SetHeaders {
		if !httpsyntax.IsToken(hv.Name) {
			return nil, fmt.Errorf("set header %q: not a valid header name", hv.Name)
		}
		if httpsyntax.IsFramingField(hv.Name) || httpsyntax.IsConnectionField(hv.Name) {
			return nil, fmt.Errorf("set header %q: this field cannot be set", hv.Name)
		}
		if err := httpsyntax.CheckFieldValue(hv.Value); err != nil {
			return nil, fmt.Errorf("set header %q: %w", hv.Name, err)
		}
		for _, rm := range cfg.RemoveHeaders {
			if httpsyntax.EqualFold(rm, hv.Name) {
				return nil, fmt.Errorf("set header %q: also listed in remove headers", hv.Name)
			}
		}
		for _, prev := range cfg.SetHeaders[:i] {
			if httpsyntax.EqualFold(prev.Name, hv.Name) {
				return nil, fmt.Errorf("set header %q: given twice", hv.Name)
			}
		}
		line := make([]byte, 0, len(hv.Name)+len(hv.Value)+4)
		line = append(append(append(append(line, hv.Name...), ": "...), hv.Value...), "\r\n"...)
		w.set = append(w.set, setField{
			name: hv.Name, lower: bytes.ToLower([]byte(hv.Name)), value: []byte(hv.Value), line: line,
		})
		if httpsyntax.EqualFold(hv.Name, "x-forwarded-for") {
			w.xff = false
		}
	}
	return w, nil
}

// forScheme returns w, or a copy of w whose Fields name scheme when the
// request names none: a sender knows whether its shadow is http or https.
func (w *Rewriter) forScheme(scheme string) *Rewriter {
	if w.scheme == scheme {
		return w
	}
	c := *w
	c.scheme = scheme
	return &c
}

// AppendRequest appends r as the HTTP/1 shadow gets it: spliced byte for
// byte (AppendHTTP1) when r is an *httpframe.Request, else written afresh
// (EncodeHTTP1). A request whose body is still streaming gets only its head
// (ending in "Transfer-Encoding: chunked"); its chunks follow as they come.
func (w *Rewriter) AppendRequest(dst []byte, r httpmsg.Request) []byte {
	if h1, ok := r.(*httpframe.Request); ok {
		return w.AppendHTTP1(dst, h1)
	}
	return w.EncodeHTTP1(dst, r)
}

// AppendHTTP1 appends the HTTP/1 request as it is to be sent to the shadow
// to dst and returns the extended slice. It allocates nothing beyond growing
// dst.
func (w *Rewriter) AppendHTTP1(dst []byte, r *httpframe.Request) []byte {
	dst = w.appendHTTP1Head(dst, r)
	return append(dst, r.WireBody()...)
}

// appendHTTP1Head is AppendHTTP1 without the body (r.WireBody() follows it
// on the wire unchanged), so that a large body can be written from where it
// lies rather than copied.
func (w *Rewriter) appendHTTP1Head(dst []byte, r *httpframe.Request) []byte {
	raw := r.Raw
	lineEnd := requestLineEnd(r)

	hasHost, lastXFF := false, -1
	var conns connOptions
	for i := range r.Headers {
		switch classify(r.Bytes(r.Headers[i].Name)) {
		case fieldHost:
			hasHost = true
		case fieldXFF:
			lastXFF = i
		case fieldConnection:
			conns.add(i)
		}
	}

	// Request line: as captured, except the authority of an absolute-form
	// target.
	hs, he, abs := absoluteHost(raw, r.TargetSpan)
	if abs {
		dst = append(dst, raw[r.MethodSpan.Start:hs]...)
		dst = w.appendHost(dst, raw[hs:he])
		dst = append(dst, raw[he:lineEnd]...)
	} else {
		dst = append(dst, raw[r.MethodSpan.Start:lineEnd]...)
	}

	if !hasHost {
		switch {
		case abs:
			dst = append(dst, "Host: "...)
			dst = w.appendHost(dst, raw[hs:he])
			dst = append(dst, "\r\n"...)
		case r.ServerAddr.IsValid():
			dst = append(dst, "Host: "...)
			dst = w.appendServerHost(dst, r.ServerAddr)
			dst = append(dst, "\r\n"...)
		}
	}

	xff := w.xff && r.ClientAddr.IsValid()
	var setDone uint64
	last := lineEnd
	for i := range r.Headers {
		h := &r.Headers[i]
		last = h.Line.End
		name := raw[h.Name.Start:h.Name.End]
		kind := classify(name)
		if kind == fieldConnection || kind == fieldHopByHop || kind == fieldTE {
			continue
		}
		if conns.n > 0 && (kind == fieldOther || kind == fieldCookie) && conns.lists(r, name) {
			continue
		}
		if w.removes(name) {
			continue
		}
		if j := w.setIndex(name); j >= 0 {
			if setDone&(1<<j) == 0 {
				dst = append(dst, w.set[j].line...)
				setDone |= 1 << j
			}
			continue
		}
		switch {
		case kind == fieldHost:
			dst = appendFieldStart(dst, raw, h)
			dst = w.appendHost(dst, raw[h.Value.Start:h.Value.End])
			dst = appendFieldEnd(dst, raw, h)
		case kind == fieldXFF && i == lastXFF && xff:
			dst = appendFieldStart(dst, raw, h)
			if h.Value.Len() > 0 {
				dst = append(dst, raw[h.Value.Start:h.Value.End]...)
				dst = append(dst, ", "...)
			}
			dst = appendClientAddr(dst, r.ClientAddr)
			dst = appendFieldEnd(dst, raw, h)
		default:
			dst = append(dst, raw[h.Line.Start:h.Line.End]...)
		}
	}
	if xff && lastXFF < 0 {
		dst = append(dst, "X-Forwarded-For: "...)
		dst = appendClientAddr(dst, r.ClientAddr)
		dst = append(dst, "\r\n"...)
	}
	if r.Minor == 0 {
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	for j := range w.set {
		if setDone&(1<<j) == 0 {
			dst = append(dst, w.set[j].line...)
		}
	}
	// The blank line as captured; the body follows as framed on the wire.
	return append(dst, raw[last:r.HeadEnd]...)
}

// appendHost appends host as the rule wants it.
func (w *Rewriter) appendHost(dst, host []byte) []byte {
	switch w.mode {
	case hostKept:
		return append(dst, host...)
	case hostLiteral:
		return append(dst, w.literal...)
	}
	return appendShadowHost(dst, host)
}

// appendServerHost appends the host made from the address the client
// connected to, for a request that names none, as the rule wants it.
func (w *Rewriter) appendServerHost(dst []byte, server netip.AddrPort) []byte {
	var buf [64]byte
	srv := netip.AddrPortFrom(server.Addr().Unmap().WithZone(""), server.Port())
	return w.appendHost(dst, srv.AppendTo(buf[:0]))
}

// appendAuthority appends the host of a neutral request as the rule wants
// it: its authority, or the server's address when it names none. It
// appends nothing when neither is known.
func (w *Rewriter) appendAuthority(dst []byte, r httpmsg.Request) []byte {
	if a := r.Authority(); a != nil {
		return w.appendHost(dst, a)
	}
	if s := r.Server(); s.IsValid() {
		return w.appendServerHost(dst, s)
	}
	if w.mode == hostLiteral {
		return append(dst, w.literal...)
	}
	return dst
}

func (w *Rewriter) removes(name []byte) bool {
	for _, s := range w.remove {
		if httpsyntax.EqualFold(name, s) {
			return true
		}
	}
	return false
}

func (w *Rewriter) setIndex(name []byte) int {
	for j := range w.set {
		if httpsyntax.EqualFold(name, w.set[j].name) {
			return j
		}
	}
	return -1
}

// appendFieldStart appends a field line up to its value: name, colon and the
// whitespace as captured. A field with an empty value is written afresh,
// since its value span carries no position to splice at.
func appendFieldStart(dst, raw []byte, h *httpframe.Header) []byte {
	if h.Value.Len() == 0 || h.Value.Start < h.Name.End || h.Value.End > h.Line.End {
		dst = append(dst, raw[h.Name.Start:h.Name.End]...)
		return append(dst, ": "...)
	}
	return append(dst, raw[h.Line.Start:h.Value.Start]...)
}

// appendFieldEnd appends what follows the value of a field line: trailing
// whitespace and the line ending as captured.
func appendFieldEnd(dst, raw []byte, h *httpframe.Header) []byte {
	if h.Value.Len() == 0 || h.Value.Start < h.Name.End || h.Value.End > h.Line.End {
		return append(dst, "\r\n"...)
	}
	return append(dst, raw[h.Value.End:h.Line.End]...)
}

// appendClientAddr appends the client's IP the way X-Forwarded-For carries it:
// no port, IPv6 without brackets or zone, IPv4-mapped IPv6 as IPv4.
func appendClientAddr(dst []byte, ap netip.AddrPort) []byte {
	return ap.Addr().Unmap().WithZone("").AppendTo(dst)
}

// requestLineEnd returns the offset just past the request line's line ending.
func requestLineEnd(r *httpframe.Request) int {
	if len(r.Headers) > 0 {
		return r.Headers[0].Line.Start
	}
	if i := bytes.IndexByte(r.Raw[r.VersionSpan.End:r.HeadEnd], '\n'); i >= 0 {
		return r.VersionSpan.End + i + 1
	}
	return r.HeadEnd
}

// absoluteHost finds the host[:port] of an absolute-form target
// ("http://user@host:port/path"), returning its bounds in raw.
func absoluteHost(raw []byte, target httpframe.Span) (start, end int, ok bool) {
	t := raw[target.Start:target.End]
	var n int
	switch {
	case httpsyntax.HasPrefixFold(t, "http://"):
		n = len("http://")
	case httpsyntax.HasPrefixFold(t, "https://"):
		n = len("https://")
	default:
		return 0, 0, false
	}
	e := n
	for e < len(t) && t[e] != '/' && t[e] != '?' && t[e] != '#' {
		e++
	}
	s := n
	if at := bytes.LastIndexByte(t[n:e], '@'); at >= 0 {
		s = n + at + 1
	}
	if s == e {
		return 0, 0, false
	}
	return target.Start + s, target.Start + e, true
}

// connOptions remembers where the Connection fields of a request are,
// so that checking a field name against their options does not scan every
// field again. Requests with more Connection fields than fit are checked
// against all of them the slow way.
type connOptions struct {
	idx [4]int
	n   int
}

func (c *connOptions) add(i int) {
	if c.n < len(c.idx) {
		c.idx[c.n] = i
	}
	c.n++
}

// lists reports whether name is one of the options of a Connection field of
// r: such a field is hop-by-hop by declaration.
func (c *connOptions) lists(r *httpframe.Request, name []byte) bool {
	if c.n > len(c.idx) {
		for i := range r.Headers {
			if classify(r.Bytes(r.Headers[i].Name)) == fieldConnection && httpsyntax.HasToken(r.Bytes(r.Headers[i].Value), name) {
				return true
			}
		}
		return false
	}
	for _, i := range c.idx[:c.n] {
		if httpsyntax.HasToken(r.Bytes(r.Headers[i].Value), name) {
			return true
		}
	}
	return false
}

// fieldKind sorts the field names the rewriter treats specially.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldXFF
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldTE       // hop-by-hop, but "te: trailers" goes to HTTP/2 shadows
	fieldHopByHop // Keep-Alive, Proxy-Connection, Upgrade
	fieldCookie
)

// classify returns the kind of field name. The switch on length keeps the
// common case (an ordinary field) to one or two comparisons.
func classify(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if httpsyntax.EqualFold(name, "te") {
			return fieldTE
		}
	case 4:
		if httpsyntax.EqualFold(name, "host") {
			return fieldHost
		}
	case 6:
		if httpsyntax.EqualFold(name, "cookie") {
			return fieldCookie
		}
	case 7:
		if httpsyntax.EqualFold(name, "upgrade") {
			return fieldHopByHop
		}
	case 10:
		if httpsyntax.EqualFold(name, "connection") {
			return fieldConnection
		}
		if httpsyntax.EqualFold(name, "keep-alive") {
			return fieldHopByHop
		}
	case 14:
		if httpsyntax.EqualFold(name, "content-length") {
			return fieldContentLength
		}
	case 15:
		if httpsyntax.EqualFold(name, "x-forwarded-for") {
			return fieldXFF
		}
	case 16:
		if httpsyntax.EqualFold(name, "proxy-connection") {
			return fieldHopByHop
		}
	case 17:
		if httpsyntax.EqualFold(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
	}
	return fieldOther
}

// Authority returns the Host (HTTP/1) or :authority (HTTP/2) that the
// shadow is sent for r, as the rule wants it; "" when r names none and its
// server is not known.
func (w *Rewriter) Authority(r httpmsg.Request) string {
	return string(w.appendAuthority(nil, r))
}
