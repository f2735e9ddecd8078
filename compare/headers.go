package compare

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// defaultNoiseHeaders are the answer fields that differ from one instance,
// one request or one moment to the next whatever the code: clocks, caches,
// tracing, request ids, rate limit counters, per-hop framing. A trailing
// "*" makes a prefix.
var defaultNoiseHeaders = []string{
	// clocks and caches
	"date", "age", "expires", "last-modified", "etag", "x-cache", "x-cache-hits",
	"cf-cache-status", "x-served-by", "x-timer",
	// the instance
	"server", "via", "x-envoy-*", "x-kong-*", "cf-ray", "x-amz-cf-id", "x-amz-cf-pop",
	"x-amz-id-2", "x-amz-request-id", "x-amzn-requestid", "x-amzn-trace-id",
	// requests and traces
	"x-request-id", "x-correlation-id", "x-trace-id", "traceparent", "tracestate",
	"b3", "x-b3-*", "x-cloud-trace-context", "x-datadog-trace-id", "x-datadog-parent-id",
	"request-id", "x-runtime", "x-response-time", "server-timing",
	// reporting endpoints hold per-instance tokens
	"report-to", "nel", "reporting-endpoints",
	// counters
	"x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-remaining", "ratelimit-reset",
	// per hop: the framing of the answer, not its content
	"connection", "keep-alive", "proxy-connection", "transfer-encoding",
}

// defaultRedactHeaders are the fields whose values never leave memory.
var defaultRedactHeaders = []string{
	"authorization", "proxy-authorization", "cookie", "set-cookie",
	"x-api-key", "x-auth-token",
}

// DefaultNoiseHeaders returns the names of the answer header fields that
// are not compared unless Config.CompareHeaders names them. A trailing "*"
// matches a prefix. Set-Cookie is compared by cookie name only, and
// Content-Length only when neither answer has a body (the bodies themselves
// are compared otherwise).
func DefaultNoiseHeaders() []string { return slices.Clone(defaultNoiseHeaders) }

// DefaultRedactHeaders returns the header fields whose values are replaced
// by "[redacted]" everywhere, before Config.RedactHeaders adds its own.
func DefaultRedactHeaders() []string { return slices.Clone(defaultRedactHeaders) }

// nameSet matches header names without regard to case: exact names, and
// prefixes (written with a trailing "*").
type nameSet struct {
	exact    map[string]struct{}
	prefixes []string
}

func newNameSet(names ...[]string) nameSet {
	s := nameSet{exact: make(map[string]struct{})}
	for _, l := range names {
		for _, n := range l {
			n = strings.ToLower(n)
			if p, ok := strings.CutSuffix(n, "*"); ok {
				if !slices.Contains(s.prefixes, p) {
					s.prefixes = append(s.prefixes, p)
				}
				continue
			}
			s.exact[n] = struct{}{}
		}
	}
	return s
}

func (s *nameSet) has(name []byte) bool {
	var buf [64]byte
	if len(name) <= len(buf) {
		for i, c := range name {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if _, ok := s.exact[string(buf[:len(name)])]; ok {
			return true
		}
	}
	for _, p := range s.prefixes {
		if httpsyntax.HasPrefixFold(name, p) {
			return true
		}
	}
	return false
}

func checkHeaderNames(what string, names []string) error {
	for _, n := range names {
		if !httpsyntax.IsToken(strings.TrimSuffix(n, "*")) {
			return fmt.Errorf("%s: %q is not a header field name (a trailing * makes a prefix)", what, n)
		}
	}
	return nil
}

// headerComparer compares header (or trailer) sections.
type headerComparer struct {
	noise   nameSet
	keep    nameSet // names taken out of the noise prefixes by CompareHeaders
	redact  nameSet
	a, b    []hfield
	names   []byte
	ja, jb  []byte
	path    []byte
	compare bool // compare Content-Length (neither answer has a body)
}

type hfield struct {
	off, n int // the lower-case name in names
	name   []byte
	value  []byte
}

func (c *headerComparer) isNoise(name []byte) bool {
	if httpsyntax.EqualFold(name, "content-length") {
		return !c.compare && !c.keep.has(name)
	}
	return c.noise.has(name) && !c.keep.has(name)
}

func isSetCookie(name []byte) bool { return httpsyntax.EqualFold(name, "set-cookie") }

// cookieName returns the name of the cookie that a Set-Cookie value sets.
func cookieName(v []byte) []byte {
	if i := bytes.IndexByte(v, '='); i >= 0 {
		v = v[:i]
	} else if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return httpsyntax.TrimOWS(v)
}

func fieldEqual(fa, fb *httpmsg.Field) bool {
	if isSetCookie(fa.Name) {
		return bytes.Equal(cookieName(fa.Value), cookieName(fb.Value))
	}
	return bytes.Equal(httpsyntax.TrimOWS(fa.Value), httpsyntax.TrimOWS(fb.Value))
}

// fields compares two header sections: prefix is "header." or "trailer.".
// Fields are walked in order first, which costs nothing when the sections
// agree; the first disagreement that noise does not explain sends the
// comparison to a walk by name.
func (c *headerComparer) fields(prefix string, a, b []httpmsg.Field, out *pairBuf) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		fa, fb := &a[i], &b[j]
		if httpsyntax.EqualFold(fa.Name, fb.Name) {
			if fieldEqual(fa, fb) || c.isNoise(fa.Name) {
				i, j = i+1, j+1
				continue
			}
			c.byName(prefix, a, b, out)
			return
		}
		switch {
		case c.isNoise(fa.Name):
			i++
		case c.isNoise(fb.Name):
			j++
		default:
			c.byName(prefix, a, b, out)
			return
		}
	}
	for ; i < len(a); i++ {
		if !c.isNoise(a[i].Name) {
			c.byName(prefix, a, b, out)
			return
		}
	}
	for ; j < len(b); j++ {
		if !c.isNoise(b[j].Name) {
			c.byName(prefix, a, b, out)
			return
		}
	}
}

