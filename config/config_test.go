package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
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
			URL:            "http://httpbin.shadow.svc.cluster.local:8000",
			Timeout:        15 * time.Second,
			IdleTimeout:    time.Minute,
			MaxConnections: 256,
			MaxPending:     512,
			MaxRequests:    300,
			Queue:          64 << 20,
			Pipeline:       1,
		},
		Percentage: 100,
		SampleKey:  "header:x-request-id",
		HostSuffix: true,
		Headers: Headers{
			Set:           []Header{{Name: "x-shadow", Value: "1"}},
			Remove:        []string{"authorization"},
			XForwardedFor: true,
		},
	}, {
		Name: "api-writes",
		Line: 27,
		Match: Match{
			Ports:      []uint16{8080, 8443},
			PathPrefix: "/api/",
			Methods:    []string{"POST", "PUT"},
		},
		Shadow: Shadow{
			URL:                "https://api.shadow.example",
			Protocol:           ProtocolHTTP1,
			Ordered:            true,
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
		Shadow:     Shadow{URL: "http://web.shadow:8080"},
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
		"    shadow: {url: http://s, maxConnections: 16, timeout: 1m30s, queue: 1GiB}",
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
		"    shadow: {url: http://s, maxConnections: 16, timeout: 1m30s, queue: 1GiB}",
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
	if a.Shadow.MaxConnections != 16 || a.Shadow.Timeout != 90*time.Second || a.Shadow.Queue != 1<<30 || a.Percentage != 0.0001 {
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

// Equal compares every field of a rule but Line: a field added to Rule is
// covered without anyone having to remember Equal.
func TestRuleEqualCoversEveryField(t *testing.T) {
	f, err := Load("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := &f.Rules[1]
	other := *b
	other.Line = 99
	if !b.Equal(&other) {
		t.Error("Equal depends on Line")
	}
	// Change each leaf field in turn, through reflection, so that every
	// field that exists now and later is tried.
	var walk func(v reflect.Value, path string)
	n := 0
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if name := v.Type().Field(i).Name; path != "" || name != "Line" {
					walk(v.Field(i), path+"."+name)
				}
			}
			return
		}
		c := *b
		c.Match.Ports = slices.Clone(b.Match.Ports)
		cv := reflect.ValueOf(&c).Elem()
		for _, name := range strings.Split(path[1:], ".") {
			cv = cv.FieldByName(name)
		}
		switch cv.Kind() {
		case reflect.String:
			cv.SetString(cv.String() + "x")
		case reflect.Bool:
			cv.SetBool(!cv.Bool())
		case reflect.Int, reflect.Int64:
			cv.SetInt(cv.Int() + 1)
		case reflect.Float64:
			cv.SetFloat(cv.Float() + 1)
		case reflect.Slice:
			cv.Set(reflect.Append(cv, reflect.Zero(cv.Type().Elem())))
		case reflect.Pointer:
			if cv.IsNil() {
				cv.Set(reflect.New(cv.Type().Elem()))
			} else {
				cv.Set(reflect.Zero(cv.Type()))
			}
		default:
			t.Fatalf("%s: kind %v not covered by this test", path, cv.Kind())
		}
		n++
		if b.Equal(&c) {
			t.Errorf("Equal ignores %s", path)
		}
	}
	walk(reflect.ValueOf(*b), "")
	if n < 20 {
		t.Errorf("only %d fields tried", n)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load("testdata/absent.yaml"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1500": 1500, "64MiB": 64 << 20, "1GiB": 1 << 30, "10MB": 10e6, "2k": 2048, "1.5KiB": 1536, "0": 0,
		"8MiB": 8 << 20, "64KiB": 64 << 10, "1.5MiB": 3 << 19, " 2 GiB ": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1TiB", "1e3", "9999999999GiB", "1XB", "1e99GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestParseCompare(t *testing.T) {
	f, err := Parse([]byte(doc(
		"rules:",
		"  - {name: a, match: {ports: [80]}, shadow: {url: http://s}, compare: true}",
		"  - {name: b, match: {ports: [81]}, shadow: {url: http://s}, compare: false}",
		"  - name: c",
		"    match: {ports: [82]}",
		"    shadow: {url: http://s}",
		"    compare: {endpoints: ['/users/{id}', '/files/*'], ignoreHeaders: [X-Trace-Id, x-envoy-*], redactHeaders: [x-api-key]}",
	)), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f.Rules[0].Compare == nil || f.Rules[1].Compare != nil || !f.Compares() {
		t.Errorf("compare: %+v %+v", f.Rules[0].Compare, f.Rules[1].Compare)
	}
	want := &Compare{Endpoints: []string{"/users/{id}", "/files/*"}, IgnoreHeaders: []string{"x-trace-id", "x-envoy-*"}, RedactHeaders: []string{"x-api-key"}}
	if !reflect.DeepEqual(f.Rules[2].Compare, want) {
		t.Errorf("compare %+v, want %+v", f.Rules[2].Compare, want)
	}
	for _, bad := range []string{"compare: yes please", "compare: {endpoint: ['/x']}", "compare: {endpoints: [users]}", "compare: {ignoreHeaders: ['a b']}"} {
		if _, err := Parse([]byte(ruleWith(bad)), "r.yaml"); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if g, _ := Parse([]byte(ruleWith()), "r.yaml"); g.Compares() {
		t.Error("a rule without compare compares")
	}
}
