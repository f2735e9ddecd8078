package httpsyntax

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
)

// PortStart returns the index of the ':' that starts the port of a host
// (Host field, :authority), or -1 when there is no port. The separator is
// the last ':' after the last ']', so IPv6 literals keep their colons (as
// Envoy's getPortStart finds it).
func PortStart[T ~string | ~[]byte](host T) int {
	from := 0
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ']' {
			from = i
			break
		}
	}
	for i := len(host) - 1; i >= from; i-- {
		if host[i] == ':' {
			return i
		}
	}
	return -1
}

// CheckAuthority accepts host, host:port, [v6] and [v6]:port made of
// visible characters that may appear in an authority without userinfo: a
// Host to send as it is.
func CheckAuthority(h string) error {
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
	if i := PortStart(b); i >= 0 {
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

// Origin is a parsed http:// or https:// URL without path: where a shadow
// listens.
type Origin struct {
	Addr   string // host:port to dial, the port defaulted from the scheme
	Host   string // the host name, for TLS server name checks
	Secure bool   // https
}

// ParseOrigin parses a shadow URL: http:// or https:// host[:port], with no
// path other than "/", no user information, query or fragment.
func ParseOrigin(raw string) (Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Origin{}, fmt.Errorf("shadow URL %q: %w", raw, err)
	}
	bad := func(why string) (Origin, error) { return Origin{}, fmt.Errorf("shadow URL %q: %s", raw, why) }
	var o Origin
	port := "80"
	switch u.Scheme {
	case "http":
	case "https":
		port, o.Secure = "443", true
	default:
		return bad("want http:// or https://")
	}
	switch {
	case u.Opaque != "" || u.User != nil:
		return bad("want http(s)://host[:port]")
	case u.Path != "" && u.Path != "/":
		return bad("a path is not supported: requests keep their own target")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("a query or fragment is not supported")
	}
	o.Host = u.Hostname()
	if o.Host == "" {
		return bad("missing host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("invalid port")
		}
		port = p
	}
	o.Addr = net.JoinHostPort(o.Host, port)
	return o, nil
}
