package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/shadow"
)

func TestLoadExample(t *testing.T) {
	f, err := Load("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &File{Name: "testdata/rules.yaml", Rules: []Rule{{
		Name: "httpbin",
		Line: 3,
		Match: Match{
			Ports:        []uint16{8080},
			Hosts:        []string{"shadowing.example", "*.example.com"},
			PathPrefix:   "/",
			Destinations: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		},
		Shadow: Shadow{
			URL:     "http://httpbin.shadow.svc.cluster.local:8000",
			Workers: 4,
			Timeout: 15 * time.Second,
			Queue:   64 << 20,
		},
		Percentage: 100,
		SampleKey:  "header:x-request-id",
		HostSuffix: true,
		Headers: Headers{
			Set:           []shadow.HeaderValue{{Name: "x-shadow", Value: "1"}},
			Remove:        []string{"authorization"},
			XForwardedFor: true,
		},
	}, {
		Name: "api-writes",
		Line: 23,
		Match: Match{
			Ports:      []uint16{8080, 8443},
			PathPrefix: "/api/",
			Methods:    []string{"POST", "PUT"},
		},
		Shadow: Shadow{
			URL:                "https://api.shadow.example",
			Workers:            shadow.DefaultWorkers,
			Timeout:            shadow.DefaultTimeout,
			Queue:              shadow.DefaultQueueBytes,
			InsecureSkipVerify: true,
		},
		Percentage: 12.5,
		Host:       "api-shadow.internal:8443",
		Headers:    Headers{XForwardedFor: false},
	}}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Load:\n got %+v\nwant %+v", f, want)
	}
	if got := f.Ports(); !slices.Equal(got, []uint16{8080, 8443}) {
		t.Errorf("Ports = %v", got)
	}
	// The second rule has no destinations, so the kernel must not filter by
	// address.
	if got := f.Destinations(); got != nil {
		t.Errorf("Destinations = %v, want nil", got)
	}
}

