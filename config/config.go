package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// MaxPorts is how many distinct ports all rules of a file may name together:
// the size of the kernel's port map (the bpf package's, which a test keeps
// equal). The command line's --port has the same limit.
const MaxPorts = 64

// Defaults of the shadow's timeouts and limits (Envoy's route timeout and
// cluster circuit breakers), for the command line and the rules file alike.
// A zero field of Shadow means the default; the sender's own defaults are
// the same (agent.TestDefaultsAgree).
const (
	DefaultTimeout        = 15 * time.Second
	DefaultIdleTimeout    = time.Minute
	DefaultMaxConnections = 1024
	DefaultMaxPending     = 1024
	DefaultMaxRequests    = 1024
)

// MaxLimit bounds the counts of Shadow (connections, pending, in flight,
// pipeline depth).
const MaxLimit = 1 << 16

// Shadow protocols. Empty means: as the request was captured.
const (
	ProtocolHTTP1 = "http1"
	ProtocolHTTP2 = "http2"
)

// File is a parsed, valid rules file.
type File struct {
	// Name is the file name used in messages.
	Name string
	// Rules are in file order; the first that matches a request wins.
	Rules []Rule
}

// Rule says which requests are mirrored where. Every field holds its
// effective value: defaults are filled in by Parse.
type Rule struct {
	// Name is unique in the file; it labels the rule in logs and metrics.
	Name string
	// Line is where the rule starts in its file.
	Line int

	Match  Match
	Shadow Shadow

	// Percentage is the share of matching requests mirrored, 0 to 100
	// (absent: 100).
	Percentage float64
	// SampleKey is "" (decide at random per request) or "header:NAME".
	SampleKey string
	// HostSuffix appends "-shadow" to the Host (absent: true). It is false
	// when Host is set.
	HostSuffix bool
	// Host, when not empty, replaces the Host of mirrored requests.
	Host string

	Headers Headers

	// Compare, when not nil, compares the shadow's answers with the
	// primary's for the rule's requests.
	Compare *Compare
}

// Compare configures the comparison of a rule's answers.
type Compare struct {
	// Endpoints are path templates ("/users/{id}/orders", "/files/*")
	// tried before the automatic folding of ids.
	Endpoints []string
	// IgnoreHeaders are answer fields not compared, beyond the default
	// noise list; RedactHeaders are fields whose values are never shown,
	// beyond Authorization, Cookie and Set-Cookie. Both are lower case;
	// a trailing "*" makes a prefix. They apply to every rule.
	IgnoreHeaders []string
	RedactHeaders []string
}

// Compares reports whether any rule compares answers: then the capture
// copies the servers' answers too.
func (f *File) Compares() bool {
	for i := range f.Rules {
		if f.Rules[i].Compare != nil {
			return true
		}
	}
	return false
}

// Match selects requests. Every non-empty part must match.
type Match struct {
	// Ports are the server's TCP ports, sorted and distinct; never empty.
	Ports []uint16
	// Hosts are lower-case host names without port, or "*.example.com" for
	// any name below example.com (not example.com itself). IPv6 literals are
	// in brackets, in canonical form, and compared as text with what the
	// client sent. Empty matches every request.
	Hosts []string
	// PathPrefix matches whole path segments: "/api" matches "/api" and
	// "/api/x" but not "/apis". A trailing "/" is ignored. Empty or "/"
	// matches every path.
	PathPrefix string
	// Methods are upper-case method names. Empty matches every method.
	Methods []string
	// Destinations are the networks the server address must be in, masked,
	// IPv4-mapped IPv6 written as IPv4. Empty matches every address.
	Destinations []netip.Prefix
}

// Shadow is where matching requests are mirrored, and how. It is
// comparable: two rules with equal Shadow values could share a sender. Zero
// values mean the sender's defaults.
type Shadow struct {
	URL string
	// Protocol is ProtocolHTTP1 for a shadow that speaks only HTTP/1.1 (an
	// HTTP/2 request is then sent as HTTP/1.1), ProtocolHTTP2, or empty: as
	// captured.
	Protocol string
	// Timeout bounds each request; IdleTimeout closes unused connections.
	Timeout     time.Duration
	IdleTimeout time.Duration
	// Circuit breakers, as Envoy's: connections, requests waiting for a
	// connection, requests in flight.
	MaxConnections int
	MaxPending     int
	MaxRequests    int
	// Queue caps the bytes of requests held for the shadow.
	Queue int64
	// Pipeline is how many requests one HTTP/1.1 connection carries at
	// once (0 or 1: one, as Envoy does).
	Pipeline int
	// Ordered keeps the requests of one client connection in order.
	Ordered            bool
	InsecureSkipVerify bool
}

// Header is one header field to set on mirrored requests.
type Header struct {
	Name  string
	Value string
}

// Headers change the header fields of mirrored requests.
type Headers struct {
	// Set holds the fields to set, in file order.
	Set []Header
	// Remove holds the names of the fields to remove.
	Remove []string
	// XForwardedFor appends the client address to X-Forwarded-For
	// (absent: true).
	XForwardedFor bool
}

