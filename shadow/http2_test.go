package shadow

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// h2Fake is a captured HTTP/2 request with a sequence number in x-seq.
func h2Fake(seq string, body string, fields ...[2]string) *fakeReq {
	f := newFake("GET", "shop.example:8080", "/item/"+seq, append([][2]string{{"x-seq", seq}}, fields...)...)
	if body != "" {
		f.method, f.body = "POST", body
	}
	return f
}

func fieldsOf(fs []hpack.HeaderField) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name + ": " + f.Value
	}
	return out
}

// TestHTTP2ExactHeaderList: the shadow gets the header list Fields makes,
// every field in order with its duplicates, nothing added; an HTTP/1
// request (chunked, with trailers) goes as HTTP/2 too.
func TestHTTP2ExactHeaderList(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) { sc.answer(r.id, "200", "ok") }})
	s := newH2Sender(t, SenderConfig{URL: sh.URL()})
	f := newFake("GET", "shop.example:8080", "/x?y=1",
		[2]string{"accept", "a"}, [2]string{"x-dup", "1"}, [2]string{"cookie", "a=1"}, [2]string{"x-dup", "2"},
		[2]string{"cookie", "b=2"}, [2]string{"te", "trailers"}, [2]string{"content-type", "application/grpc"})
	s.Send(f, nil)
	h1 := parseRequest(t, crlf("POST /up HTTP/1.1\nHost: h.example:81\nTransfer-Encoding: chunked\nConnection: keep-alive, X-Hop\nX-Hop: 1\nX-A: 1\n\n5\nhello\n6\n world\n0\nX-T: v\n\n"))
	s.Send(h1, nil)
	waitFor(t, "both ended", func() bool { return ended(s.Stats()) == 2 })
	reqs := sh.all()
	slices.SortFunc(reqs, func(a, b *h2Req) int { return int(a.id) - int(b.id) })
	want := []string{":method: GET", ":scheme: http", ":authority: shop.example-shadow:8080", ":path: /x?y=1",
		"accept: a", "x-dup: 1", "cookie: a=1", "x-dup: 2", "cookie: b=2", "te: trailers", "content-type: application/grpc",
		"x-forwarded-for: 192.0.2.10"}
	if got := fieldsOf(reqs[0].fields); !slices.Equal(got, want) {
		t.Errorf("header list\n got %q\nwant %q", got, want)
	}
	want = []string{":method: POST", ":scheme: http", ":authority: h.example-shadow:81", ":path: /up", "x-a: 1", "x-forwarded-for: 192.0.2.10"}
	if got := fieldsOf(reqs[1].fields); !slices.Equal(got, want) {
		t.Errorf("HTTP/1 request's header list\n got %q\nwant %q", got, want)
	}
	if string(reqs[1].body) != "hello world" || !slices.Equal(fieldsOf(reqs[1].trailers), []string{"x-t: v"}) {
		t.Errorf("HTTP/1 request's body %q, trailers %q", reqs[1].body, fieldsOf(reqs[1].trailers))
	}
	if f.released.Load() != 1 {
		t.Errorf("released %d times", f.released.Load())
	}
	closeH2(t, s)
	checkStats(t, s.Stats(), map[string]uint64{"queued": 2, "mirrored": 2, "opened": 1})
}

// TestHTTP2NetHTTPServers mirrors to net/http's h2c server and to its TLS
// h2 server: many requests, one connection, bodies byte for byte.
func TestHTTP2NetHTTPServers(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", secure), func(t *testing.T) {
			ts, rc, tc := newH2Server(t, secure, nil)
			s := newH2Sender(t, SenderConfig{URL: ts.URL, TLSConfig: tc})
			const n = 40
			for i := range n {
				body := ""
				if i%3 == 1 {
					body = strings.Repeat(strconv.Itoa(i), 5000) + "\x00\r\n"
				}
				if i%2 == 0 {
					s.Send(h2Fake(strconv.Itoa(i), body), nil)
				} else {
					s.Send(request(t, clientAddr(i), i, body), nil)
				}
			}
			waitFor(t, "all ended", func() bool { return ended(s.Stats()) == n })
			closeH2(t, s)
			checkStats(t, s.Stats(), map[string]uint64{"queued": n, "mirrored": n, "opened": 1})
			if got := s.Stats().Status(200); got != n {
				t.Errorf("status 200: %d", got)
			}
			for _, r := range rc.all() {
				seq, _ := strconv.Atoi(r.Header.Get("X-Seq"))
				want := ""
				if seq%3 == 1 {
					want = strings.Repeat(strconv.Itoa(seq), 5000) + "\x00\r\n"
				}
				if r.Proto != "HTTP/2.0" || r.TLS != secure || r.Body != want || r.Host != "shop.example-shadow:8080" {
					t.Errorf("request %d: %s tls=%v host %q body %d bytes", seq, r.Proto, r.TLS, r.Host, len(r.Body))
				}
				if _, ok := r.Header["Accept-Encoding"]; ok {
					t.Errorf("request %d: accept-encoding added", seq)
				}
			}
			if got := len(rc.all()); got != n {
				t.Errorf("%d requests arrived, want %d", got, n)
			}
		})
	}
}

