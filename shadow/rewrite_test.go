package shadow

import (
	"net/netip"
	"strings"
	"testing"
)

func TestShadowHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// The examples of the semantics, verbatim.
		{"foo.bar.com", "foo.bar.com-shadow"},
		{"foo.bar.com:8080", "foo.bar.com-shadow:8080"},
		{"[::1]:8080", "[::1]-shadow:8080"},
		{"[::1]", "[::1]-shadow"},
		// More of the same rule.
		{"198.18.0.2:8080", "198.18.0.2-shadow:8080"},
		{"[fd00::2]:8080", "[fd00::2]-shadow:8080"},
		{"localhost", "localhost-shadow"},
		{"foo:", "foo-shadow:"},
		{"", "-shadow"},
	} {
		if got := ShadowHost(tc.in); got != tc.want {
			t.Errorf("ShadowHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendHTTP1(t *testing.T) {
	v6client := netip.MustParseAddrPort("[2001:db8::7]:40000")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.44]:40000")
	v6server := netip.MustParseAddrPort("[fd00::2]:8080")
	zoned := netip.MustParseAddrPort("[fe80::1%eth0]:80")
	for _, tc := range []struct {
		name   string
		cfg    RewriteConfig
		client netip.AddrPort // default testClient
		server netip.AddrPort // default testServer
		in     string         // "\n" becomes "\r\n" unless lf is set
		want   string
		lf     bool
	}{
		{
			name: "host suffix and XFF added",
			in:   "GET /a?b=c HTTP/1.1\nHost: foo.bar.com\nAccept: */*\n\n",
			want: "GET /a?b=c HTTP/1.1\nHost: foo.bar.com-shadow\nAccept: */*\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "host with port",
			in:   "GET / HTTP/1.1\nHost: foo.bar.com:8080\n\n",
			want: "GET / HTTP/1.1\nHost: foo.bar.com-shadow:8080\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "IPv6 host with and without port",
			in:   "GET / HTTP/1.1\nHost: [::1]:8080\nX-A: 1\n\n",
			want: "GET / HTTP/1.1\nHost: [::1]-shadow:8080\nX-A: 1\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "IPv6 host without port",
			in:   "GET / HTTP/1.1\nHost: [::1]\n\n",
			want: "GET / HTTP/1.1\nHost: [::1]-shadow\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "absolute-form target and Host agree",
			in:   "GET http://foo:8080/x HTTP/1.1\nHost: foo:8080\n\n",
			want: "GET http://foo-shadow:8080/x HTTP/1.1\nHost: foo-shadow:8080\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "absolute-form with userinfo, query and no path",
			in:   "GET HTTPS://user:pw@foo.example?x=1 HTTP/1.1\nHost: foo.example\n\n",
			want: "GET HTTPS://user:pw@foo.example-shadow?x=1 HTTP/1.1\nHost: foo.example-shadow\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "HTTP/1.0 without Host gets one from the server address, and keep-alive",
			in:   "GET /old HTTP/1.0\nUser-Agent: curl/7\n\n",
			want: "GET /old HTTP/1.0\nHost: 198.18.0.2-shadow:8080\nUser-Agent: curl/7\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name:   "HTTP/1.0 without Host, IPv6 server",
			server: v6server,
			in:     "GET / HTTP/1.0\n\n",
			want:   "GET / HTTP/1.0\nHost: [fd00::2]-shadow:8080\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name:   "server address loses its zone",
			server: zoned,
			in:     "GET / HTTP/1.0\n\n",
			want:   "GET / HTTP/1.0\nHost: [fe80::1]-shadow:80\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name: "no Host, absolute target: Host from its authority",
			in:   "GET http://api.example:81/v1 HTTP/1.0\n\n",
			want: "GET http://api.example-shadow:81/v1 HTTP/1.0\nHost: api.example-shadow:81\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name: "HTTP/1.0 keep-alive from the client is replaced by ours, once",
			in:   "GET / HTTP/1.0\nHost: a\nConnection: Keep-Alive\nKeep-Alive: timeout=5\n\n",
			want: "GET / HTTP/1.0\nHost: a-shadow\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name: "XFF appended to the single field",
			in:   "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 203.0.113.9\nAccept: */*\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 203.0.113.9, 192.0.2.10\nAccept: */*\n\n",
		},
		{
			name: "XFF appended to the last of several fields, case-insensitively",
			in:   "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 203.0.113.9\nx-forwarded-FOR: 10.0.0.1 , 10.0.0.2\nAccept: */*\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 203.0.113.9\nx-forwarded-FOR: 10.0.0.1 , 10.0.0.2, 192.0.2.10\nAccept: */*\n\n",
		},
		{
			name: "XFF with an empty value",
			in:   "GET / HTTP/1.1\nHost: a\nX-Forwarded-For:\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name:   "XFF IPv6 client without brackets",
			client: v6client,
			in:     "GET / HTTP/1.1\nHost: a\n\n",
			want:   "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 2001:db8::7\n\n",
		},
		{
			name:   "XFF IPv4-mapped client as IPv4",
			client: mapped,
			in:     "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 1.2.3.4\n\n",
			want:   "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 1.2.3.4, 192.0.2.44\n\n",
		},
		{
			name: "NoXFF",
			cfg:  RewriteConfig{NoXFF: true},
			in:   "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 1.2.3.4\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 1.2.3.4\n\n",
		},
		{
			name: "hop-by-hop fields and the fields Connection names",
			in: "GET /ws HTTP/1.1\nHost: a\nConnection: keep-alive, Upgrade, X-Hop\nUpgrade: websocket\n" +
				"Keep-Alive: timeout=5\nProxy-Connection: keep-alive\nTE: trailers\nX-Hop: 1\nX-End: 2\nconnection: x-other\nX-Other: 3\n\n",
			want: "GET /ws HTTP/1.1\nHost: a-shadow\nX-End: 2\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "more Connection fields than remembered",
			in:   "GET / HTTP/1.1\nHost: a\nConnection: a\nConnection: b\nConnection: c\nConnection: d\nConnection: e\nE: 1\nF: 2\nA: 3\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nF: 2\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "Connection cannot remove framing, Host or XFF",
			in:   "POST / HTTP/1.1\nHost: a\nConnection: close, Content-Length, Host, X-Forwarded-For, Transfer-Encoding\nContent-Length: 3\nX-Forwarded-For: 1.1.1.1\n\nabc",
			want: "POST / HTTP/1.1\nHost: a-shadow\nContent-Length: 3\nX-Forwarded-For: 1.1.1.1, 192.0.2.10\n\nabc",
		},
		{
			name: "chunked body byte for byte, trailers included",
			in: "POST /up HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nTrailer: X-Sum\n\n" +
				"5;ext=1\nhello\n6\n world\n0\nX-Sum: 42\n\n",
			want: "POST /up HTTP/1.1\nHost: a-shadow\nTransfer-Encoding: chunked\nTrailer: X-Sum\nX-Forwarded-For: 192.0.2.10\n\n" +
				"5;ext=1\nhello\n6\n world\n0\nX-Sum: 42\n\n",
		},
		{
			name: "NoHostSuffix",
			cfg:  RewriteConfig{NoHostSuffix: true},
			in:   "GET http://foo:8080/x HTTP/1.1\nHost: foo:8080\n\n",
			want: "GET http://foo:8080/x HTTP/1.1\nHost: foo:8080\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "NoHostSuffix, made Host",
			cfg:  RewriteConfig{NoHostSuffix: true},
			in:   "GET / HTTP/1.0\n\n",
			want: "GET / HTTP/1.0\nHost: 198.18.0.2:8080\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name: "Host literal, in Host and absolute target",
			cfg:  RewriteConfig{Host: "shadow.internal:9000", NoHostSuffix: false},
			in:   "GET http://user@foo:8080/x HTTP/1.1\nHost: foo:8080\n\n",
			want: "GET http://user@shadow.internal:9000/x HTTP/1.1\nHost: shadow.internal:9000\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "Host literal on a request without Host",
			cfg:  RewriteConfig{Host: "[fd00::9]"},
			in:   "GET / HTTP/1.0\n\n",
			want: "GET / HTTP/1.0\nHost: [fd00::9]\nX-Forwarded-For: 192.0.2.10\nConnection: keep-alive\n\n",
		},
		{
			name: "whitespace around the Host value is kept",
			in:   "GET / HTTP/1.1\nHOST:   foo.example \t\n\n",
			want: "GET / HTTP/1.1\nHOST:   foo.example-shadow \t\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "RemoveHeaders, any case",
			cfg:  RewriteConfig{RemoveHeaders: []string{"authorization", "X-Debug"}},
			in:   "GET / HTTP/1.1\nHost: a\nAuthorization: Bearer x\nX-Keep: 1\nx-debug: 1\nX-DEBUG: 2\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Keep: 1\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "SetHeaders: first replaced in place, later ones removed, absent ones added in order",
			cfg: RewriteConfig{SetHeaders: []HeaderValue{
				{"X-Env", "shadow"}, {"X-Added-1", "a"}, {"X-Added-2", "b"},
			}},
			in:   "GET / HTTP/1.1\nHost: a\nx-env: prod\nX-Mid: 1\nX-ENV: prod2\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Env: shadow\nX-Mid: 1\nX-Forwarded-For: 192.0.2.10\nX-Added-1: a\nX-Added-2: b\n\n",
		},
		{
			name: "SetHeaders X-Forwarded-For wins over the append",
			cfg:  RewriteConfig{SetHeaders: []HeaderValue{{"X-Forwarded-For", "10.9.9.9"}}},
			in:   "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 1.2.3.4\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 10.9.9.9\n\n",
		},
		{
			name: "RemoveHeaders X-Forwarded-For removes the added one too",
			cfg:  RewriteConfig{RemoveHeaders: []string{"x-forwarded-for"}},
			in:   "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 1.2.3.4\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\n\n",
		},
		{
			name: "SetHeaders cannot be undone by the client's Connection field",
			cfg:  RewriteConfig{SetHeaders: []HeaderValue{{"X-Env", "shadow"}}},
			in:   "GET / HTTP/1.1\nHost: a\nConnection: X-Env\nX-Env: prod\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 192.0.2.10\nX-Env: shadow\n\n",
		},
		{
			name: "bare LF line endings are kept where captured",
			lf:   true,
			in:   "GET / HTTP/1.1\nHost: a\nX-A: 1\n\n",
			want: "GET / HTTP/1.1\nHost: a-shadow\nX-A: 1\nX-Forwarded-For: 192.0.2.10\r\n\n",
		},
		{
			name: "method, target and version byte for byte",
			in:   "PROPFIND /%7Euser/a%20b;p?x=%2F&y HTTP/1.1\nHost: a\nContent-Length: 0\n\n",
			want: "PROPFIND /%7Euser/a%20b;p?x=%2F&y HTTP/1.1\nHost: a-shadow\nContent-Length: 0\nX-Forwarded-For: 192.0.2.10\n\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, want := tc.in, tc.want
			if !tc.lf {
				in, want = crlf(in), crlf(want)
			}
			r := parseRequest(t, in)
			if tc.client.IsValid() {
				r.ClientAddr = tc.client
			}
			if tc.server.IsValid() {
				r.ServerAddr = tc.server
			}
			w, err := NewRewriter(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := string(w.AppendHTTP1([]byte("prefix|"), r))
			if other := string(w.AppendRequest([]byte("prefix|"), r)); other != got {
				t.Errorf("AppendRequest differs from AppendHTTP1:\n%q\n%q", other, got)
			}
			if !strings.HasPrefix(got, "prefix|") {
				t.Fatalf("dst not appended to: %q", got)
			}
			if got = got[len("prefix|"):]; got != want {
				t.Errorf("got\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestNewRewriterErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  RewriteConfig
		err  string
	}{
		{"host with space", RewriteConfig{Host: "a b"}, "space or control"},
		{"host with CRLF", RewriteConfig{Host: "a\r\nX: y"}, "space or control"},
		{"host with path", RewriteConfig{Host: "a/b"}, `contains '/'`},
		{"host with userinfo", RewriteConfig{Host: "u@a"}, `contains '@'`},
		{"host bad port", RewriteConfig{Host: "a:80x"}, "invalid port"},
		{"host empty port", RewriteConfig{Host: "a:"}, "invalid port"},
		{"host only port", RewriteConfig{Host: ":80"}, "empty host"},
		{"host bare IPv6", RewriteConfig{Host: "fd00::1"}, "must be in brackets"},
		{"host bad IPv6", RewriteConfig{Host: "[zz::1]:80"}, "invalid IPv6"},
		{"host unterminated", RewriteConfig{Host: "[fd00::1"}, "unterminated"},
		{"remove bad name", RewriteConfig{RemoveHeaders: []string{"x y"}}, "not a valid header name"},
		{"remove Host", RewriteConfig{RemoveHeaders: []string{"HOST"}}, "cannot be removed"},
		{"remove Content-Length", RewriteConfig{RemoveHeaders: []string{"content-length"}}, "cannot be removed"},
		{"remove Transfer-Encoding", RewriteConfig{RemoveHeaders: []string{"Transfer-Encoding"}}, "cannot be removed"},
		{"set bad name", RewriteConfig{SetHeaders: []HeaderValue{{"X:Y", "1"}}}, "not a valid header name"},
		{"set empty name", RewriteConfig{SetHeaders: []HeaderValue{{"", "1"}}}, "not a valid header name"},
		{"set CR", RewriteConfig{SetHeaders: []HeaderValue{{"X", "a\rb"}}}, "control character"},
		{"set LF", RewriteConfig{SetHeaders: []HeaderValue{{"X", "a\nX-Evil: 1"}}}, "control character"},
		{"set NUL", RewriteConfig{SetHeaders: []HeaderValue{{"X", "a\x00"}}}, "control character"},
		{"set Host", RewriteConfig{SetHeaders: []HeaderValue{{"Host", "x"}}}, "cannot be set"},
		{"set Content-Length", RewriteConfig{SetHeaders: []HeaderValue{{"Content-Length", "1"}}}, "cannot be set"},
		{"set Connection", RewriteConfig{SetHeaders: []HeaderValue{{"connection", "close"}}}, "cannot be set"},
		{"set Upgrade", RewriteConfig{SetHeaders: []HeaderValue{{"Upgrade", "h2c"}}}, "cannot be set"},
		{"set twice", RewriteConfig{SetHeaders: []HeaderValue{{"X-A", "1"}, {"x-a", "2"}}}, "given twice"},
		{"set and remove", RewriteConfig{SetHeaders: []HeaderValue{{"X-A", "1"}}, RemoveHeaders: []string{"X-a"}}, "also listed"},
		{"too many sets", RewriteConfig{SetHeaders: manyHeaders(65)}, "at most 64"},
	} {
		if _, err := NewRewriter(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.err)
		}
	}
	for _, host := range []string{"a", "a:1", "shadow.svc.cluster.local:8080", "[fd00::1]", "[::1]:65535", "10.0.0.1:80"} {
		if _, err := NewRewriter(RewriteConfig{Host: host}); err != nil {
			t.Errorf("host %q: %v", host, err)
		}
	}
	if _, err := NewRewriter(RewriteConfig{SetHeaders: manyHeaders(64), RemoveHeaders: []string{"Connection"}}); err != nil {
		t.Errorf("64 set headers: %v", err)
	}
}

func manyHeaders(n int) []HeaderValue {
	hv := make([]HeaderValue, n)
	for i := range hv {
		hv[i] = HeaderValue{Name: "X-H" + strings.Repeat("x", i), Value: "v"}
	}
	return hv
}

func TestAppendHTTP1DoesNotAllocate(t *testing.T) {
	w, _ := NewRewriter(RewriteConfig{SetHeaders: []HeaderValue{{"X-Env", "shadow"}}, RemoveHeaders: []string{"Cookie"}})
	for _, raw := range []string{
		"GET http://foo:8080/x HTTP/1.1\nHost: foo:8080\nConnection: keep-alive, X-Hop\nX-Hop: 1\nCookie: a\nX-Forwarded-For: 1.2.3.4\n\n",
		"GET / HTTP/1.0\n\n",
	} {
		r := parseRequest(t, crlf(raw))
		r.ServerAddr = netip.MustParseAddrPort("[fd00::2]:8080")
		buf := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(1000, func() { buf = w.AppendHTTP1(buf[:0], r) }); n != 0 {
			t.Errorf("%q: %v allocations per AppendHTTP1", raw, n)
		}
	}
}

func TestIsShadowed(t *testing.T) {
	for in, want := range map[string]bool{
		"foo-shadow":           true,
		"foo.bar.com-shadow":   true,
		"foo-SHADOW:8080":      true,
		"[::1]-shadow:8080":    true,
		"[::1]-shadow":         true,
		"198.18.0.2-shadow:80": true,
		"foo.bar.com":          false,
		"foo:8080":             false,
		"foo-shadow.com":       false,
		"shadow":               false,
		"-shadow":              true,
		"":                     false,
		"[fd00::1:2]:8080":     false,
	} {
		if got := IsShadowed([]byte(in)); got != want {
			t.Errorf("IsShadowed(%q) = %v, want %v", in, got, want)
		}
	}
	// What ShadowHost makes is shadowed.
	for _, h := range []string{"a", "a:1", "[::1]", "[::1]:80"} {
		if !IsShadowed([]byte(ShadowHost(h))) {
			t.Errorf("ShadowHost(%q) = %q is not shadowed", h, ShadowHost(h))
		}
	}
}
