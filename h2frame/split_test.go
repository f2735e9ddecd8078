package h2frame

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// scenarios are client and server byte streams that exercise most paths.
func scenarios() map[string][2][]byte {
	out := map[string][2][]byte{}
	{
		cw, sw := clientWire(), serverWire()
		cw.headers(1, true, get("/a", "accept", "*/*")...)
		cw.headersSplit(3, false, 5, post("/b", "x-long", strings.Repeat("l", 200))...)
		cw.fr.WriteDataPadded(3, false, []byte("padded"), make([]byte, 9))
		cw.fr.WritePing(false, [8]byte{9})
		cw.headers(5, false, post("/c")...).data(5, false, strings.Repeat("c", 300))
		cw.fr.WriteRSTStream(5, http2.ErrCodeCancel)
		cw.data(3, false, "more").headers(3, true, "x-trailer", "t")
		cw.headers(7, false, post("/d")...).data(7, true, strings.Repeat("d", 5000))
		sw.headers(1, true, ":status", "200")
		sw.headers(3, false, ":status", "201").data(3, true, "made")
		sw.headers(7, false, ":status", "100").headers(7, false, ":status", "200").data(7, false, "x").headers(7, true, "grpc-status", "0")
		out["mixed"] = [2][]byte{cw.bytes(), sw.bytes()}
	}
	{
		cv := newConversation()
		out["conversation"] = [2][]byte{cv.client, cv.server}
	}
	return out
}

// record runs one scenario, feeding each side with split, and returns a
// transcript of everything the consumer saw.
func record(client, server []byte, split func([]byte) [][]byte, mid bool, hold int) string {
	rec := newRecorder().withAnswers()
	rec.cfg.HoldBody = hold
	var streamed []*httpmsg.BodyStream
	emit := rec.cfg.Emit
	rec.cfg.Emit = func(r httpmsg.Request, tag any) {
		if r.Stream() != nil {
			streamed = append(streamed, r.Stream())
		}
		emit(r, tag)
	}
	c := rec.conn(mid)
	for _, p := range split(client) {
		c.ClientData(p, t0)
	}
	for _, p := range split(server) {
		c.ServerData(p, t0)
	}
	c.End()
	var sb strings.Builder
	for _, g := range rec.got {
		g.stream = nil
		sb.WriteString(g.String())
	}
	for _, bs := range streamed {
		chunks, err := bs.Take()
		var body []byte
		for _, ch := range chunks {
			body = append(body, ch...)
		}
		fmt.Fprintf(&sb, "streamed %q %v %q\n", body, err, bs.Trailers())
	}
	fmt.Fprintf(&sb, "order %v\ndrops %v\nlost %v\n", rec.order, rec.drops, rec.nils)
	for _, g := range rec.got {
		if a := rec.answers[g.tag]; a != nil {
			fmt.Fprintf(&sb, "answer %v %d %q %q %q\n", g.tag, a.Status, a.Header, a.Body, a.Trailer)
		}
	}
	fmt.Fprintf(&sb, "skipped %s aborted %s gave up %s requests %d\n", rec.stats.skipped(), rec.stats.aborted(), rec.stats.gaveUp(), rec.stats.Requests.Load())
	return sb.String()
}

func whole(b []byte) [][]byte { return [][]byte{b} }

func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func randomSplit(seed uint64) func([]byte) [][]byte {
	r := rand.New(rand.NewPCG(seed, 3))
	return func(b []byte) [][]byte {
		var out [][]byte
		for len(b) > 0 {
			n := min(len(b), 1+r.IntN(40))
			if r.IntN(10) == 0 {
				n = min(len(b), 1+r.IntN(20000))
			}
			out = append(out, b[:n])
			b = b[n:]
		}
		return out
	}
}

// Data split at every byte boundary, or anywhere, gives the same result as
// data in one piece: with the preface, joined mid-stream, and streaming.
func TestSplitAnywhere(t *testing.T) {
	for name, sc := range scenarios() {
		for _, mid := range []bool{false, true} {
			for _, hold := range []int{0, 100} {
				client := sc[0]
				if mid {
					client = client[len(Preface)+50:]
				}
				want := record(client, sc[1], whole, mid, hold)
				if got := record(client, sc[1], bytewise, mid, hold); got != want {
					t.Fatalf("%s mid=%v hold=%d, one byte at a time:\n%s\nwant\n%s", name, mid, hold, got, want)
				}
				for seed := range uint64(5) {
					if got := record(client, sc[1], randomSplit(seed), mid, hold); got != want {
						t.Fatalf("%s mid=%v hold=%d, split %d:\n%s\nwant\n%s", name, mid, hold, seed, got, want)
					}
				}
			}
		}
	}
}