// TestHTTP2Answer: SenderConfig.Answer gets the status, the fields in
// order, the trailers and the body up to AnswerBodyCap.
func TestHTTP2Answer(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) {
		sc.answer(r.id, "201", strings.Repeat("b", 100), hpack.HeaderField{Name: "x-t", Value: "1"}, hpack.HeaderField{Name: "grpc-status", Value: "3"})
	}})
	var mu sync.Mutex
	var got []*httpmsg.Answer
	s := newH2Sender(t, SenderConfig{URL: sh.URL(), AnswerBodyCap: 10, Answer: func(tag any, a *httpmsg.Answer, fail FailReason, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if !ok || tag != "t" {
			t.Errorf("answer %v %v %v", tag, fail, ok)
		}
		got = append(got, a)
	}})
	s.Send(h2Fake("1", ""), "t")
	waitFor(t, "ended", func() bool { return ended(s.Stats()) == 1 })
	closeH2(t, s)
	a := got[0]
	if a.Proto != httpmsg.HTTP2 || a.Status != 201 || string(a.Body) != "bbbbbbbbbb" || a.BodyLen != 100 || !a.Truncated ||
		len(a.Header) != 1 || string(a.Header[0].Name) != "content-type" || len(a.Trailer) != 2 || string(a.Trailer[1].Value) != "3" ||
		a.Start.IsZero() || a.End.Before(a.Start) {
		t.Errorf("answer %+v", a)
	}
	if s.Stats().GRPCStatus(3) != 1 || !strings.Contains(s.Stats().Snapshot().String(), "grpc_status_3=1") {
		t.Errorf("grpc status not counted: %v", s.Stats().Snapshot())
	}
}

// grpcFrame is one length-prefixed gRPC message.
func grpcFrame(msg string) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// readGRPC reads one length-prefixed message.
func readGRPC(r io.Reader) (string, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	b := make([]byte, binary.BigEndian.Uint32(h[1:]))
	_, err := io.ReadFull(r, b)
	return string(b), err
}

// grpcServer is a hand-built gRPC service on net/http's h2c server: the
// gRPC semantics without a generated stub (length-prefixed messages,
// te: trailers, grpc-status in the trailers or, for a call that fails at
// once, in the headers alone).
type grpcServer struct {
	mu    sync.Mutex
	calls map[string][]string // messages by x-call
	meta  map[string]http.Header
	got   chan string // every message as it arrives
}

func (g *grpcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := r.Header.Get("X-Call")
	g.mu.Lock()
	g.meta[call] = r.Header.Clone()
	g.meta[call].Set(":authority", r.Host)
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/grpc")
	if r.URL.Path == "/t.Echo/Fail" {
		w.Header().Set("Grpc-Status", "5")
		w.Header().Set("Grpc-Message", "not found")
		w.WriteHeader(200)
		return
	}
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	w.WriteHeader(200)
	var msgs []string
	for {
		m, err := readGRPC(r.Body)
		if err != nil {
			break
		}
		msgs = append(msgs, m)
		g.mu.Lock()
		g.calls[call] = append(g.calls[call], m)
		g.mu.Unlock()
		g.got <- call + ":" + m
		switch r.URL.Path {
		case "/t.Echo/Bidi":
			w.Write(grpcFrame("echo " + m))
			w.(http.Flusher).Flush()
		case "/t.Echo/ServerStream":
			for i := range 3 {
				w.Write(grpcFrame(fmt.Sprintf("%s #%d", m, i)))
			}
		}
	}
	switch r.URL.Path {
	case "/t.Echo/Unary":
		w.Write(grpcFrame("re " + strings.Join(msgs, "")))
	case "/t.Echo/ClientStream":
		w.Write(grpcFrame(fmt.Sprintf("%d messages", len(msgs))))
	}
	w.Header().Set("Grpc-Status", "0")
	w.Header().Set("Grpc-Message", "")
}

