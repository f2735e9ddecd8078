package httpframe

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// frameOne frames a single request and returns it.
func frameOne(t *testing.T, raw string) *Request {
	t.Helper()
	var got []*Request
	cfg := &Config{Emit: func(r *Request, _ any) { got = append(got, r) }}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:8080"), false)
	p.Data([]byte(raw), time.Unix(100, 0))
	p.End()
	if len(got) != 1 {
		t.Fatalf("framed %d requests from %q", len(got), raw)
	}
	t.Cleanup(got[0].Release)
	return got[0]
}

func visitAll(r httpmsg.Request) (headers, trailers []string, body string) {
	r.VisitHeaders(func(n, v []byte) bool { headers = append(headers, string(n)+"="+string(v)); return true })
	r.VisitTrailers(func(n, v []byte) bool { trailers = append(trailers, string(n)+"="+string(v)); return true })
	var b strings.Builder
	r.VisitBody(func(p []byte) bool { b.Write(p); return true })
	return headers, trailers, b.String()
}

// The httpmsg view of an HTTP/1 request reads what the request says,
// whatever form its target takes.
func TestRequestView(t *testing.T) {
	cases := []struct {
		name, raw                     string
		proto                         httpmsg.Proto
		scheme, authority, path, body string
		headers, trailers             []string
	}{
		{name: "origin form", raw: "GET /a?b=1 HTTP/1.1\r\nHost: shadowing.example:8080\r\nX-A:  1 \r\n\r\n",
			proto: httpmsg.HTTP11, authority: "shadowing.example:8080", path: "/a?b=1",
			headers: []string{"Host=shadowing.example:8080", "X-A=1"}},
		{name: "absolute form wins over Host", raw: "GET http://u@foo:81/x HTTP/1.1\r\nHost: bar\r\n\r\n",
			proto: httpmsg.HTTP11, scheme: "http", authority: "foo:81", path: "/x", headers: []string{"Host=bar"}},
		{name: "absolute form without path", raw: "GET https://foo?q HTTP/1.1\r\nHost: foo\r\n\r\n",
			proto: httpmsg.HTTP11, scheme: "https", authority: "foo", path: "/", headers: []string{"Host=foo"}},
		{name: "HTTP/1.0 without Host", raw: "GET / HTTP/1.0\r\n\r\n", proto: httpmsg.HTTP10, path: "/"},
		{name: "asterisk", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", proto: httpmsg.HTTP11, authority: "a", path: "*",
			headers: []string{"Host=a"}},
		{name: "content length", raw: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
			proto: httpmsg.HTTP11, authority: "a", path: "/p", body: "hello",
			headers: []string{"Host=a", "Content-Length=5"}},
		{name: "chunked with trailers",
			raw:   "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT1: v1\r\nT2:v2\r\n\r\n",
			proto: httpmsg.HTTP11, authority: "a", path: "/c", body: "abcde",
			headers: []string{"Host=a", "Transfer-Encoding=chunked"}, trailers: []string{"T1=v1", "T2=v2"}},
		{name: "chunked, bare LF", raw: "POST /c HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n1\nz\n0\n\n",
			proto: httpmsg.HTTP11, authority: "a", path: "/c", body: "z",
			headers: []string{"Host=a", "Transfer-Encoding=chunked"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := frameOne(t, c.raw)
			var v httpmsg.Request = r
			if v.Proto() != c.proto || string(v.Scheme()) != c.scheme || string(v.Authority()) != c.authority ||
				string(v.Path()) != c.path || v.StreamID() != 0 || v.Stream() != nil {
				t.Errorf("proto %v scheme %q authority %q path %q", v.Proto(), v.Scheme(), v.Authority(), v.Path())
			}
			headers, trailers, body := visitAll(v)
			if strings.Join(headers, "|") != strings.Join(c.headers, "|") ||
				strings.Join(trailers, "|") != strings.Join(c.trailers, "|") || body != c.body {
				t.Errorf("headers %q trailers %q body %q", headers, trailers, body)
			}
			if v.BodyLen() != int64(len(c.body)) {
				t.Errorf("BodyLen %d, want %d", v.BodyLen(), len(c.body))
			}
			if v.Client() != netip.MustParseAddrPort("198.18.0.1:40000") || !v.Time().Equal(time.Unix(100, 0)) {
				t.Errorf("client %v time %v", v.Client(), v.Time())
			}
		})
	}
}

// Ended is the capture time of the bytes that completed the request.
func TestRequestEnded(t *testing.T) {
	var got *Request
	cfg := &Config{Emit: func(r *Request, _ any) { got = r }}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab"), time.Unix(10, 0))
	p.Data([]byte("cd"), time.Unix(12, 0))
	if got == nil || !got.Time().Equal(time.Unix(10, 0)) || !got.Ended().Equal(time.Unix(12, 0)) {
		t.Fatalf("request %v: time %v ended %v", got, got.Time(), got.Ended())
	}
	got.Release()
}

// A clone is the same request, on its own buffers.
func TestRequestClone(t *testing.T) {
	r := frameOne(t, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	c := r.Clone()
	if string(c.Raw) != string(r.Raw) || len(c.Headers) != len(r.Headers) || string(c.Target()) != "/p" || c.BodyLen() != 3 {
		t.Fatalf("clone %q", c.Raw)
	}
	c.Raw[0] = 'X'
	if r.Raw[0] != 'P' {
		t.Error("the clone shares its bytes with the original")
	}
	c.Release()
}
