// Package config reads the rules file of shadowtee (`--config FILE`): which
// captured requests are mirrored, to which shadow, and how they are changed
// on the way. It also compiles the rules into a Router that picks the rule of
// each framed request, and watches the file so that the agent can reload it.
//
// A rules file is YAML:
//
//	rules:
//	  - name: httpbin
//	    match:
//	      ports: [8080]                  # required: the kernel copies only these ports
//	      hosts: ["shadowing.example", "*.example.com"]
//	      pathPrefix: /
//	      methods: [GET, POST]
//	      destinations: ["10.244.1.0/24"]
//	    shadow:
//	      url: http://httpbin.shadow.svc.cluster.local:8000
//	      workers: 4
//	      timeout: 15s
//	      queue: 64MiB
//	      insecureSkipVerify: false
//	    percentage: 100
//	    sampleKey: "header:x-request-id"
//	    hostSuffix: true                 # or host: "literal", which turns it off
//	    headers:
//	      set: {x-shadow: "1"}
//	      remove: [authorization]
//	      xForwardedFor: true
//
// Parsing is strict: an unknown key, a value of the wrong type or out of
// range, or a rule that cannot work is an error that names the file, the
// line and what to write instead. What the shadow package checks (URL,
// percentage, sampling key, Host literal, header rules) is checked by calling
// it, so that a file accepted here is accepted by the agent.
package config

import (
	"crypto/tls"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/shadowtee/shadowtee/shadow"
)

// MaxPorts is how many distinct ports all rules of a file may name together:
// the size of the kernel's port map (bpf.MaxPorts, which a test keeps equal).
const MaxPorts = 64

// MaxWorkers bounds Shadow.Workers, as --shadow-workers does.
const MaxWorkers = 1024

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

// Shadow is where matching requests are mirrored, and how. It is comparable:
// two rules with equal Shadow values can share a sender.
type Shadow struct {
	URL                string
	Workers            int           // absent: shadow.DefaultWorkers
	Timeout            time.Duration // absent: shadow.DefaultTimeout
	Queue              int64         // bytes; absent: shadow.DefaultQueueBytes
	InsecureSkipVerify bool
}

// Headers change the header fields of mirrored requests.
type Headers struct {
	// Set holds the fields to set, in file order.
	Set []shadow.HeaderValue
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

// RewriteConfig returns how the rule changes requests, for
// shadow.NewRewriter.
func (r *Rule) RewriteConfig() shadow.RewriteConfig {
	return shadow.RewriteConfig{
		NoHostSuffix:  !r.HostSuffix,
		Host:          r.Host,
		SetHeaders:    slices.Clone(r.Headers.Set),
		RemoveHeaders: slices.Clone(r.Headers.Remove),
		NoXFF:         !r.Headers.XForwardedFor,
	}
}

// SenderConfig returns the sender settings of the rule. The caller adds the
// Rewriter, Stats and, in tests, Dial.
func (r *Rule) SenderConfig() shadow.SenderConfig {
	sc := shadow.SenderConfig{
		URL:        r.Shadow.URL,
		Workers:    r.Shadow.Workers,
		Timeout:    r.Shadow.Timeout,
		QueueBytes: r.Shadow.Queue,
	}
	if r.Shadow.InsecureSkipVerify {
		// The user asked for it in the rules file, for a shadow with a
		// self-signed certificate.
		sc.TLSConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec
	}
	return sc
}

// Equal reports whether r and o configure the same behaviour (Line aside),
// so that a reload can keep what did not change.
func (r *Rule) Equal(o *Rule) bool {
	return r.Name == o.Name && r.Shadow == o.Shadow &&
		r.Percentage == o.Percentage && r.SampleKey == o.SampleKey &&
		r.HostSuffix == o.HostSuffix && r.Host == o.Host &&
		slices.Equal(r.Match.Ports, o.Match.Ports) &&
		slices.Equal(r.Match.Hosts, o.Match.Hosts) &&
		r.Match.PathPrefix == o.Match.PathPrefix &&
		slices.Equal(r.Match.Methods, o.Match.Methods) &&
		slices.Equal(r.Match.Destinations, o.Match.Destinations) &&
		slices.Equal(r.Headers.Set, o.Headers.Set) &&
		slices.Equal(r.Headers.Remove, o.Headers.Remove) &&
		r.Headers.XForwardedFor == o.Headers.XForwardedFor
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