// TestHTTP2GRPC: unary, client-streaming, server-streaming and bidi calls
// through BodyStream reach a gRPC server as it expects them: messages and
// metadata byte for byte, te: trailers, :authority suffixed; the answers'
// grpc-status is counted, in the trailers or a trailers-only answer.
func TestHTTP2GRPC(t *testing.T) {
	g := &grpcServer{calls: map[string][]string{}, meta: map[string]http.Header{}, got: make(chan string, 100)}
	ts := newH2CServer(t, g.ServeHTTP)
	var mu sync.Mutex
	answers := map[string]*httpmsg.Answer{}
	s := newH2Sender(t, SenderConfig{URL: ts.URL, Answer: func(tag any, a *httpmsg.Answer, fail FailReason, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			t.Errorf("call %v failed: %v", tag, fail)
			return
		}
		answers[tag.(string)] = a
	}})
	call := func(name, method string) *fakeReq {
		f := newFake("POST", "grpc.example:50051", "/t.Echo/"+method,
			[2]string{"content-type", "application/grpc"}, [2]string{"te", "trailers"}, [2]string{"x-call", name},
			[2]string{"x-meta", "v"}, [2]string{"x-token-bin", "AAEC"})
		return f
	}
	binMsg := "\x00\x01\x02\xff bytes"

	u := call("unary", "Unary")
	u.body = string(grpcFrame(binMsg))
	s.Send(u, "unary")

	cs := call("client", "ClientStream")
	cs.stream = httpmsg.NewBodyStream(1 << 20)
	s.Send(cs, "client")
	for i := range 3 {
		cs.stream.Write(grpcFrame(fmt.Sprintf("m%d", i)))
	}
	cs.stream.End(nil)

	ss := call("server", "ServerStream")
	ss.body = string(grpcFrame("s"))
	s.Send(ss, "server")

	bd := call("bidi", "Bidi")
	bd.stream = httpmsg.NewBodyStream(1 << 20)
	s.Send(bd, "bidi")
	for i := range 3 {
		m := fmt.Sprintf("b%d", i)
		bd.stream.Write(grpcFrame(m))
		// The next message goes only once the server has this one: the
		// call is interactive, not buffered.
		for got := ""; got != "bidi:"+m; {
			select {
			case got = <-g.got:
			case <-time.After(30 * time.Second):
				t.Fatalf("bidi message %s never arrived", m)
			}
		}
	}
	bd.stream.End(nil)

	fl := call("fail", "Fail")
	s.Send(fl, "fail")
	waitFor(t, "calls ended", func() bool { return ended(s.Stats()) == 5 })
	closeH2(t, s)

	g.mu.Lock()
	defer g.mu.Unlock()
	for name, want := range map[string][]string{
		"unary": {binMsg}, "client": {"m0", "m1", "m2"}, "server": {"s"}, "bidi": {"b0", "b1", "b2"},
	} {
		if !slices.Equal(g.calls[name], want) {
			t.Errorf("%s: server got %q, want %q", name, g.calls[name], want)
		}
		h := g.meta[name]
		if h.Get("Te") != "trailers" || h.Get("X-Meta") != "v" || h.Get("X-Token-Bin") != "AAEC" ||
			h.Get(":authority") != "grpc.example-shadow:50051" || h.Get("User-Agent") != "" {
			t.Errorf("%s: metadata %v", name, h)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	wantBody := map[string]string{
		"unary":  string(grpcFrame("re " + binMsg)),
		"client": string(grpcFrame("3 messages")),
		"server": string(grpcFrame("s #0")) + string(grpcFrame("s #1")) + string(grpcFrame("s #2")),
		"bidi":   string(grpcFrame("echo b0")) + string(grpcFrame("echo b1")) + string(grpcFrame("echo b2")),
		"fail":   "",
	}
	for name, want := range wantBody {
		a := answers[name]
		if a == nil || string(a.Body) != want || a.Status != 200 {
			t.Errorf("%s: answer %+v", name, a)
		}
	}
	st := s.Stats()
	if st.GRPCStatus(0) != 4 || st.GRPCStatus(5) != 1 {
		t.Errorf("grpc status: %v", st.Snapshot())
	}
}

// gate is a handler that holds requests until released, and counts how
// many it holds at once on each connection.
type h2Gate struct {
	release chan struct{}
	mu      sync.Mutex
	now     map[string]int
	peak    map[string]int
	held    atomic.Int32
}

func newH2Gate() *h2Gate {
	return &h2Gate{release: make(chan struct{}), now: map[string]int{}, peak: map[string]int{}}
}

func (g *h2Gate) handler(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.now[r.RemoteAddr]++
	g.peak[r.RemoteAddr] = max(g.peak[r.RemoteAddr], g.now[r.RemoteAddr])
	g.mu.Unlock()
	g.held.Add(1)
	<-g.release
	g.held.Add(-1)
	g.mu.Lock()
	g.now[r.RemoteAddr]--
	g.mu.Unlock()
}

func (g *h2Gate) peaks() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int
	for _, p := range g.peak {
		out = append(out, p)
	}
	return out
}