// h1 is an HTTP/1.1 request as the HTTP/1 framer would show it.
type h1 struct {
	client, server            netip.AddrPort // testClient and testServer when unset
	method, target, authority string
	headers, trailers         [][2]string
	body                      string
}

func (r *h1) Proto() httpmsg.Proto { return httpmsg.HTTP11 }
func (r *h1) StreamID() uint32     { return 0 }
func (r *h1) Method() []byte       { return []byte(r.method) }
func (r *h1) Scheme() []byte       { return nil }
func (r *h1) Authority() []byte    { return []byte(r.authority) }
func (r *h1) Path() []byte         { return []byte(r.target) }
func (r *h1) Header(name string) ([]byte, bool) {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			return []byte(h[1]), true
		}
	}
	return nil, false
}
func (r *h1) VisitHeaders(fn func(name, value []byte) bool) {
	for _, h := range r.headers {
		if !fn([]byte(h[0]), []byte(h[1])) {
			return
		}
	}
}
func (r *h1) VisitTrailers(fn func(name, value []byte) bool) {
	for _, h := range r.trailers {
		if !fn([]byte(h[0]), []byte(h[1])) {
			return
		}
	}
}
func (r *h1) BodyLen() int64                   { return int64(len(r.body)) }
func (r *h1) VisitBody(fn func(b []byte) bool) { fn([]byte(r.body)) }
func (r *h1) Stream() *httpmsg.BodyStream      { return nil }
func (r *h1) Client() netip.AddrPort {
	if r.client.IsValid() {
		return r.client
	}
	return testClient
}
func (r *h1) Server() netip.AddrPort {
	if r.server.IsValid() {
		return r.server
	}
	return testServer
}
func (r *h1) Time() time.Time { return t0 }
func (r *h1) Release()        {}

func upgradeRequest() *h1 {
	return &h1{method: "POST", target: "/submit?x=1", authority: "svc.test:8080", body: "form=1",
		headers: [][2]string{
			{"Host", "svc.test:8080"}, {"Connection", "Upgrade, HTTP2-Settings, X-Hop"},
			{"Upgrade", "h2c"}, {"HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"},
			{"X-Hop", "dropped"}, {"Keep-Alive", "timeout=5"}, {"TE", "trailers, deflate"},
			{"Content-Type", "application/x-www-form-urlencoded"}, {"Content-Length", "6"},
			{"Cookie", "a=1"}, {"User-Agent", "nghttp2/1.52.0"},
		},
		trailers: [][2]string{{"X-Sum", "9"}},
	}
}

func TestFromUpgrade(t *testing.T) {
	r := FromUpgrade(upgradeRequest())
	defer r.Release()
	g := snapshot(r, nil)
	want := got{id: 1, method: "POST", scheme: "http", authority: "svc.test:8080", path: "/submit?x=1", body: "form=1", time: t0,
		headers:  "te: trailers\ncontent-type: application/x-www-form-urlencoded\ncontent-length: 6\ncookie: a=1\nuser-agent: nghttp2/1.52.0\n",
		trailers: "x-sum: 9\n"}
	if g != want {
		t.Fatalf("got\n%v\nwant\n%v", g, want)
	}
	if r.Proto() != httpmsg.HTTP2 || r.Client() != testClient || r.Server() != testServer {
		t.Fatal("proto or addresses")
	}
}

// An upgraded connection: stream 1 is the HTTP/1 request, answered in
// HTTP/2; the client's next stream is 3.
func TestUpgrade(t *testing.T) {
	rec := newRecorder().withAnswers()
	c := rec.conn(false)
	c.Upgrade(upgradeRequest(), "upgraded", true)
	cw, sw := clientWire(), serverWire()
	cw.headers(3, true, get("/next")...)
	sw.headers(1, false, ":status", "200").data(1, true, "ok").headers(3, true, ":status", "204")
	feed(c, cw.bytes(), sw.bytes())
	if len(rec.got) != 2 || rec.got[0].id != 1 || rec.got[0].body != "form=1" || rec.got[1].path != "/next" {
		t.Fatalf("got %v", rec.got)
	}
	if a := rec.answers["upgraded"]; a == nil || a.Status != 200 || string(a.Body) != "ok" {
		t.Fatalf("answer to stream 1: %+v", a)
	}
	mustEqual(t, "upgrades", rec.stats.Upgrades.Load(), 1)

	// Not kept: stream 1's answer is passed over.
	rec = newRecorder().withAnswers()
	c = rec.conn(false)
	c.Upgrade(upgradeRequest(), nil, false)
	feed(c, cw.bytes(), sw.bytes())
	if len(rec.got) != 1 || rec.got[0].path != "/next" || len(rec.answers) != 1 {
		t.Fatalf("got %v, answers %v", rec.got, rec.answers)
	}
}
