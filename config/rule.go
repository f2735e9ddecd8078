package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// Hints reused by several messages.
const (
	hintPercent = "write a number such as 100 or 12.5"
	hintURL     = "write http://host:port or https://host:port, e.g. http://httpbin.shadow.svc.cluster.local:8000"
	hintPorts   = "write match: {ports: [8080]}"
	hintHost    = "write a name such as shadowing.example, or *.example.com for every name below example.com"
)

// ruleAt decodes the i-th rule and returns it with the line of its ports
// (for the file-wide port limit).
func (d *decoder) ruleAt(n *yaml.Node, i int) (Rule, int) {
	d.rule = ruleLabel(peekName(n), i)
	r := Rule{Line: n.Line, Percentage: 100, HostSuffix: true}
	fs := d.mapping(field{v: n}, secRule, exampleRule)
	if fs == nil {
		return r, n.Line
	}

	if name, ok := fs["name"]; !ok {
		d.errorf(n, "write name: followed by a short unique name, e.g. name: httpbin", "the rule has no name")
	} else if s, ok := d.str(name, "name", "write a short unique name, e.g. name: httpbin"); ok {
		if msg := checkName(s); msg != "" {
			d.errorf(name.v, "write a short name such as httpbin or api-v2", "name %q %s", s, msg)
		} else {
			r.Name = s
			d.rule = ruleLabel(s, i)
		}
	}

	portsLine := n.Line
	if m, ok := fs["match"]; !ok {
		d.errorf(n, hintPorts, "the rule has no match: the kernel copies only the TCP ports that rules list, so every rule needs match.ports")
	} else {
		portsLine = d.match(m, &r.Match)
	}
	if s, ok := fs["shadow"]; !ok {
		d.errorf(n, "write shadow: {url: http://host:port}", "the rule has no shadow")
	} else {
		d.shadow(s, &r.Shadow)
	}

	if p, ok := fs["percentage"]; ok {
		r.Percentage = d.percentage(p)
	}
	if k, ok := fs["sampleKey"]; ok {
		if s, ok := d.str(k, "sampleKey", "write header:NAME, e.g. header:x-request-id"); ok {
			if err := CheckSampleKey(s); err != nil {
				d.errorf(k.v, "write header:NAME, e.g. header:x-request-id", "sampleKey: %v", err)
			} else {
				r.SampleKey = s
			}
		}
	}

	r.HostSuffix = d.boolean(fs["hostSuffix"], "hostSuffix", true)
	if h, ok := fs["host"]; ok {
		if s, ok := d.str(h, "host", "write the Host to send, e.g. host: shadow.example:8080"); ok {
			if s == "" {
				d.errorf(h.v, "write the Host to send, e.g. host: shadow.example:8080, or remove host to keep the -shadow suffix", "host is empty")
			} else if err := httpsyntax.CheckAuthority(s); err != nil {
				d.errorf(h.v, "write a host name, with a port if needed, e.g. host: shadow.example:8080", "%v", err)
			}
			r.Host = s
		}
		if hs := fs["hostSuffix"]; hs.ok() && r.HostSuffix {
			d.errorf(hs.k, "remove hostSuffix: a literal host replaces the suffix", "host and hostSuffix: true are both set")
		}
		r.HostSuffix = false
	}

	r.Headers.XForwardedFor = true
	if h, ok := fs["headers"]; ok {
		d.headers(h, &r)
	}
	if c, ok := fs["compare"]; ok {
		r.Compare = d.compare(c)
	}
	return r, portsLine
}

// peekName returns the rule's name when it is valid, so that problems
// reported before the name is decoded carry it too.
func peekName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], resolve(n.Content[i+1]); k.Value == "name" && v != nil && v.Kind == yaml.ScalarNode && checkName(v.Value) == "" {
			return v.Value
		}
	}
	return ""
}

// checkName returns why a rule name is refused, or "". Names label metrics
// and log lines, so they are kept to characters that need no quoting there.
func checkName(s string) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > 63 {
		return "is longer than 63 characters"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "may hold only letters, digits, '-', '_' and '.'"
		}
	}
	return ""
}