// TestHTTP2FewConnections: streams share a connection up to the shadow's
// SETTINGS_MAX_CONCURRENT_STREAMS; another connection opens only when
// every open one is full.
func TestHTTP2FewConnections(t *testing.T) {
	g := newH2Gate()
	ts, _, _ := newH2Server(t, false, g.handler, maxStreams(4))
	s := newH2Sender(t, SenderConfig{URL: ts.URL, MaxConnections: 10})
	st := s.Stats()
	for round := 1; round <= 3; round++ {
		for i := range 4 {
			s.Send(h2Fake(fmt.Sprint(round, "-", i), ""), nil)
		}
		waitFor(t, "requests held", func() bool { return g.held.Load() == int32(4*round) })
		if got := st.ConnectionsOpened.Load(); got != uint64(round) {
			t.Fatalf("round %d: %d connections opened", round, got)
		}
	}
	if st.InFlight.Load() != 12 || st.ConnectionsBusy.Load() != 3 || st.PeakInFlight.Load() != 12 {
		t.Errorf("gauges: %v", st.Snapshot())
	}
	close(g.release)
	waitFor(t, "all ended", func() bool { return ended(st) == 12 })
	waitFor(t, "idle", func() bool { return st.ConnectionsIdle.Load() == 3 })
	// Idle connections are reused: nothing new is opened.
	for i := range 6 {
		s.Send(h2Fake(fmt.Sprint("again-", i), ""), nil)
	}
	waitFor(t, "all ended", func() bool { return ended(st) == 18 })
	closeH2(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 18, "opened": 3})
	for _, p := range g.peaks() {
		if p > 4 {
			t.Errorf("a connection carried %d streams at once", p)
		}
	}
}

