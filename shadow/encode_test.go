package shadow

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/httpmsg"
)

func fieldsString(fs []httpmsg.Field) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s: %s\n", f.Name, f.Value)
	}
	return b.String()
}

func TestFields(t *testing.T) {
	v6 := netip.MustParseAddrPort("[2001:db8::7]:40000")
	for _, tc := range []struct {
		name   string
		cfg    RewriteConfig
		scheme string // the sender's, "" for the default
		req    httpmsg.Request
		want   string
	}{
		{
			name: "HTTP/2 request: pseudo-headers first, authority suffixed, XFF added",
			req:  newFake("GET", "api.example:8443", "/v1?x=1", [2]string{"accept", "*/*"}),
			want: ":method: GET\n:scheme: http\n:authority: api.example-shadow:8443\n:path: /v1?x=1\naccept: */*\nx-forwarded-for: 192.0.2.10\n",
		},
		{
			name:   "no :scheme: the shadow's",
			scheme: "https",
			req:    func() *fakeReq { r := newFake("GET", "a", "/"); r.scheme = ""; return r }(),
			want:   ":method: GET\n:scheme: https\n:authority: a-shadow\n:path: /\nx-forwarded-for: 192.0.2.10\n",
		},
		{
			name: "te: trailers kept, other hop-by-hop dropped, XFF appended to the last",
			req: newFake("POST", "a", "/rpc", [2]string{"te", "trailers"}, [2]string{"x-forwarded-for", "1.1.1.1"},
				[2]string{"x-forwarded-for", "2.2.2.2"}, [2]string{"content-type", "application/grpc"}, [2]string{"keep-alive", "5"}),
			want: ":method: POST\n:scheme: http\n:authority: a-shadow\n:path: /rpc\nte: trailers\nx-forwarded-for: 1.1.1.1\n" +
				"x-forwarded-for: 2.2.2.2, 192.0.2.10\ncontent-type: application/grpc\n",
		},
		{
			name: "te without trailers dropped",
			req:  newFake("GET", "a", "/", [2]string{"te", "gzip"}),
			want: ":method: GET\n:scheme: http\n:authority: a-shadow\n:path: /\nx-forwarded-for: 192.0.2.10\n",
		},
		{
			name: "HTTP/1 request: Host becomes :authority, names lower case, framing and Connection-named fields dropped",
			req: parseRequest(t, crlf("POST /up HTTP/1.1\nHost: shop.example:8080\nConnection: keep-alive, X-Hop\nX-Hop: 1\n"+
				"Transfer-Encoding: chunked\nTE: trailers, deflate\nUser-Agent: curl\nCookie: a=1\n\n0\n\n")),
			want: ":method: POST\n:scheme: http\n:authority: shop.example-shadow:8080\n:path: /up\nte: trailers\n" +
				"user-agent: curl\ncookie: a=1\nx-forwarded-for: 192.0.2.10\n",
		},
		{
			name: "absolute-form target: scheme, authority and path from it",
			req:  parseRequest(t, crlf("GET https://api.example:81/v1?q HTTP/1.1\nHost: api.example:81\n\n")),
			want: ":method: GET\n:scheme: https\n:authority: api.example-shadow:81\n:path: /v1?q\nx-forwarded-for: 192.0.2.10\n",
		},
		{
			name: "HTTP/1.0 without Host: authority from the server address",
			req:  parseRequest(t, crlf("GET / HTTP/1.0\n\n")),
			want: ":method: GET\n:scheme: http\n:authority: 198.18.0.2-shadow:8080\n:path: /\nx-forwarded-for: 192.0.2.10\n",
		},
		{
			name: "literal host, remove and set",
			cfg: RewriteConfig{Host: "shadow.internal:9000", RemoveHeaders: []string{"Authorization"},
				SetHeaders: []HeaderValue{{"X-Env", "shadow"}, {"X-Added", "1"}}},
			req: newFake("GET", "a", "/", [2]string{"authorization", "Bearer x"}, [2]string{"x-env", "prod"},
				[2]string{"accept", "*/*"}, [2]string{"x-env", "prod2"}),
			want: ":method: GET\n:scheme: http\n:authority: shadow.internal:9000\n:path: /\nx-env: shadow\naccept: */*\n" +
				"x-forwarded-for: 192.0.2.10\nx-added: 1\n",
		},
		{
			name: "NoHostSuffix, NoXFF, IPv6 client",
			cfg:  RewriteConfig{NoHostSuffix: true, NoXFF: true},
			req:  func() *fakeReq { r := newFake("GET", "[::1]:8080", "/"); r.client = v6; return r }(),
			want: ":method: GET\n:scheme: http\n:authority: [::1]:8080\n:path: /\n",
		},
		{
			name: "XFF from an IPv6 client",
			req:  func() *fakeReq { r := newFake("GET", "a", "/"); r.client = v6; return r }(),
			want: ":method: GET\n:scheme: http\n:authority: a-shadow\n:path: /\nx-forwarded-for: 2001:db8::7\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewRewriter(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.scheme != "" {
				w = w.forScheme(tc.scheme)
			}
			prefix := []httpmsg.Field{{Name: []byte("kept"), Value: []byte("1")}}
			got := w.Fields(prefix, tc.req)
			if string(got[0].Name) != "kept" {
				t.Fatalf("dst not appended to")
			}
			if s := fieldsString(got[1:]); s != tc.want {
				t.Errorf("got\n%s\nwant\n%s", s, tc.want)
			}
		})
	}
}

