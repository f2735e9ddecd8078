package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// Router picks the rule of each framed request: the first rule of the file
// whose every non-empty part matches. It is immutable and safe for
// concurrent use; a reload compiles a new one.
type Router struct {
	routes []route
}

type route struct {
	ports    []uint16
	exact    [][]byte // lower-case host names
	suffixes [][]byte // ".example.com" for "*.example.com"
	anyHost  bool
	prefix   []byte // without a trailing '/'; nil matches every path
	methods  [][]byte
	dests    []netip.Prefix
}

// Compile builds the Router of f. Files from Parse and Load always compile;
// the checks here catch Files built by hand.
func Compile(f *File) (*Router, error) {
	rt := &Router{routes: make([]route, len(f.Rules))}
	for i := range f.Rules {
		r := &f.Rules[i]
		m := &r.Match
		rr := &rt.routes[i]
		// A rules file always lists ports (the kernel needs them); a rule
		// built by hand without ports, for a capture file whose server side
		// was found otherwise, matches every port.
		rr.ports = m.Ports
		rr.anyHost = len(m.Hosts) == 0
		for _, h := range m.Hosts {
			norm, msg, _ := checkHost(h)
			if msg != "" {
				return nil, fmt.Errorf("rule %q: host %q %s", r.Name, h, msg)
			}
			if rest, ok := strings.CutPrefix(norm, "*"); ok {
				rr.suffixes = append(rr.suffixes, []byte(rest))
			} else {
				rr.exact = append(rr.exact, []byte(norm))
			}
		}
		if p := m.PathPrefix; p != "" {
			if msg, _ := checkPathPrefix(p); msg != "" {
				return nil, fmt.Errorf("rule %q: pathPrefix %q %s", r.Name, p, msg)
			}
			if p = strings.TrimRight(p, "/"); p != "" {
				rr.prefix = []byte(p)
			}
		}
		for _, meth := range m.Methods {
			if !isToken(meth) {
				return nil, fmt.Errorf("rule %q: method %q is not an HTTP method name", r.Name, meth)
			}
			rr.methods = append(rr.methods, []byte(meth))
		}
		for _, p := range m.Destinations {
			if !p.IsValid() {
				return nil, fmt.Errorf("rule %q: invalid destination", r.Name)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			rr.dests = append(rr.dests, p.Masked())
		}
	}
	return rt, nil
}

// Len returns the number of rules.
func (rt *Router) Len() int { return len(rt.routes) }

// Match returns the index in File.Rules of the first rule that r matches. It
// needs only the request head, and does not allocate.
//
// The host is the request's authority (HTTP/2 :authority; for HTTP/1 the
// authority of an absolute-form target when there is one, as a server must
// then ignore Host, RFC 9112 section 3.2.2, else the Host field), without
// port and trailing dot, compared without regard to case. A request with
// none matches only rules without hosts. The path is the request's path up
// to '?' or '#', compared byte for byte, undecoded. The server address
// matches destinations as IPv4 when it is IPv4-mapped.
func (rt *Router) Match(r httpmsg.Request) (index int, ok bool) {
	srv := r.Server()
	port := srv.Port()
	addr := srv.Addr().Unmap().WithZone("")
	method := r.Method()
	host, path := stripPort(r.Authority()), r.Path()
	if i := bytes.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	for i := range rt.routes {
		if rt.routes[i].match(port, addr, host, path, method) {
			return i, true
		}
	}
	return -1, false
}

func (rr *route) match(port uint16, addr netip.Addr, host, path, method []byte) bool {
	found := len(rr.ports) == 0
	for _, p := range rr.ports {
		if p == port {
			found = true
			break
		}
	}
	if !found {
		return false
	}
	if len(rr.dests) > 0 {
		found = false
		for _, p := range rr.dests {
			if p.Contains(addr) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(rr.methods) > 0 {
		found = false
		for _, m := range rr.methods {
			if bytes.Equal(m, method) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if rr.prefix != nil && !segmentPrefix(path, rr.prefix) {
		return false
	}
	return rr.anyHost || rr.matchHost(host)
}

func (rr *route) matchHost(host []byte) bool {
	if len(host) == 0 {
		return false
	}
	for _, h := range rr.exact {
		if httpsyntax.EqualFold(host, h) {
			return true
		}
	}
	for _, s := range rr.suffixes {
		// The suffix starts with '.', so a match leaves at least one
		// character before it: "example.com" is not below itself.
		if len(host) > len(s) && httpsyntax.EqualFold(host[len(host)-len(s):], s) {
			return true
		}
	}
	return false
}

// segmentPrefix reports whether path starts with the path segments of
// prefix: "/api" matches "/api" and "/api/x", not "/apis".
func segmentPrefix(path, prefix []byte) bool {
	return bytes.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// stripPort removes the port (httpsyntax.PortStart, as the rewriter finds
// it) and one trailing dot.
func stripPort(h []byte) []byte {
	if i := httpsyntax.PortStart(h); i >= 0 {
		h = h[:i]
	}
	if n := len(h); n > 0 && h[n-1] == '.' {
		h = h[:n-1]
	}
	return h
}