// match decodes match and returns the line of its ports.
func (d *decoder) match(f field, m *Match) int {
	fs := d.mapping(f, secMatch, "match: {ports: [8080], hosts: [shadowing.example]}")
	line := f.k.Line
	if fs == nil {
		return line
	}

	ports := fs["ports"]
	if ports.ok() {
		line = ports.k.Line
	}
	items := d.list(ports, "ports", "write ports: [8080] or ports: [8080, 8443]")
	for _, n := range items {
		if p, ok := d.integer(n, "port", "write a TCP port such as 8080"); ok {
			if p < 1 || p > 65535 {
				d.errorf(n, "write a TCP port such as 8080", "port %d is outside 1..65535", p)
				continue
			}
			m.Ports = append(m.Ports, uint16(p))
		}
	}
	if len(items) == 0 && (!ports.ok() || isNull(ports.v) || resolve(ports.v).Kind == yaml.SequenceNode) {
		at := f.k
		if ports.ok() {
			at = ports.k
		}
		d.errorf(at, hintPorts, "match.ports is empty: the kernel copies only the TCP ports that rules list, so every rule needs at least one")
	}
	slices.Sort(m.Ports)
	m.Ports = slices.Compact(m.Ports)

	for _, n := range d.list(fs["hosts"], "hosts", `write hosts: ["shadowing.example"]`) {
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.errorf(n, hintHost, "a host must be a name, not %s", describe(n))
			continue
		}
		h, msg, hint := checkHost(n.Value)
		if msg != "" {
			d.errorf(n, hint, "host %q %s", n.Value, msg)
			continue
		}
		if !slices.Contains(m.Hosts, h) {
			m.Hosts = append(m.Hosts, h)
		}
	}

	if p := fs["pathPrefix"]; p.ok() {
		if s, ok := d.str(p, "pathPrefix", "write a path such as /api"); ok {
			if msg, hint := checkPathPrefix(s); msg != "" {
				d.errorf(p.v, hint, "pathPrefix %q %s", s, msg)
			} else {
				m.PathPrefix = s
			}
		}
	}

	for _, n := range d.list(fs["methods"], "methods", "write methods: [GET, POST]") {
		if n.Kind != yaml.ScalarNode || isNull(n) || !isToken(n.Value) {
			d.errorf(n, "write a method such as GET or POST", "method %s is not an HTTP method name", describe(n))
			continue
		}
		if up := strings.ToUpper(n.Value); !slices.Contains(m.Methods, up) {
			m.Methods = append(m.Methods, up)
		}
	}

	for _, n := range d.list(fs["destinations"], "destinations", `write destinations: ["10.244.1.0/24"]`) {
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.errorf(n, `write a network such as "10.244.1.0/24" or "fd00::/64"`, "a destination must be a CIDR prefix, not %s", describe(n))
			continue
		}
		p, msg, hint := checkPrefix(n.Value)
		if msg != "" {
			d.errorf(n, hint, "destination %q %s", n.Value, msg)
			continue
		}
		if !slices.Contains(m.Destinations, p) {
			m.Destinations = append(m.Destinations, p)
		}
	}
	return line
}

