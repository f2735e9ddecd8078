package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
)

// frame frames one request with the real parser, as the agent will: from a
// client to server, head and body.
func frame(t testing.TB, server, raw string) *httpframe.Request {
	t.Helper()
	var got *httpframe.Request
	cfg := &httpframe.Config{Emit: func(r *httpframe.Request, _ any) { got = r }}
	p := httpframe.NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort(server), false)
	p.Data([]byte(strings.ReplaceAll(raw, "\n", "\r\n")), time.Now())
	if got == nil {
		t.Fatalf("not framed: %q", raw)
	}
	return got
}

const routerRules = `rules:
  - name: exact
    match: {ports: [8080], hosts: [shadowing.example, "[fd00::1]", 10.0.0.9]}
    shadow: {url: http://s}
  - name: wildcard
    match: {ports: [8080], hosts: ["*.example.com"]}
    shadow: {url: http://s}
  - name: api
    match: {ports: [9000], pathPrefix: /api/}
    shadow: {url: http://s}
  - name: writes
    match: {ports: [9001], methods: [post, PUT]}
    shadow: {url: http://s}
  - name: pods
    match: {ports: [9002, 9003], destinations: [10.244.1.0/24, "fd00:244::/64"]}
    shadow: {url: http://s}
  - name: mapped-v4-in-file
    match: {ports: [9004], destinations: ["::ffff:192.168.0.0/112"]}
    shadow: {url: http://s}
  - name: all-of-them
    match: {ports: [9005], hosts: [a.example], pathPrefix: /x, methods: [GET], destinations: [10.0.0.0/8]}
    shadow: {url: http://s}
  - name: root-prefix
    match: {ports: [9006], pathPrefix: /}
    shadow: {url: http://s}
  - name: catch-all-8080
    match: {ports: [8080]}
    shadow: {url: http://s}
`