func TestEncodeHTTP1(t *testing.T) {
	withTrailers := newFake("POST", "api.example", "/rpc", [2]string{"content-type", "application/grpc"},
		[2]string{"content-length", "5"}, [2]string{"te", "trailers"})
	withTrailers.body = "hello"
	withTrailers.trailers = [][2]string{{"grpc-status", "0"}, {"content-length", "9"}}
	streamed := newFake("PUT", "a", "/s")
	streamed.stream = httpmsg.NewBodyStream(10)
	emptyPost := newFake("POST", "a", "/e", [2]string{"content-length", "0"})
	bad := newFake("GET", "a", "/", [2]string{"x-evil", "1\r\nX-Injected: 2"}, [2]string{"bad name", "x"}, [2]string{"x-ok", "fine"})
	for _, tc := range []struct {
		name string
		cfg  RewriteConfig
		req  httpmsg.Request
		want string
	}{
		{
			name: "GET: request line, Host first, cookies joined, hop-by-hop dropped",
			req: newFake("GET", "api.example:8443", "/v1/items?x=1", [2]string{"cookie", "a=1"}, [2]string{"user-agent", "grpc-go"},
				[2]string{"cookie", "b=2"}, [2]string{"te", "trailers"}, [2]string{"host", "other"}),
			want: "GET /v1/items?x=1 HTTP/1.1\nHost: api.example-shadow:8443\ncookie: a=1; b=2\nuser-agent: grpc-go\n" +
				"X-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "whole body with trailers: chunked, framing fields replaced",
			req:  withTrailers,
			want: "POST /rpc HTTP/1.1\nHost: api.example-shadow\ncontent-type: application/grpc\nX-Forwarded-For: 192.0.2.10\n" +
				"Transfer-Encoding: chunked\n\n2\nhe\n3\nllo\n0\ngrpc-status: 0\n\n", // a chunk per piece
		},
		{
			name: "whole body: Content-Length",
			req:  func() *fakeReq { r := newFake("PUT", "", "/p"); r.body = "0123456789"; return r }(),
			want: "PUT /p HTTP/1.1\nHost: 198.18.0.2-shadow:8080\nX-Forwarded-For: 192.0.2.10\nContent-Length: 10\n\n0123456789",
		},
		{
			name: "empty body that said so",
			req:  emptyPost,
			want: "POST /e HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 192.0.2.10\nContent-Length: 0\n\n",
		},
		{
			name: "streaming body: the head only",
			req:  streamed,
			want: "PUT /s HTTP/1.1\nHost: a-shadow\nX-Forwarded-For: 192.0.2.10\nTransfer-Encoding: chunked\n\n",
		},
		{
			name: "fields that cannot be written safely are left out",
			req:  bad,
			want: "GET / HTTP/1.1\nHost: a-shadow\nx-ok: fine\nX-Forwarded-For: 192.0.2.10\n\n",
		},
		{
			name: "literal host, set and remove, NoXFF",
			cfg:  RewriteConfig{Host: "s:1", NoXFF: true, RemoveHeaders: []string{"X-Debug"}, SetHeaders: []HeaderValue{{"X-Env", "shadow"}}},
			req:  newFake("GET", "a", "/", [2]string{"x-debug", "1"}, [2]string{"x-env", "prod"}, [2]string{"x-forwarded-for", "1.1.1.1"}),
			want: "GET / HTTP/1.1\nHost: s:1\nX-Env: shadow\nx-forwarded-for: 1.1.1.1\n\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewRewriter(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := string(w.EncodeHTTP1([]byte("prefix|"), tc.req))
			if want := "prefix|" + crlf(tc.want); got != want {
				t.Errorf("got\n%q\nwant\n%q", got, want)
			}
			if a := string(w.AppendRequest(nil, tc.req)); "prefix|"+a != got {
				t.Errorf("AppendRequest differs: %q", a)
			}
		})
	}
}