// TestHTTP2SmallMaxStreams: with SETTINGS_MAX_CONCURRENT_STREAMS 2 and one
// connection, requests wait in the pending line and go as streams end; none
// overflows while within MaxPending.
func TestHTTP2SmallMaxStreams(t *testing.T) {
	g := newH2Gate()
	ts, rc, _ := newH2Server(t, false, g.handler, maxStreams(2))
	s := newH2Sender(t, SenderConfig{URL: ts.URL, MaxConnections: 1, MaxPending: 100})
	st := s.Stats()
	const n = 60
	for i := range n {
		if !s.Send(h2Fake(strconv.Itoa(i), strings.Repeat("x", i)), nil) {
			t.Fatalf("request %d dropped: %v", i, st.Snapshot())
		}
	}
	waitFor(t, "two held", func() bool { return g.held.Load() == 2 && st.Pending.Load() == n-2 })
	close(g.release)
	waitFor(t, "all ended", func() bool { return ended(st) == n })
	closeH2(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": n, "opened": 1, "dropped_overflow": 0})
	for _, p := range g.peaks() {
		if p > 2 {
			t.Errorf("the connection carried %d streams at once", p)
		}
	}
	seen := map[string]int{}
	for _, r := range rc.all() {
		seen[r.Header.Get("X-Seq")]++
		if seq, _ := strconv.Atoi(r.Header.Get("X-Seq")); r.Body != strings.Repeat("x", seq) {
			t.Errorf("request %d: body %q", seq, r.Body)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct requests arrived, want %d", len(seen), n)
	}
}

// TestHTTP2FlowControl: a shadow with small stream windows that gives
// them back slowly still gets large bodies whole, several at once, and a
// streaming one, interleaved on one connection.
func TestHTTP2FlowControl(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{
		settings:    []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1000}, {ID: http2.SettingMaxFrameSize, Val: 16384}},
		windowDelay: 100 * time.Microsecond,
		handle:      func(sc *h2ServerConn, r *h2Req) { sc.answer(r.id, "200", "") },
	})
	s := newH2Sender(t, SenderConfig{URL: sh.URL()})
	bodies := map[string]string{}
	for i := range 3 {
		b := make([]byte, 100<<10)
		for j := range b {
			b[j] = byte(i*7 + j*13)
		}
		bodies[strconv.Itoa(i)] = string(b)
		s.Send(h2Fake(strconv.Itoa(i), string(b)), nil)
	}
	f := h2Fake("stream", "")
	f.method = "POST"
	f.stream = httpmsg.NewBodyStream(1 << 20)
	s.Send(f, nil)
	var want bytes.Buffer
	for i := range 20 {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 3000)
		want.Write(chunk)
		f.stream.Write(chunk)
	}
	f.stream.End([]httpmsg.Field{{Name: []byte("x-sum"), Value: []byte("60000")}})
	bodies["stream"] = want.String()
	waitFor(t, "all ended", func() bool { return ended(s.Stats()) == 4 })
	closeH2(t, s)
	checkStats(t, s.Stats(), map[string]uint64{"mirrored": 4, "opened": 1})
	for _, r := range sh.all() {
		if string(r.body) != bodies[seqOf(r)] {
			t.Errorf("request %s: %d bytes, want %d", seqOf(r), len(r.body), len(bodies[seqOf(r)]))
		}
		if seqOf(r) == "stream" && !slices.Equal(fieldsOf(r.trailers), []string{"x-sum: 60000"}) {
			t.Errorf("trailers %q", fieldsOf(r.trailers))
		}
	}
}

// TestHTTP2GoAway: after GOAWAY, the streams above its last stream id go
// again on a new connection (each processed once), the one at or below it
// that gets no answer fails, and the one answered is mirrored.
func TestHTTP2GoAway(t *testing.T) {
	var answered sync.Map
	sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) {
		if sc.n > 1 {
			answered.Store(seqOf(r)+"@"+strconv.Itoa(sc.n), true)
			sc.answer(r.id, "200", "")
			return
		}
		if r.id != 5 {
			return // held until the third arrives
		}
		sc.goAway(3, http2.ErrCodeNo)
		answered.Store("0@1", true)
		sc.answer(1, "200", "")
		sc.c.(*net.TCPConn).CloseWrite() // stream 3 never gets its answer
	}})
	s := newH2Sender(t, SenderConfig{URL: sh.URL(), MaxConnections: 1})
	for i := range 3 {
		s.Send(h2Fake(strconv.Itoa(i), ""), nil)
	}
	waitFor(t, "all ended", func() bool { return ended(s.Stats()) == 3 })
	closeH2(t, s)
	// The request sent again counts once in Sent.
	checkStats(t, s.Stats(), map[string]uint64{"mirrored": 2, "failed_reset": 1, "requeued": 1, "opened": 2, "retried": 0, "sent": 3})
	var got []string
	answered.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
	slices.Sort(got)
	if !slices.Equal(got, []string{"0@1", "2@2"}) {
		t.Errorf("answered %q", got)
	}
	if c := countSeqs(sh.all()); c["0"] != 1 || c["1"] != 1 || c["2"] != 2 {
		t.Errorf("requests read by the shadow: %v", c)
	}
}

