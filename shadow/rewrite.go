package shadow

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"github.com/shadowtee/shadowtee/httpframe"
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
	if i := portStart(host); i >= 0 {
		dst = append(dst, host[:i]...)
		dst = append(dst, hostSuffix...)
		return append(dst, host[i:]...)
	}
	dst = append(dst, host...)
	return append(dst, hostSuffix...)
}

// portStart returns the index of the ':' that starts the port of host, or -1.
func portStart(host []byte) int {
	from := 0
	if i := bytes.LastIndexByte(host, ']'); i >= 0 {
		from = i
	}
	if i := bytes.LastIndexByte(host[from:], ':'); i >= 0 {
		return from + i
	}
	return -1
}

// HeaderValue is one header field to set on mirrored requests.
type HeaderValue struct {
	Name  string
	Value string
}

// RewriteConfig says how a captured request is changed before it goes to the
// shadow. The zero value gives the behaviour of an in-proxy mirror.
type RewriteConfig struct {
	// NoHostSuffix keeps Host (and an absolute-form target's authority) as the
	// client sent it, instead of appending "-shadow".
	NoHostSuffix bool
	// Host, when not empty, replaces the host (and port) of every request, in
	// the Host field and in an absolute-form target; it turns the suffix off.
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

// maxSetHeaders bounds SetHeaders so that AppendRequest can track which ones
// it has applied in a single machine word.
const maxSetHeaders = 64

// Rewriter serialises captured requests as they must reach the shadow. It is
// immutable and safe for concurrent use.
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
//     "TE: trailers": it only tells the server what our response reader
//     accepts, and ours accepts chunked and trailers without being asked.
//     A Connection field cannot remove Host, Content-Length,
//     Transfer-Encoding or X-Forwarded-For: losing the framing fields would
//     make the shadow read the body as the next request.
//     Transfer-Encoding and Content-Length stay, and the body stays framed
//     byte for byte (chunked stays chunked, trailers included).
//   - HTTP/1.0 requests get "Connection: keep-alive", since the shadow
//     connection is persistent and pipelined.
//   - Then RemoveHeaders, then SetHeaders.
type Rewriter struct {
	mode    hostMode
	literal []byte
	set     []setField
	remove  []string
	xff     bool // append the client address to X-Forwarded-For
}

type setField struct {
	name string
	line []byte // "Name: value\r\n"
}

// framingFields may be neither set nor removed by configuration: they decide
// where the request ends, or (Host) are ruled by Host and NoHostSuffix.
var framingFields = []string{"host", "content-length", "transfer-encoding"}

// connectionFields describe the client's connection; the sender owns the
// connection to the shadow, so they cannot be set.
var connectionFields = []string{"connection", "keep-alive", "proxy-connection", "te", "upgrade"}

// NewRewriter checks cfg and returns a Rewriter for it.
func NewRewriter(cfg RewriteConfig) (*Rewriter, error) {
	w := &Rewriter{xff: !cfg.NoXFF}
	switch {
	case cfg.Host != "":
		if err := checkHostLiteral(cfg.Host); err != nil {
			return nil, err
		}
		w.mode, w.literal = hostLiteral, []byte(cfg.Host)
	case cfg.NoHostSuffix:
		w.mode = hostKept
	}

	for _, name := range cfg.RemoveHeaders {
		if !isToken(name) {
			return nil, fmt.Errorf("remove header %q: not a valid header name", name)
		}
		if oneOf(name, framingFields) {
			return nil, fmt.Errorf("remove header %q: this field cannot be removed", name)
		}
		w.remove = append(w.remove, name)
		if equalFold([]byte(name), "x-forwarded-for") {
			w.xff = false
		}
	}
	if len(cfg.SetHeaders) > maxSetHeaders {
		return nil, fmt.Errorf("set headers: %d given, at most %d", len(cfg.SetHeaders), maxSetHeaders)
	}
	for i, hv := range cfg.SetHeaders {
		if !isToken(hv.Name) {
			return nil, fmt.Errorf("set header %q: not a valid header name", hv.Name)
		}
		if oneOf(hv.Name, framingFields) || oneOf(hv.Name, connectionFields) {
			return nil, fmt.Errorf("set header %q: this field cannot be set", hv.Name)
		}
		if err := checkFieldValue(hv.Value); err != nil {
			return nil, fmt.Errorf("set header %q: %w", hv.Name, err)
		}
		if oneOf(hv.Name, cfg.RemoveHeaders) {
			return nil, fmt.Errorf("set header %q: also listed in remove headers", hv.Name)
		}
		for _, prev := range cfg.SetHeaders[:i] {
			if equalFold([]byte(prev.Name), hv.Name) {
				return nil, fmt.Errorf("set header %q: given twice", hv.Name)
			}
		}
		line := make([]byte, 0, len(hv.Name)+len(hv.Value)+4)
		line = append(append(append(append(line, hv.Name...), ": "...), hv.Value...), "\r\n"...)
		w.set = append(w.set, setField{name: hv.Name, line: line})
		if equalFold([]byte(hv.Name), "x-forwarded-for") {
			w.xff = false
		}
	}
	return w, nil
}

func oneOf(name string, list []string) bool {
	for _, s := range list {
		if equalFold([]byte(s), name) {
			return true
		}
	}
	return false
}

// checkHostLiteral accepts host, host:port, [v6] and [v6]:port made of
// visible characters that may appear in an authority without userinfo.
func checkHostLiteral(h string) error {
	bad := func(why string) error { return fmt.Errorf("host %q: %s", h, why) }
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f {
			return bad("contains a space or control character")
		}
		switch c {
		case '/', '?', '#', '@', ',', '\\', '"':
			return bad(fmt.Sprintf("contains %q", c))
		}
	}
	b := []byte(h)
	hostEnd := len(b)
	if i := portStart(b); i >= 0 {
		port := b[i+1:]
		if len(port) == 0 || len(port) > 5 {
			return bad("invalid port")
		}
		for _, c := range port {
			if c < '0' || c > '9' {
				return bad("invalid port")
			}
		}
		hostEnd = i
	}
	host := b[:hostEnd]
	switch {
	case len(host) == 0:
		return bad("empty host")
	case host[0] == '[':
		if host[len(host)-1] != ']' {
			return bad("unterminated IPv6 literal")
		}
		if _, err := netip.ParseAddr(string(host[1 : len(host)-1])); err != nil {
			return bad("invalid IPv6 literal")
		}
	case bytes.ContainsAny(host, "[]:"):
		return bad("IPv6 addresses must be in brackets")
	}
	return nil
}

func checkFieldValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return errors.New("value contains a control character (CR, LF, NUL or similar)")
		}
	}
	return nil
}

// AppendRequest appends the request as it is to be sent to the shadow to dst
// and returns the extended slice. It allocates nothing beyond growing dst.
func (w *Rewriter) AppendRequest(dst []byte, r *httpframe.Request) []byte {
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
			var buf [64]byte
			srv := netip.AddrPortFrom(r.ServerAddr.Addr().Unmap().WithZone(""), r.ServerAddr.Port())
			dst = append(dst, "Host: "...)
			dst = w.appendHost(dst, srv.AppendTo(buf[:0]))
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
		if kind == fieldConnection || kind == fieldHopByHop {
			continue
		}
		if conns.n > 0 && kind == fieldOther && conns.lists(r, name) {
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
	// The blank line as captured, then the body as framed on the wire.
	dst = append(dst, raw[last:r.HeadEnd]...)
	return append(dst, raw[r.HeadEnd:]...)
}

func (w *Rewriter) appendHost(dst, host []byte) []byte {
	switch w.mode {
	case hostKept:
		return append(dst, host...)
	case hostLiteral:
		return append(dst, w.literal...)
	}
	return appendShadowHost(dst, host)
}

func (w *Rewriter) removes(name []byte) bool {
	for _, s := range w.remove {
		if equalFold(name, s) {
			return true
		}
	}
	return false
}

func (w *Rewriter) setIndex(name []byte) int {
	for j := range w.set {
		if equalFold(name, w.set[j].name) {
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
	case hasPrefixFold(t, "http://"):
		n = len("http://")
	case hasPrefixFold(t, "https://"):
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

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
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
			if classify(r.Bytes(r.Headers[i].Name)) == fieldConnection && hasOption(r.Bytes(r.Headers[i].Value), name) {
				return true
			}
		}
		return false
	}
	for _, i := range c.idx[:c.n] {
		if hasOption(r.Bytes(r.Headers[i].Value), name) {
			return true
		}
	}
	return false
}

// hasOption reports whether the comma-separated list v holds name.
func hasOption(v, name []byte) bool {
	for len(v) > 0 {
		var opt []byte
		opt, v = nextListItem(v)
		if equalFoldBytes(opt, name) {
			return true
		}
	}
	return false
}