// Load reads and parses the rules file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse parses a rules file held in data; name is the file name used in
// messages. On failure the error is of type Errors, one entry per problem.
func Parse(data []byte, name string) (*File, error) {
	d := &decoder{file: name}
	f := d.decode(data)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return f, nil
}

// Ports returns the ports of the rule.
func (r *Rule) Ports() []uint16 { return slices.Clone(r.Match.Ports) }

// Equal reports whether r and o configure the same behaviour (Line aside),
// so that a reload can keep what did not change. It compares every field,
// so that a field added later cannot be forgotten here.
func (r *Rule) Equal(o *Rule) bool {
	a, b := *r, *o
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}

// Ports returns the ports of all rules, sorted and distinct: what the kernel
// filter must copy.
func (f *File) Ports() []uint16 {
	var ports []uint16
	for i := range f.Rules {
		ports = append(ports, f.Rules[i].Match.Ports...)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// Destinations returns the networks of all rules, sorted, without one that
// another contains, for a kernel filter by server address. It returns nil
// when any rule has no destination restriction: that rule wants requests to
// every address, so the kernel must then not filter by destination at all.
func (f *File) Destinations() []netip.Prefix {
	var all []netip.Prefix
	for i := range f.Rules {
		d := f.Rules[i].Match.Destinations
		if len(d) == 0 {
			return nil
		}
		all = append(all, d...)
	}
	slices.SortFunc(all, comparePrefix)
	all = slices.Compact(all)
	out := all[:0]
	for _, p := range all {
		// Sorted by address then length, a containing prefix comes first
		// among those that share its start; it need not be adjacent, so
		// check every kept one (there are few).
		if !slices.ContainsFunc(out, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
			out = append(out, p)
		}
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// ParsePercent parses a sampling percentage written as a plain decimal
// number from 0 to 100, such as "100", "12.5" or "0.01". Exponents, signs,
// hex floats, NaN and infinities are refused, as are values outside 0..100:
// a typo in a percentage must be a configuration error, not a silent clamp.
func ParsePercent(s string) (float64, error) {
	if s == "" {
		return 0, errors.New("shadow percentage is empty: want a number from 0 to 100")
	}
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return 0, fmt.Errorf("shadow percentage %q is not a decimal number from 0 to 100", s)
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("shadow percentage %q is not a decimal number from 0 to 100", s)
	}
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("shadow percentage %q: %w", s, err)
	}
	if err := CheckPercent(p); err != nil {
		return 0, err
	}
	return p, nil
}

// CheckPercent refuses NaN, infinities and values outside 0..100.
func CheckPercent(p float64) error {
	switch {
	case math.IsNaN(p):
		return errors.New("shadow percentage is NaN: want a number from 0 to 100")
	case math.IsInf(p, 0):
		return fmt.Errorf("shadow percentage is %v: want a number from 0 to 100", p)
	case p < 0 || p > 100:
		return fmt.Errorf("shadow percentage %v is out of range: want a number from 0 to 100", p)
	}
	return nil
}

// CheckSampleKey accepts "" (a random decision per request) and
// "header:NAME".
func CheckSampleKey(key string) error {
	if key == "" {
		return nil
	}
	name, ok := strings.CutPrefix(key, "header:")
	if !ok {
		return fmt.Errorf("shadow sampling key %q: want \"\" or \"header:NAME\"", key)
	}
	if !httpsyntax.IsToken(name) {
		return fmt.Errorf("shadow sampling key %q: %q is not a valid header name", key, name)
	}
	return nil
}

// checkSetHeader refuses a field that configuration may not set: one that
// frames the request or belongs to the connection, or a value with
// control characters.
func checkSetHeader(h Header) error {
	if !httpsyntax.IsToken(h.Name) {
		return fmt.Errorf("set header %q: not a valid header name", h.Name)
	}
	if httpsyntax.IsFramingField(h.Name) || httpsyntax.IsConnectionField(h.Name) {
		return fmt.Errorf("set header %q: this field cannot be set", h.Name)
	}
	if err := httpsyntax.CheckFieldValue(h.Value); err != nil {
		return fmt.Errorf("set header %q: %w", h.Name, err)
	}
	return nil
}

// CheckHeaders checks a whole set of header rules: each field valid, none
// set twice, none both set and removed.
func CheckHeaders(h Headers) error {
	for _, name := range h.Remove {
		if !httpsyntax.IsToken(name) {
			return fmt.Errorf("remove header %q: not a valid header name", name)
		}
		if httpsyntax.IsFramingField(name) {
			return fmt.Errorf("remove header %q: this field cannot be removed", name)
		}
	}
	for i, hv := range h.Set {
		if err := checkSetHeader(hv); err != nil {
			return err
		}
		for _, prev := range h.Set[:i] {
			if httpsyntax.EqualFold(prev.Name, hv.Name) {
				return fmt.Errorf("set header %q: given twice", hv.Name)
			}
		}
		if slices.ContainsFunc(h.Remove, func(n string) bool { return httpsyntax.EqualFold(n, hv.Name) }) {
			return fmt.Errorf("set header %q: also listed in remove headers", hv.Name)
		}
	}
	return nil
}