// TestHTTP2Reset: REFUSED_STREAM is sent again once; another refusal, or
// any other code, fails the request.
func TestHTTP2Reset(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) {
		mu.Lock()
		seen[seqOf(r)]++
		n := seen[seqOf(r)]
		mu.Unlock()
		switch {
		case seqOf(r) == "once" && n == 1, seqOf(r) == "always":
			sc.rst(r.id, http2.ErrCodeRefusedStream)
		case seqOf(r) == "internal":
			sc.rst(r.id, http2.ErrCodeInternal)
		default:
			sc.answer(r.id, "200", "")
		}
	}})
	s := newH2Sender(t, SenderConfig{URL: sh.URL()})
	for _, seq := range []string{"once", "always", "internal", "fine"} {
		body := ""
		if seq == "once" {
			body = "a body goes again whole"
		}
		s.Send(h2Fake(seq, body), nil)
	}
	waitFor(t, "all ended", func() bool { return ended(s.Stats()) == 4 })
	closeH2(t, s)
	checkStats(t, s.Stats(), map[string]uint64{"mirrored": 2, "failed_reset": 2, "retried": 2, "opened": 1})
	if !maps(seen, map[string]int{"once": 2, "always": 2, "internal": 1, "fine": 1}) {
		t.Errorf("seen %v", seen)
	}
	for _, r := range sh.all() {
		if seqOf(r) == "once" && string(r.body) != "a body goes again whole" {
			t.Errorf("resent body %q", r.body)
		}
	}
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestHTTP2ShadowCloses: a shadow that closes its connections after
// answering gets the next requests on new ones; one that closes with a
// stream unanswered fails that stream.
func TestHTTP2ShadowCloses(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) {
		if seqOf(r) != "drop" {
			sc.answer(r.id, "200", "")
		}
		sc.c.(*net.TCPConn).CloseWrite()
	}})
	s := newH2Sender(t, SenderConfig{URL: sh.URL(), MaxConnections: 1})
	st := s.Stats()
	for i := range 5 {
		s.Send(h2Fake(strconv.Itoa(i), ""), nil)
		waitFor(t, "ended", func() bool { return ended(st) == uint64(i+1) })
		waitFor(t, "closed", func() bool { return st.ConnectionsOpen.Load() == 0 })
	}
	s.Send(h2Fake("drop", ""), nil)
	waitFor(t, "ended", func() bool { return ended(st) == 6 })
	closeH2(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 5, "failed_reset": 1, "opened": 6, "closed_shadow_closed": 6})
}

// TestHTTP2Timeouts: a stream the shadow leaves unanswered times out and
// is reset with CANCEL while the connection goes on; a shadow that sends
// nothing at all has its connection closed.
func TestHTTP2Timeouts(t *testing.T) {
	t.Run("one stream", func(t *testing.T) {
		sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) {
			if seqOf(r) != "slow" {
				sc.answer(r.id, "200", "")
			}
		}})
		s := newH2Sender(t, SenderConfig{URL: sh.URL(), Timeout: 300 * time.Millisecond})
		s.Send(h2Fake("slow", ""), nil)
		s.Send(h2Fake("fast", ""), nil)
		waitFor(t, "both ended", func() bool { return ended(s.Stats()) == 2 })
		waitFor(t, "the reset read", func() bool {
			for _, r := range sh.all() {
				if seqOf(r) == "slow" && r.wasReset {
					return r.reset == http2.ErrCodeCancel
				}
			}
			return false
		})
		s.Send(h2Fake("after", ""), nil)
		waitFor(t, "ended", func() bool { return ended(s.Stats()) == 3 })
		closeH2(t, s)
		checkStats(t, s.Stats(), map[string]uint64{"mirrored": 2, "failed_timeout": 1, "opened": 1, "closed_timeout": 0})
	})
	t.Run("handlers hang", func(t *testing.T) {
		// The shadow's HTTP/2 layer answers the PING: its connection
		// stays, and carries the next request.
		sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) {
			if seqOf(r) == "after" {
				sc.answer(r.id, "200", "")
			}
		}})
		s := newH2Sender(t, SenderConfig{URL: sh.URL(), Timeout: 300 * time.Millisecond})
		for i := range 3 {
			s.Send(h2Fake(strconv.Itoa(i), "b"), nil)
		}
		waitFor(t, "all ended", func() bool { return ended(s.Stats()) == 3 })
		time.Sleep(400 * time.Millisecond) // past the PING's wait
		s.Send(h2Fake("after", ""), nil)
		waitFor(t, "ended", func() bool { return ended(s.Stats()) == 4 })
		closeH2(t, s)
		checkStats(t, s.Stats(), map[string]uint64{"failed_timeout": 3, "mirrored": 1, "opened": 1, "closed_timeout": 0})
	})
	t.Run("gone", func(t *testing.T) {
		// The shadow reads but answers nothing, not even a PING: its
		// connection is closed, and the next request gets another.
		var conns atomic.Int32
		live := &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) { sc.answer(r.id, "200", "") }}
		srv := newRawServer(t, func(c net.Conn) {
			if conns.Add(1) == 1 {
				http2.NewFramer(c, c).WriteSettings()
				io.Copy(io.Discard, c)
				return
			}
			live.serve(c)
		})
		s := newH2Sender(t, SenderConfig{URL: srv.URL(), Timeout: 300 * time.Millisecond})
		for i := range 3 {
			s.Send(h2Fake(strconv.Itoa(i), "b"), nil)
		}
		waitFor(t, "all ended", func() bool { return ended(s.Stats()) == 3 })
		waitFor(t, "the connection closed", func() bool { return s.Stats().ConnectionsOpen.Load() == 0 })
		s.Send(h2Fake("after", ""), nil)
		waitFor(t, "ended", func() bool { return ended(s.Stats()) == 4 })
		closeH2(t, s)
		checkStats(t, s.Stats(), map[string]uint64{"failed_timeout": 3, "mirrored": 1, "opened": 2, "closed_timeout": 1})
	})
}

