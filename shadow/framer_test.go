package shadow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
)

// TestSenderWithFramer runs the real chain: a captured stream framed by
// httpframe (pooled requests, released by the Sender), sampled, rewritten and
// replayed to a net/http server.
func TestSenderWithFramer(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Ordered: true})
	keep, _ := NewSampler(100, "header:x-request-id")
	cfg := &httpframe.Config{Keep: func(r *httpframe.Request) (any, bool) { return nil, keep.Keep(r) }, Emit: func(r *httpframe.Request, tag any) { s.Send(r, tag) }}
	client := netip.MustParseAddrPort("[2001:db8::1]:50000")
	p := httpframe.NewParser(cfg, client, testServer, false)
	stream := "GET /a HTTP/1.1\r\nHost: shop.example\r\nX-Request-Id: 1\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET http://shop.example:8080/c HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n" +
		"GET /d HTTP/1.0\r\n\r\n"
	// Feed it in small pieces, as segments would arrive.
	for i := 0; i < len(stream); i += 7 {
		p.Data([]byte(stream[i:min(i+7, len(stream))]), time.Now())
	}
	p.End()
	st := s.Stats()
	waitFor(t, "responses", func() bool { return st.Mirrored.Load() == 4 })
	closeSender(t, s)

	want := []struct{ uri, host, body string }{
		{"/a", "shop.example-shadow", ""},
		{"/b", "shop.example-shadow", "abc"},
		{"http://shop.example-shadow:8080/c", "shop.example-shadow:8080", ""},
		{"/d", "198.18.0.2-shadow:8080", ""},
	}
	got := rc.all()
	if len(got) != len(want) {
		t.Fatalf("%d requests arrived: %+v", len(got), got)
	}
	for i, w := range want {
		g := got[i]
		if g.URI != w.uri || g.Host != w.host || g.Body != w.body ||
			g.Header.Get("X-Forwarded-For") != "2001:db8::1" || g.Header.Get("X-Hop") != "" {
			t.Errorf("request %d arrived as %+v, want %+v", i, g, w)
		}
	}
}