func (d *decoder) shadow(f field, s *Shadow) {
	fs := d.mapping(f, secShadow, "shadow: {url: http://host:port}")
	if fs == nil {
		return
	}

	if u, ok := fs["url"]; !ok {
		d.errorf(f.k, hintURL, "shadow has no url")
	} else if v, ok := d.str(u, "url", hintURL); ok {
		if _, err := httpsyntax.ParseOrigin(v); err != nil {
			d.errorf(u.v, hintURL, "%v", err)
		} else {
			s.URL = v
		}
	}

	if p, ok := fs["protocol"]; ok {
		const hint = "write protocol: http1 for a shadow that speaks only HTTP/1.1, or protocol: http2"
		if v, ok := d.str(p, "protocol", hint); ok {
			switch v {
			case ProtocolHTTP1, ProtocolHTTP2:
				s.Protocol = v
			default:
				d.errorf(p.v, hint, "protocol %q is not http1 or http2", v)
			}
		}
	}

	if w, ok := fs["workers"]; ok {
		d.errorf(w.k, "remove workers; write maxConnections: N to cap the connections",
			"workers is not a field: connections to the shadow grow with the requests in flight, up to maxConnections (default %d)", DefaultMaxConnections)
	}
	s.MaxConnections = d.count(fs["maxConnections"], "maxConnections", "connections", DefaultMaxConnections)
	s.MaxPending = d.count(fs["maxPending"], "maxPending", "requests waiting for a connection", DefaultMaxPending)
	s.MaxRequests = d.count(fs["maxRequests"], "maxRequests", "requests in flight", DefaultMaxRequests)
	if _, ok := fs["pipeline"]; ok {
		s.Pipeline = d.count(fs["pipeline"], "pipeline", "requests at once on one connection", 1)
	}
	s.Ordered = d.boolean(fs["ordered"], "ordered", false)
	s.Timeout = d.duration(fs["timeout"], "timeout")
	s.IdleTimeout = d.duration(fs["idleTimeout"], "idleTimeout")

	if q, ok := fs["queue"]; ok {
		const hint = "write a size such as 64MiB, 1GiB or a number of bytes"
		if n, ok := d.scalar(q, "queue", hint); ok {
			v, err := ParseSize(n.Value)
			switch {
			case err != nil:
				d.errorf(n, hint, "queue %q is not a size", n.Value)
			case v < 1:
				d.errorf(n, hint, "queue %s must be positive", n.Value)
			default:
				s.Queue = v
			}
		}
	}

	s.InsecureSkipVerify = d.boolean(fs["insecureSkipVerify"], "insecureSkipVerify", false)
	if s.InsecureSkipVerify && strings.HasPrefix(s.URL, "http://") {
		d.errorf(fs["insecureSkipVerify"].k, "remove insecureSkipVerify, or use an https:// url",
			"insecureSkipVerify applies to https:// shadows only, and the url is http://")
	}
}

// count decodes a positive whole number of at most MaxLimit. Absent, it is
// 0: the sender's default.
func (d *decoder) count(f field, what, unit string, example int) int {
	if !f.ok() {
		return 0
	}
	hint := fmt.Sprintf("write a number of %s from 1 to %d, e.g. %s: %d", unit, MaxLimit, what, example)
	n, ok := d.scalar(f, what, hint)
	if !ok {
		return 0
	}
	v, ok := d.integer(n, what, hint)
	if !ok {
		return 0
	}
	if v < 1 || v > MaxLimit {
		d.errorf(n, hint, "%s %d is outside 1..%d", what, v, MaxLimit)
		return 0
	}
	return int(v)
}

// duration decodes a positive Go duration. Absent, it is 0: the sender's
// default.
func (d *decoder) duration(f field, what string) time.Duration {
	if !f.ok() {
		return 0
	}
	const hint = "write a Go duration such as 15s, 500ms or 1m"
	n, ok := d.scalar(f, what, hint)
	if !ok {
		return 0
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case n.ShortTag() == "!!int" || n.ShortTag() == "!!float":
		d.errorf(n, fmt.Sprintf("write %ss for seconds", n.Value), "%s %s has no unit", what, n.Value)
	case err != nil:
		d.errorf(n, hint, "%s %q is not a duration", what, n.Value)
	case v <= 0:
		d.errorf(n, hint, "%s %s must be positive", what, n.Value)
	default:
		return v
	}
	return 0
}

func (d *decoder) percentage(f field) float64 {
	n, ok := d.scalar(f, "percentage", hintPercent)
	if !ok {
		return 100
	}
	if t := n.ShortTag(); t != "!!int" && t != "!!float" {
		d.errorf(n, hintPercent, "percentage %s is not a number", describe(n))
		return 100
	}
	if v, err := strconv.ParseFloat(n.Value, 64); err == nil && (v < 0 || v > 100) {
		d.errorf(n, hintPercent, "percentage %s is outside 0..100", n.Value)
		return 100
	}
	// The same parser as --percent: no exponents, signs, infinities.
	p, err := ParsePercent(n.Value)
	if err != nil {
		d.errorf(n, hintPercent, "percentage %s is not a plain decimal number", n.Value)
		return 100
	}
	return p
}