// TestHTTP2StreamOutlastsTimeout: a streamed request's Timeout counts
// from its end: a client stream that lasts longer than Timeout is not cut,
// and is answered.
func TestHTTP2StreamOutlastsTimeout(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{handle: func(sc *h2ServerConn, r *h2Req) { sc.answer(r.id, "200", "") }})
	s := newH2Sender(t, SenderConfig{URL: sh.URL(), Timeout: 200 * time.Millisecond})
	f := h2Fake("long", "")
	f.method = "POST"
	f.stream = httpmsg.NewBodyStream(1 << 16)
	s.Send(f, nil)
	for i := range 5 {
		f.stream.Write([]byte("part" + strconv.Itoa(i)))
		time.Sleep(100 * time.Millisecond)
	}
	f.stream.End(nil)
	waitFor(t, "ended", func() bool { return ended(s.Stats()) == 1 })
	closeH2(t, s)
	checkStats(t, s.Stats(), map[string]uint64{"mirrored": 1, "failed_timeout": 0})
	if r := sh.all(); len(r) != 1 || string(r[0].body) != "part0part1part2part3part4" {
		t.Errorf("the shadow got %d requests, %q", len(r), r[0].body)
	}
}

// TestHTTP2StreamAborted: a streaming request whose client resets its
// stream resets the shadow's stream with CANCEL and fails as aborted.
func TestHTTP2StreamAborted(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{})
	s := newH2Sender(t, SenderConfig{URL: sh.URL()})
	f := h2Fake("up", "")
	f.method = "POST"
	f.stream = httpmsg.NewBodyStream(1 << 16)
	s.Send(f, nil)
	f.stream.Write([]byte("first part"))
	waitFor(t, "the first part read", func() bool {
		r := sh.all()
		return len(r) == 1 && string(r[0].body) == "first part"
	})
	f.stream.Abort(errors.New("client reset its stream"))
	waitFor(t, "ended", func() bool { return ended(s.Stats()) == 1 })
	waitFor(t, "the reset read", func() bool { r := sh.all(); return r[0].wasReset && r[0].reset == http2.ErrCodeCancel })
	closeH2(t, s)
	checkStats(t, s.Stats(), map[string]uint64{"failed_aborted": 1})
	if f.released.Load() != 1 {
		t.Errorf("released %d times", f.released.Load())
	}
}