func (c *headerComparer) collect(dst []hfield, fs []httpmsg.Field) []hfield {
	dst = dst[:0]
	for i := range fs {
		f := &fs[i]
		if c.isNoise(f.Name) {
			continue
		}
		off := len(c.names)
		for _, ch := range f.Name {
			if ch >= 'A' && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			c.names = append(c.names, ch)
		}
		dst = append(dst, hfield{off: off, n: len(f.Name), value: httpsyntax.TrimOWS(f.Value)})
	}
	return dst
}

func cmpHField(x, y hfield) int { return bytes.Compare(x.name, y.name) }

// byName compares the fields of two sections by name: the values of the
// fields of one name, joined in order, against each other.
func (c *headerComparer) byName(prefix string, a, b []httpmsg.Field, out *pairBuf) {
	c.names = c.names[:0]
	c.a = c.collect(c.a, a)
	c.b = c.collect(c.b, b)
	for _, l := range [2][]hfield{c.a, c.b} {
		for k := range l {
			l[k].name = c.names[l[k].off : l[k].off+l[k].n]
		}
	}
	slices.SortStableFunc(c.a, cmpHField)
	slices.SortStableFunc(c.b, cmpHField)
	i, j := 0, 0
	for i < len(c.a) || j < len(c.b) {
		var cmp int
		switch {
		case i == len(c.a):
			cmp = 1
		case j == len(c.b):
			cmp = -1
		default:
			cmp = bytes.Compare(c.a[i].name, c.b[j].name)
		}
		var name []byte
		var ia, ib int
		switch {
		case cmp < 0:
			name = c.a[i].name
			ia = group(c.a, i)
		case cmp > 0:
			name = c.b[j].name
			ib = group(c.b, j)
		default:
			name = c.a[i].name
			ia, ib = group(c.a, i), group(c.b, j)
		}
		cookie := isSetCookie(name)
		c.ja = c.join(c.ja[:0], c.a[i:i+ia], cookie)
		c.jb = c.join(c.jb[:0], c.b[j:j+ib], cookie)
		if ia == 0 || ib == 0 || !bytes.Equal(c.ja, c.jb) {
			c.path = append(append(c.path[:0], prefix...), name...)
			va, vb := c.ja, c.jb
			if !cookie && c.redact.has(name) {
				va, vb = redactedBytes, redactedBytes
			}
			k := kindValue
			if ib == 0 {
				k = kindMissing
			} else if ia == 0 {
				k = kindExtra
			}
			out.addRaw(k, c.path, va, vb, ia > 0, ib > 0)
		}
		i, j = i+ia, j+ib
	}
}

// group returns how many fields from l[i] share its name.
func group(l []hfield, i int) int {
	n := 1
	for i+n < len(l) && bytes.Equal(l[i+n].name, l[i].name) {
		n++
	}
	return n
}

// join writes the values of fields of one name as one list; for
// Set-Cookie, the names of the cookies only, sorted.
func (c *headerComparer) join(dst []byte, fs []hfield, cookie bool) []byte {
	if cookie {
		var names [][]byte
		for _, f := range fs {
			names = append(names, cookieName(f.value))
		}
		slices.SortFunc(names, bytes.Compare)
		for k, n := range names {
			if k > 0 {
				dst = append(dst, "; "...)
			}
			dst = append(dst, n...)
		}
		return dst
	}
	for k, f := range fs {
		if k > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, f.value...)
	}
	return dst
}