func TestDefaults(t *testing.T) {
	f, err := Load("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Rule{
		Name:       "web",
		Line:       2,
		Match:      Match{Ports: []uint16{80}},
		Shadow:     Shadow{URL: "http://web.shadow:8080", Workers: shadow.DefaultWorkers, Timeout: shadow.DefaultTimeout, Queue: shadow.DefaultQueueBytes},
		Percentage: 100,
		HostSuffix: true,
		Headers:    Headers{XForwardedFor: true},
	}
	if len(f.Rules) != 1 || !reflect.DeepEqual(f.Rules[0], want) {
		t.Fatalf("got %+v\nwant %+v", f.Rules, want)
	}
	if !f.Rules[0].Equal(&want) {
		t.Error("Equal is false for equal rules")
	}
	// An explicit hostSuffix: false, empty lists and null values are the
	// same as absent ones.
	f, err = Parse([]byte(ruleWith("hostSuffix: false", "headers:", "percentage: 0")+
		"  - name: b\n    match: {ports: [81], hosts: [], methods: ~, destinations: null}\n    shadow: {url: 'https://s:8443/'}\n"), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r := f.Rules[0]; r.HostSuffix || r.Percentage != 0 || !r.Headers.XForwardedFor {
		t.Errorf("rule a: %+v", r)
	}
	if m := f.Rules[1].Match; m.Hosts != nil || m.Methods != nil || m.Destinations != nil {
		t.Errorf("rule b: %+v", m)
	}
}

func TestParseValues(t *testing.T) {
	in := doc(
		"x-match: &m {ports: [9090, 80, 80], hosts: [A.Example., '[FD00:0::1]', 10.0.0.1], methods: [get, GET]}",
		"rules:",
		"  - name: a",
		"    match: *m",
		"    shadow: {url: http://s, workers: 16, timeout: 1m30s, queue: 1GiB}",
		"    percentage: 0.0001",
	)
	// Anchors are fine, but an unknown top-level key is not, even one that
	// only holds an anchor.
	if _, err := Parse([]byte(in), "r.yaml"); err == nil {
		t.Fatal("x-match accepted")
	}
	in = doc(
		"rules:",
		"  - name: a",
		"    match: &m {ports: [9090, 80, 80], hosts: [A.Example., '[FD00:0::1]', 10.0.0.1], methods: [get, GET],",
		"            destinations: ['::ffff:10.1.0.0/112', 'fd00::/8', 10.0.0.0/8]}",
		"    shadow: {url: http://s, workers: 16, timeout: 1m30s, queue: 1GiB}",
		"    percentage: 0.0001",
		"  - name: b",
		"    match: *m",
		"    shadow: {url: http://s, queue: 1500}",
		"    percentage: 33",
	)
	f, err := Parse([]byte(in), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := f.Rules[0]
	wantMatch := Match{
		Ports:        []uint16{80, 9090},
		Hosts:        []string{"a.example", "[fd00::1]", "10.0.0.1"},
		Methods:      []string{"GET"},
		Destinations: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.0.0.0/8")},
	}
	if !reflect.DeepEqual(a.Match, wantMatch) {
		t.Errorf("match:\n got %+v\nwant %+v", a.Match, wantMatch)
	}
	if a.Shadow.Workers != 16 || a.Shadow.Timeout != 90*time.Second || a.Shadow.Queue != 1<<30 || a.Percentage != 0.0001 {
		t.Errorf("rule a: %+v", a)
	}
	if b := f.Rules[1]; !reflect.DeepEqual(b.Match, wantMatch) || b.Shadow.Queue != 1500 || b.Percentage != 33 {
		t.Errorf("rule b: %+v", b)
	}
	if got, want := f.Destinations(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}; !slices.Equal(got, want) {
		t.Errorf("Destinations = %v, want %v", got, want)
	}
}

func TestUnions(t *testing.T) {
	p := netip.MustParsePrefix
	f := &File{Rules: []Rule{
		{Match: Match{Ports: []uint16{8443, 80}, Destinations: []netip.Prefix{p("10.244.1.0/24"), p("fd00:1::/64")}}},
		{Match: Match{Ports: []uint16{80, 8080}, Destinations: []netip.Prefix{p("10.244.0.0/16"), p("192.168.1.7/32")}}},
		{Match: Match{Ports: []uint16{22}, Destinations: []netip.Prefix{p("fd00::/16"), p("10.244.7.0/24")}}},
	}}
	if got, want := f.Ports(), []uint16{22, 80, 8080, 8443}; !slices.Equal(got, want) {
		t.Errorf("Ports = %v, want %v", got, want)
	}
	want := []netip.Prefix{p("10.244.0.0/16"), p("192.168.1.7/32"), p("fd00::/16")}
	if got := f.Destinations(); !slices.Equal(got, want) {
		t.Errorf("Destinations = %v, want %v", got, want)
	}
	f.Rules = append(f.Rules, Rule{Match: Match{Ports: []uint16{1}}})
	if got := f.Destinations(); got != nil {
		t.Errorf("Destinations with an unrestricted rule = %v, want nil", got)
	}
}

func TestRuleConfigs(t *testing.T) {
	f, err := Load("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, b := &f.Rules[0], &f.Rules[1]
	rc := a.RewriteConfig()
	want := shadow.RewriteConfig{SetHeaders: []shadow.HeaderValue{{Name: "x-shadow", Value: "1"}}, RemoveHeaders: []string{"authorization"}}
	if !reflect.DeepEqual(rc, want) {
		t.Errorf("RewriteConfig = %+v, want %+v", rc, want)
	}
	rc.SetHeaders[0].Value = "changed"
	if a.Headers.Set[0].Value != "1" {
		t.Error("RewriteConfig shares its slices with the rule")
	}
	if rc := b.RewriteConfig(); !rc.NoHostSuffix || rc.Host != "api-shadow.internal:8443" || !rc.NoXFF {
		t.Errorf("RewriteConfig = %+v", rc)
	}
	for _, r := range f.Rules {
		if _, err := shadow.NewRewriter(r.RewriteConfig()); err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		}
		sc := r.SenderConfig()
		if sc.URL != r.Shadow.URL || sc.Workers != r.Shadow.Workers || sc.Timeout != r.Shadow.Timeout || sc.QueueBytes != r.Shadow.Queue {
			t.Errorf("SenderConfig = %+v for %+v", sc, r.Shadow)
		}
		if (sc.TLSConfig != nil && sc.TLSConfig.InsecureSkipVerify) != r.Shadow.InsecureSkipVerify {
			t.Errorf("rule %s: TLSConfig %+v", r.Name, sc.TLSConfig)
		}
		s, err := shadow.NewSender(sc)
		if err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		} else {
			_ = s.Close(t.Context())
		}
	}
	if got := b.Ports(); !slices.Equal(got, []uint16{8080, 8443}) {
		t.Errorf("Ports = %v", got)
	}
	other := *b
	other.Line = 99
	if !b.Equal(&other) {
		t.Error("Equal depends on Line")
	}
	other.Shadow.Workers++
	if b.Equal(&other) {
		t.Error("Equal ignores the shadow")
	}
}

// TestURLsAgreeWithSender keeps the file's URL check and the sender's
// acceptance of the URL the same: a file that loads must start.
func TestURLsAgreeWithSender(t *testing.T) {
	for _, u := range []string{
		"http://s", "http://s:8000", "http://s:8000/", "https://s", "https://10.0.0.1:8443",
		"http://[fd00::1]:8000", "HTTP://s", "http://s.example.com.", "ftp://s", "s:8000", "http://",
		"http://:80", "http://s/x", "http://s?x", "http://s#x", "http://u@s", "http://s:0", "http://s:65536",
		"http://s:http", "https://[fd00::1", "//s", "http:s", "",
	} {
		_, senderErr := shadow.NewSender(shadow.SenderConfig{URL: u})
		_, fileErr := Parse([]byte(shadowWith("url: '"+u+"'")), "r.yaml")
		if (senderErr == nil) != (fileErr == nil) {
			t.Errorf("URL %q: sender says %v, file says %v", u, senderErr, fileErr)
		}
	}
}

// TestCheckURLStartsNothing guards what checkURL relies on: NewSender starts
// no goroutine, so a Sender made only to validate can be dropped.
func TestCheckURLStartsNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 100 {
		if err := checkURL("https://s.example:8443"); err != nil {
			t.Fatal(err)
		}
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before, %d after", before, after)
	}
}

func TestMaxPortsIsTheKernels(t *testing.T) {
	if MaxPorts != bpf.MaxPorts {
		t.Fatalf("config.MaxPorts = %d, bpf.MaxPorts = %d", MaxPorts, bpf.MaxPorts)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load("testdata/absent.yaml"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1500": 1500, "64MiB": 64 << 20, "1GiB": 1 << 30, "10MB": 10e6, "2k": 2048, "1.5KiB": 1536, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1TiB", "1e3", "9999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
