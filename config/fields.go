package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// checkHost validates and normalises a match host: a DNS name, an IPv4
// address, a bracketed IPv6 address, or "*." followed by a DNS name. It
// returns the host in lower case without a trailing dot, or why not and what
// to write instead.
func checkHost(s string) (host, msg, hint string) {
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	if strings.HasPrefix(h, "[") {
		a, err := netip.ParseAddr(strings.TrimSuffix(h[1:], "]"))
		if !strings.HasSuffix(h, "]") || err != nil || !a.Is6() || a.Zone() != "" {
			return "", "is not a valid IPv6 address in brackets", "write an address such as [fd00::1]"
		}
		return "[" + a.String() + "]", "", ""
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		return "", "is an IPv6 address without brackets", "write [" + a.String() + "], as in a Host header"
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if _, err := strconv.ParseUint(h[i+1:], 10, 16); err == nil {
			return "", "has a port, and hosts are matched without one", "write " + s[:i] + " and put the port in ports"
		}
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if strings.Contains(name, "*") {
		return "", "has a wildcard that is not a whole first label", "write *.example.com for every name below example.com"
	}
	if why := checkDNSName(name); why != "" {
		return "", "is not a valid host name: " + why, hintHost
	}
	return h, "", ""
}

// checkDNSName returns why name is not a host name of letters, digits and
// hyphens in dot-separated labels (RFC 1123), or "".
func checkDNSName(name string) string {
	if name == "" {
		return "it is empty"
	}
	if len(name) > 253 {
		return "it is longer than 253 characters"
	}
	for _, label := range strings.Split(name, ".") {
		switch {
		case label == "":
			return "it has an empty label"
		case len(label) > 63:
			return fmt.Sprintf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Sprintf("%q is not allowed", c)
			}
		}
	}
	return ""
}

// checkPathPrefix returns why p is not a path prefix, or "".
func checkPathPrefix(p string) (msg, hint string) {
	if !strings.HasPrefix(p, "/") {
		return `does not start with "/"`, "write /" + strings.TrimLeft(p, "/")
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c <= ' ' || c >= 0x7f:
			return "contains a space, a control or a non-ASCII character", "write the path as it appears on the wire, percent-encoded"
		case c == '?' || c == '#':
			return fmt.Sprintf("contains %q; only the path is matched", c), "write " + p[:i]
		}
	}
	return "", ""
}

// isToken reports whether s is an HTTP token (RFC 9110): what method and
// field names are made of.
func isToken(s string) bool { return httpsyntax.IsToken(s) }

// ParseSize reads a byte count such as "64MiB", "1GiB", "1500" or "10MB":
// binary units (KiB, MiB, GiB, and K, M, G) and decimal ones (KB, MB, GB).
// The rules file and every size flag of the command line use it.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	if v := f * float64(mult); v <= 1<<62 {
		return int64(v), nil
	}
	return 0, fmt.Errorf("size %q is too large", s)
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
}