// TestHTTP2CloseAborts: Close gives up on what a hung shadow holds and
// fails it as shutdown, pending requests included.
func TestHTTP2CloseAborts(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 2}}})
	s, err := NewHTTP2(SenderConfig{URL: sh.URL(), MaxConnections: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.Send(h2Fake(strconv.Itoa(i), ""), nil)
	}
	waitFor(t, "two in flight", func() bool { return s.Stats().InFlight.Load() == 2 && s.Stats().Pending.Load() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close returned nil with requests in flight")
	}
	checkAccounting(t, s.Stats())
	checkNoGoroutines(t)
	checkStats(t, s.Stats(), map[string]uint64{"failed_shutdown": 5})
	if s.Send(h2Fake("late", ""), nil) {
		t.Error("Send after Close queued")
	}
	checkStats(t, s.Stats(), map[string]uint64{"dropped_closed": 1})
}

// TestHTTP2Ordered: the requests of one client connection go one after
// the other, in order, those of different ones in parallel.
func TestHTTP2Ordered(t *testing.T) {
	var mu sync.Mutex
	order := map[string][]int{}
	ts, _, _ := newH2Server(t, false, func(w http.ResponseWriter, r *http.Request) {
		seq, _ := strconv.Atoi(r.Header.Get("X-Seq"))
		mu.Lock()
		order[r.Header.Get("X-Forwarded-For")] = append(order[r.Header.Get("X-Forwarded-For")], seq)
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
	})
	s := newH2Sender(t, SenderConfig{URL: ts.URL, Ordered: true})
	const clients, per = 5, 20
	for i := range per {
		for c := range clients {
			f := h2Fake(strconv.Itoa(i), "")
			f.client = clientAddr(c)
			s.Send(f, nil)
		}
	}
	waitFor(t, "all ended", func() bool { return ended(s.Stats()) == clients*per })
	closeH2(t, s)
	for c := range clients {
		checkInOrderOnce(t, clientAddr(c).Addr().String(), order[clientAddr(c).Addr().String()], per)
	}
}

// TestHTTP2RandomLoad: many senders at once against a shadow of random
// delays, with limits that overflow: every request ends exactly once.
func TestHTTP2RandomLoad(t *testing.T) {
	ts, rc, _ := newH2Server(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
	}, maxStreams(8))
	s := newH2Sender(t, SenderConfig{URL: ts.URL, MaxConnections: 3, MaxPending: 20, MaxRequests: 20})
	var wg sync.WaitGroup
	var queued atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				body := ""
				if i%4 == 0 {
					body = strings.Repeat("z", rand.IntN(50000))
				}
				if s.Send(h2Fake(fmt.Sprint(g, "-", i), body), nil) {
					queued.Add(1)
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "all ended", func() bool { return ended(s.Stats()) == uint64(queued.Load()) })
	closeH2(t, s)
	st := s.Stats()
	if st.Queued.Load()+st.Dropped[DropOverflow].Load() != 800 || st.Mirrored.Load() != uint64(len(rc.all())) {
		t.Errorf("%v; %d arrived", st.Snapshot(), len(rc.all()))
	}
	if st.ConnectionsOpened.Load() > 3 {
		t.Errorf("%d connections opened", st.ConnectionsOpened.Load())
	}
}

// TestHTTP2NoStreamsAllowed: a shadow that allows no stream
// (SETTINGS_MAX_CONCURRENT_STREAMS 0) gets one connection, not one per
// waiting request; the requests wait for their Timeout.
func TestHTTP2NoStreamsAllowed(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}})
	s := newH2Sender(t, SenderConfig{URL: sh.URL(), MaxConnections: 16, Timeout: 300 * time.Millisecond})
	waitFor(t, "first connection", func() bool {
		s.Send(h2Fake("0", ""), nil)
		return s.Stats().ConnectionsOpen.Load() == 1
	})
	for i := range 20 {
		s.Send(h2Fake(strconv.Itoa(i+1), ""), nil)
	}
	waitFor(t, "all ended", func() bool { return s.Stats().Queued.Load() == ended(s.Stats()) })
	closeH2(t, s)
	if n := sh.conns.Load(); n != 1 {
		t.Errorf("%d connections to a shadow that allows no stream, want 1", n)
	}
	if got := sh.all(); len(got) != 0 {
		t.Errorf("%d streams opened against SETTINGS_MAX_CONCURRENT_STREAMS 0", len(got))
	}
	if sn := s.Stats().Snapshot(); sn.Failed["timeout"] != sn.Queued {
		t.Errorf("want every request failed by its timeout: %v", sn)
	}
}

// TestHTTP2StreamHeldByWindow: a streamed request whose client has ended
// but whose body the shadow's flow control holds back times out by its
// Timeout, counted from the client's end; it does not hang.
func TestHTTP2StreamHeldByWindow(t *testing.T) {
	sh := newH2Shadow(t, &h2Shadow{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 10}}, noWindow: true})
	s := newH2Sender(t, SenderConfig{URL: sh.URL(), Timeout: 200 * time.Millisecond})
	f := h2Fake("held", "")
	f.method = "POST"
	f.stream = httpmsg.NewBodyStream(1 << 16)
	s.Send(f, nil)
	f.stream.Write(bytes.Repeat([]byte("x"), 1000))
	f.stream.End(nil)
	waitFor(t, "ended", func() bool { return ended(s.Stats()) == 1 })
	closeH2(t, s)
	checkStats(t, s.Stats(), map[string]uint64{"failed_timeout": 1})
}