// The same captured HTTP/1 request, spliced and encoded from the neutral
// view, means the same to a server: method, target, Host, fields (framing
// aside) and body.
func TestEncodeMatchesSplice(t *testing.T) {
	w, _ := NewRewriter(RewriteConfig{SetHeaders: []HeaderValue{{"X-Env", "shadow"}}, RemoveHeaders: []string{"Cookie"}})
	for _, raw := range []string{
		"GET /a?b=c HTTP/1.1\nHost: foo.bar.com\nAccept: */*\nX-Forwarded-For: 1.2.3.4\n\n",
		"POST /up HTTP/1.1\nHost: a:8080\nContent-Length: 5\nConnection: x-hop\nX-Hop: 1\nX-Env: prod\n\nhello",
		"POST /up HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nTrailer: X-Sum\n\n5\nhello\n6\n world\n0\nX-Sum: 42\n\n",
		"GET http://api:81/v1 HTTP/1.1\nHost: api:81\nCookie: a=1\n\n",
	} {
		r := parseRequest(t, crlf(raw))
		read := func(b []byte) (*http.Request, string) {
			q, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(b))))
			if err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			body, _ := io.ReadAll(q.Body)
			return q, string(body)
		}
		a, ab := read(w.AppendHTTP1(nil, r))
		b, bb := read(w.EncodeHTTP1(nil, r))
		strip := func(h http.Header) string {
			h = h.Clone()
			h.Del("Content-Length")
			h.Del("Transfer-Encoding")
			h.Del("Trailer")
			return fmt.Sprint(h)
		}
		if a.Method != b.Method || a.URL.Path != b.URL.Path || a.URL.RawQuery != b.URL.RawQuery || a.Host != b.Host ||
			strip(a.Header) != strip(b.Header) || ab != bb || fmt.Sprint(a.Trailer) != fmt.Sprint(b.Trailer) {
			t.Errorf("%q:\nspliced %s %s %s %v %q %v\nencoded %s %s %s %v %q %v", raw,
				a.Method, a.URL, a.Host, a.Header, ab, a.Trailer, b.Method, b.URL, b.Host, b.Header, bb, b.Trailer)
		}
	}
}

// The sampler sees the neutral view: the same key value gets the same
// decision whichever protocol carried it.
func TestSamplerNeutral(t *testing.T) {
	s, _ := NewSampler(50, "header:x-request-id")
	for i := range 1000 {
		id := fmt.Sprintf("id-%d", i)
		h1 := parseRequest(t, crlf("GET / HTTP/1.1\nHost: a\nX-Request-Id: "+id+"\n\n"))
		h2 := newFake("GET", "a", "/", [2]string{"x-request-id", id})
		if s.Keep(h1) != s.Keep(h2) {
			t.Fatalf("%s: HTTP/1 and HTTP/2 disagree", id)
		}
	}
}