func compileRules(t testing.TB, in string) (*File, *Router) {
	t.Helper()
	f, err := Parse([]byte(in), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return f, rt
}

func TestRouterMatch(t *testing.T) {
	f, rt := compileRules(t, routerRules)
	if rt.Len() != len(f.Rules) {
		t.Fatalf("Len = %d", rt.Len())
	}
	const v4 = "10.244.1.5:"
	tests := []struct {
		name, server, req, want string // want "" is no match
	}{
		{"exact host", v4 + "8080", "GET / HTTP/1.1\nHost: shadowing.example\n\n", "exact"},
		{"exact host any case, port, dot", v4 + "8080", "GET / HTTP/1.1\nHost: Shadowing.EXAMPLE.:8080\n\n", "exact"},
		{"IPv6 host", v4 + "8080", "GET / HTTP/1.1\nHost: [FD00::1]:8080\n\n", "exact"},
		{"IPv4 host", v4 + "8080", "GET / HTTP/1.1\nHost: 10.0.0.9:8080\n\n", "exact"},
		{"wildcard one label", v4 + "8080", "GET / HTTP/1.1\nHost: a.example.com\n\n", "wildcard"},
		{"wildcard two labels and port", v4 + "8080", "GET / HTTP/1.1\nHost: a.b.EXAMPLE.com:8080\n\n", "wildcard"},
		{"wildcard excludes its base", v4 + "8080", "GET / HTTP/1.1\nHost: example.com\n\n", "catch-all-8080"},
		{"wildcard is label-aligned", v4 + "8080", "GET / HTTP/1.1\nHost: badexample.com\n\n", "catch-all-8080"},
		{"other host", v4 + "8080", "GET / HTTP/1.1\nHost: other.example\n\n", "catch-all-8080"},
		{"absolute-form wins over Host", v4 + "8080", "GET http://user@shadowing.example:8080/x HTTP/1.1\nHost: other.example\n\n", "exact"},
		{"absolute-form IPv6", v4 + "8080", "GET http://[fd00::1]:8080 HTTP/1.1\nHost: x\n\n", "exact"},
		{"HTTP/1.0 without Host", v4 + "8080", "GET / HTTP/1.0\n\n", "catch-all-8080"},
		{"first match wins", v4 + "8080", "GET / HTTP/1.1\nHost: x.example.com\n\n", "wildcard"},
		{"port not listed", v4 + "8081", "GET / HTTP/1.1\nHost: shadowing.example\n\n", ""},

		{"prefix itself", v4 + "9000", "GET /api HTTP/1.1\nHost: h\n\n", "api"},
		{"prefix slash", v4 + "9000", "GET /api/ HTTP/1.1\nHost: h\n\n", "api"},
		{"prefix below", v4 + "9000", "GET /api/v1/x?y=1 HTTP/1.1\nHost: h\n\n", "api"},
		{"prefix query", v4 + "9000", "GET /api?y=/ HTTP/1.1\nHost: h\n\n", "api"},
		{"prefix not segment", v4 + "9000", "GET /apis HTTP/1.1\nHost: h\n\n", ""},
		{"prefix case", v4 + "9000", "GET /API HTTP/1.1\nHost: h\n\n", ""},
		{"prefix absolute-form", v4 + "9000", "GET http://h/api/x HTTP/1.1\nHost: h\n\n", "api"},
		{"prefix absolute-form no path", v4 + "9000", "GET http://h?api HTTP/1.1\nHost: h\n\n", ""},
		{"root prefix", v4 + "9006", "OPTIONS * HTTP/1.1\nHost: h\n\n", "root-prefix"},
		{"root prefix absolute", v4 + "9006", "GET https://h HTTP/1.1\nHost: h\n\n", "root-prefix"},

		{"method", v4 + "9001", "POST / HTTP/1.1\nHost: h\nContent-Length: 0\n\n", "writes"},
		{"method 2", v4 + "9001", "PUT / HTTP/1.1\nHost: h\nContent-Length: 0\n\n", "writes"},
		{"method not listed", v4 + "9001", "GET / HTTP/1.1\nHost: h\n\n", ""},

		{"destination v4", "10.244.1.200:9002", "GET / HTTP/1.1\nHost: h\n\n", "pods"},
		{"destination v4 outside", "10.244.2.1:9002", "GET / HTTP/1.1\nHost: h\n\n", ""},
		{"destination v6", "[fd00:244::7]:9003", "GET / HTTP/1.1\nHost: h\n\n", "pods"},
		{"destination v6 outside", "[fd00:245::7]:9003", "GET / HTTP/1.1\nHost: h\n\n", ""},
		{"destination v4-mapped", "[::ffff:10.244.1.9]:9003", "GET / HTTP/1.1\nHost: h\n\n", "pods"},
		{"destination with zone", "[fd00:244::7%eth0]:9003", "GET / HTTP/1.1\nHost: h\n\n", "pods"},
		{"mapped in file, v4 on wire", "192.168.3.4:9004", "GET / HTTP/1.1\nHost: h\n\n", "mapped-v4-in-file"},
		{"mapped in file, mapped on wire", "[::ffff:192.168.3.4]:9004", "GET / HTTP/1.1\nHost: h\n\n", "mapped-v4-in-file"},

		{"all parts", "10.1.2.3:9005", "GET /x/y HTTP/1.1\nHost: A.example\n\n", "all-of-them"},
		{"all but host", "10.1.2.3:9005", "GET /x/y HTTP/1.1\nHost: b.example\n\n", ""},
		{"all but path", "10.1.2.3:9005", "GET /y HTTP/1.1\nHost: a.example\n\n", ""},
		{"all but method", "10.1.2.3:9005", "HEAD /x HTTP/1.1\nHost: a.example\n\n", ""},
		{"all but destination", "11.1.2.3:9005", "GET /x HTTP/1.1\nHost: a.example\n\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := frame(t, tt.server, tt.req)
			i, ok := rt.Match(r)
			got := ""
			if ok {
				got = f.Rules[i].Name
			} else if i != -1 {
				t.Errorf("no match, index %d", i)
			}
			if got != tt.want {
				t.Errorf("matched %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompileRefusesHandMadeFiles(t *testing.T) {
	for _, m := range []Match{
		{Ports: []uint16{80}, Hosts: []string{"a b"}},
		{Ports: []uint16{80}, PathPrefix: "x"},
		{Ports: []uint16{80}, Methods: []string{"G T"}},
		{Ports: []uint16{80}, Destinations: []netip.Prefix{{}}},
	} {
		if _, err := Compile(&File{Rules: []Rule{{Name: "x", Match: m}}}); err == nil {
			t.Errorf("Compile accepted %+v", m)
		}
	}
	// A hand-made rule without ports matches every port.
	any, err := Compile(&File{Rules: []Rule{{Name: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := any.Match(frame(t, "10.1.1.1:9999", "GET / HTTP/1.1\nHost: a\n\n")); !ok {
		t.Error("a rule without ports did not match port 9999")
	}
	// Hand-made values need not be normalised.
	rt, err := Compile(&File{Rules: []Rule{{Match: Match{Ports: []uint16{80}, Hosts: []string{"*.Example.COM"}, Destinations: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Match(frame(t, "10.1.1.1:80", "GET / HTTP/1.1\nHost: a.example.com\n\n")); !ok {
		t.Error("no match")
	}
}

func TestRouterMatchDoesNotAllocate(t *testing.T) {
	_, rt := compileRules(t, routerRules)
	reqs := []*httpframe.Request{
		frame(t, "10.1.2.3:9005", "GET /x/y HTTP/1.1\nHost: A.example\n\n"),
		frame(t, "10.244.1.5:8080", "GET http://u@a.b.example.com:8080/x HTTP/1.1\nHost: x\n\n"),
		frame(t, "[::ffff:10.244.1.9]:9003", "GET / HTTP/1.1\nHost: h\n\n"),
		frame(t, "10.244.1.5:8081", "GET / HTTP/1.1\nHost: h\n\n"),
	}
	n := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			rt.Match(r)
		}
	})
	if n != 0 {
		t.Fatalf("Match allocates %v times per run", n)
	}
}

func BenchmarkRouterMatch(b *testing.B) {
	_, rt := compileRules(b, routerRules)
	// The last rule matches: every rule before it is tried.
	r := frame(b, "10.244.1.5:8080", "GET /index.html HTTP/1.1\nHost: www.other.example:8080\nUser-Agent: bench\nAccept: */*\n\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := rt.Match(r); !ok {
			b.Fatal("no match")
		}
	}
}