func (d *decoder) headers(f field, r *Rule) {
	errs := len(d.errs)
	fs := d.mapping(f, secHeaders, `headers: {set: {x-shadow: "1"}, remove: [authorization]}`)
	if fs == nil {
		return
	}

	if set := fs["set"]; set.ok() {
		n := resolve(set.v)
		switch {
		case isNull(n):
		case n.Kind != yaml.MappingNode:
			d.errorf(n, `write set: {x-shadow: "1"}`, "set must be a mapping of header names to values, not %s", describe(n))
		default:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], resolve(n.Content[i+1])
				if k.Kind != yaml.ScalarNode || !isToken(k.Value) {
					d.errorf(k, "write a header name such as x-shadow", "set: %s is not a header name", describe(k))
					continue
				}
				if v.Kind != yaml.ScalarNode || isNull(v) {
					d.errorf(k, `write a value, "" for an empty one`, "set: header %s has %s as its value", k.Value, describe(v))
					continue
				}
				hv := Header{Name: k.Value, Value: v.Value}
				if err := checkSetHeader(hv); err != nil {
					d.errorf(k, "set another header; Host, Content-Length, Transfer-Encoding and connection fields are the agent's", "%v", err)
					continue
				}
				r.Headers.Set = append(r.Headers.Set, hv)
			}
		}
	}

	for _, n := range d.list(fs["remove"], "remove", "write remove: [authorization, cookie]") {
		if n.Kind != yaml.ScalarNode || isNull(n) || !isToken(n.Value) {
			d.errorf(n, "write a header name such as authorization", "remove: %s is not a header name", describe(n))
			continue
		}
		if httpsyntax.IsFramingField(n.Value) {
			err := fmt.Errorf("remove header %q: this field cannot be removed", n.Value)
			d.errorf(n, "remove another header; Host, Content-Length and Transfer-Encoding frame the request", "%v", err)
			continue
		}
		r.Headers.Remove = append(r.Headers.Remove, n.Value)
	}

	r.Headers.XForwardedFor = d.boolean(fs["xForwardedFor"], "xForwardedFor", true)

	// What only the whole set can show: a name set twice, or both set and
	// removed.
	if len(d.errs) == errs {
		if err := CheckHeaders(r.Headers); err != nil {
			d.errorf(f.k, "set or remove each header once", "headers: %v", err)
		}
	}
}

// checkPrefix parses a destination network: a CIDR prefix with no bits set
// past its length. IPv4-mapped IPv6 prefixes are turned into IPv4 ones, as
// addresses are.
func checkPrefix(s string) (netip.Prefix, string, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, err := netip.ParseAddr(s); err == nil {
			return p, "is an address, not a CIDR prefix", fmt.Sprintf("write %s/%d for that address alone", a, a.BitLen())
		}
		return p, "is not a CIDR prefix", `write a network such as "10.244.1.0/24" or "fd00::/64"`
	}
	if p != p.Masked() {
		return p, fmt.Sprintf("has bits set past the /%d", p.Bits()), "write " + p.Masked().String()
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, "", ""
}

// compare decodes compare: true, false, or a mapping of its settings.
func (d *decoder) compare(f field) *Compare {
	n := resolve(f.v)
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		if d.boolean(f, "compare", false) {
			return &Compare{}
		}
		return nil
	}
	const example = `compare: true, or compare: {endpoints: ["/users/{id}"], ignoreHeaders: [x-trace]}`
	fs := d.mapping(f, secCompare, example)
	if fs == nil {
		return nil
	}
	c := &Compare{}
	for _, n := range d.list(fs["endpoints"], "endpoints", `write endpoints: ["/users/{id}/orders", "/files/*"]`) {
		if n.Kind != yaml.ScalarNode || isNull(n) || !strings.HasPrefix(n.Value, "/") {
			d.errorf(n, `write a path template such as /users/{id}/orders, with {name} for a part that varies and * for the rest`,
				"endpoint %s is not a path template", describe(n))
			continue
		}
		c.Endpoints = append(c.Endpoints, n.Value)
	}
	for _, key := range []struct {
		name string
		dst  *[]string
	}{{"ignoreHeaders", &c.IgnoreHeaders}, {"redactHeaders", &c.RedactHeaders}} {
		for _, n := range d.list(fs[key.name], key.name, "write "+key.name+": [x-trace-id]") {
			name := strings.TrimSuffix(n.Value, "*")
			if n.Kind != yaml.ScalarNode || isNull(n) || !isToken(name) {
				d.errorf(n, "write a header name such as x-trace-id (a trailing * makes it a prefix)", "%s: %s is not a header name", key.name, describe(n))
				continue
			}
			*key.dst = append(*key.dst, strings.ToLower(n.Value))
		}
	}
	return c
}
