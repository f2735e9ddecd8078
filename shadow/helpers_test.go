package shadow

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
)

// Addresses of the captured connection used unless a test says otherwise.
var (
	testClient = netip.MustParseAddrPort("192.0.2.10:51000")
	testServer = netip.MustParseAddrPort("198.18.0.2:8080")
)

// crlf turns the "\n" line endings of a readable literal into "\r\n".
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// parseRequest frames one literal request the way httpframe presents it:
// Raw is the literal, the spans point into it. It is a test stand-in for the
// framer, tolerant of bare LF line endings and nothing else.
func parseRequest(t testing.TB, raw string) *httpframe.Request {
	t.Helper()
	b := []byte(raw)
	r := &httpframe.Request{Raw: b, ContentLength: -1, ClientAddr: testClient, ServerAddr: testServer}
	lineEnd := func(from int) (end, next int) {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			t.Fatalf("parseRequest: unterminated line at %d in %q", from, raw)
		}
		next = from + i + 1
		end = next - 1
		if end > from && b[end-1] == '\r' {
			end--
		}
		return end, next
	}
	end, pos := lineEnd(0)
	sp1 := bytes.IndexByte(b[:end], ' ')
	sp2 := bytes.LastIndexByte(b[:end], ' ')
	if sp1 <= 0 || sp2 <= sp1 {
		t.Fatalf("parseRequest: bad request line %q", b[:end])
	}
	r.MethodSpan = httpframe.Span{Start: 0, End: sp1}
	r.TargetSpan = httpframe.Span{Start: sp1 + 1, End: sp2}
	r.VersionSpan = httpframe.Span{Start: sp2 + 1, End: end}
	r.Minor = int(b[end-1] - '0')
	for {
		end, next := lineEnd(pos)
		if end == pos {
			r.HeadEnd = next
			break
		}
		colon := bytes.IndexByte(b[pos:end], ':')
		if colon <= 0 {
			t.Fatalf("parseRequest: bad header line %q", b[pos:end])
		}
		vs, ve := pos+colon+1, end
		for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
			vs++
		}
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		h := httpframe.Header{
			Name:  httpframe.Span{Start: pos, End: pos + colon},
			Value: httpframe.Span{Start: vs, End: ve},
			Line:  httpframe.Span{Start: pos, End: next},
		}
		r.Headers = append(r.Headers, h)
		name, value := strings.ToLower(string(r.Bytes(h.Name))), string(r.Bytes(h.Value))
		switch name {
		case "transfer-encoding":
			r.Chunked = strings.Contains(strings.ToLower(value), "chunked")
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				t.Fatalf("parseRequest: bad Content-Length %q", value)
			}
			r.ContentLength = n
		}
		pos = next
	}
	if r.Chunked {
		r.ContentLength = -1
	}
	r.DecodedLen = int64(len(b) - r.HeadEnd)
	if r.Chunked {
		r.DecodedLen = 0
		r.VisitBody(func(p []byte) bool { r.DecodedLen += int64(len(p)); return true })
	}
	return r
}

// request builds a request from a client connection and a sequence number:
// method, path and body vary so that a mix-up would show.
func request(t testing.TB, client netip.AddrPort, seq int, body string) *httpframe.Request {
	t.Helper()
	var raw string
	if body == "" {
		raw = "GET /item/" + strconv.Itoa(seq) + "?q=1 HTTP/1.1\r\nHost: shop.example:8080\r\nX-Seq: " +
			strconv.Itoa(seq) + "\r\nUser-Agent: t\r\n\r\n"
	} else {
		raw = "POST /item/" + strconv.Itoa(seq) + " HTTP/1.1\r\nHost: shop.example:8080\r\nX-Seq: " +
			strconv.Itoa(seq) + "\r\nContent-Type: text/plain\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	r := parseRequest(t, raw)
	r.ClientAddr = client
	return r
}

// clientAddr returns the i-th test client address.
func clientAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i%200)}), uint16(40000+i))
}

// rawServer is a TCP server whose connections are handled by handle: for
// responses that net/http would never write.
type rawServer struct {
	ln       net.Listener
	accepted sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	n        int
}

func newRawServer(t testing.TB, handle func(c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.accepted.Add(1)
	go func() {
		defer s.accepted.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.n++
			s.mu.Unlock()
			s.accepted.Add(1)
			go func() {
				defer s.accepted.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.accepted.Wait()
	})
	return s
}

func (s *rawServer) URL() string { return "http://" + s.ln.Addr().String() }

func (s *rawServer) accepts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkNoGoroutines fails if a goroutine of this package's Sender is still
// alive shortly after Close returned.
func checkNoGoroutines(t testing.TB) {
	t.Helper()
	const marker = "shadowtee/shadow.(*"
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		var leaked []string
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, marker) {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkAccounting checks that every queued request was counted once as
// mirrored or failed, that the statuses add up, and that no gauge is left
// above zero.
func checkAccounting(t testing.TB, st *Stats) {
	t.Helper()
	var failed uint64
	for i := range st.Failed {
		failed += st.Failed[i].Load()
	}
	if q, m := st.Queued.Load(), st.Mirrored.Load(); q != m+failed {
		t.Errorf("queued %d != mirrored %d + failed %d (%v)", q, m, failed, st.Snapshot())
	}
	var statuses uint64
	st.VisitStatus(func(_ int, n uint64) { statuses += n })
	if statuses != st.Mirrored.Load() || st.Latency.Count() != st.Mirrored.Load() {
		t.Errorf("statuses %d, latencies %d, mirrored %d", statuses, st.Latency.Count(), st.Mirrored.Load())
	}
	var closed uint64
	for i := range st.ConnectionsClosed {
		closed += st.ConnectionsClosed[i].Load()
	}
	if closed != st.ConnectionsOpened.Load() {
		t.Errorf("connections opened %d, closed %d", st.ConnectionsOpened.Load(), closed)
	}
	for _, g := range []struct {
		name string
		v    int64
	}{
		{"QueueBytes", st.QueueBytes.Load()}, {"InFlight", st.InFlight.Load()}, {"Pending", st.Pending.Load()},
		{"ConnectionsOpen", st.ConnectionsOpen.Load()}, {"ConnectionsBusy", st.ConnectionsBusy.Load()},
		{"ConnectionsIdle", st.ConnectionsIdle.Load()}, {"ConnectionsConnecting", st.ConnectionsConnecting.Load()},
	} {
		if g.v != 0 {
			t.Errorf("%s = %d after Close, want 0", g.name, g.v)
		}
	}
}

// recorded is what a test server saw of one request.
type recorded struct {
	Method, URI, Host, Proto string
	Header, Trailer          http.Header
	Body                     string
	TLS                      bool
	TransferEncoding         []string
}

type recorder struct {
	mu    sync.Mutex
	reqs  []recorded
	conns atomic.Int32 // connections accepted
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

// newRecordingServer starts a net/http server that records every request,
// then lets handler answer (default: 200 "ok").
func newRecordingServer(t *testing.T, secure bool, handler http.HandlerFunc, tune ...func(*httptest.Server)) (*httptest.Server, *recorder) {
	t.Helper()
	rc := &recorder{}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server reading body of %s %s: %v", r.Method, r.RequestURI, err)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{
			Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto,
			Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: string(body),
			TLS: r.TLS != nil, TransferEncoding: r.TransferEncoding,
		})
		rc.mu.Unlock()
		if handler != nil {
			handler(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.conns.Add(1)
		}
	}
	for _, f := range tune {
		f(ts)
	}
	if secure {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts, rc
}

// newSender returns an HTTP/1 sender closed at the end of the test (before
// the servers the test started, since cleanups run last-in first-out).
func newSender(t *testing.T, cfg SenderConfig) *HTTP1Sender {
	t.Helper()
	s, err := NewHTTP1(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// closeSender closes s, waiting for what is in flight, and checks the
// ledger and that nothing of s is left running.
func closeSender(t *testing.T, s *HTTP1Sender) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkClosed(t, s)
}

// checkClosed checks what must hold once Close has returned.
func checkClosed(t *testing.T, s *HTTP1Sender) {
	t.Helper()
	checkAccounting(t, s.Stats())
	checkNoGoroutines(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) != 0 || len(s.idle) != 0 || s.connecting != 0 || s.inFlight != 0 || s.pending.len() != 0 || s.waiting != 0 || len(s.flows) != 0 {
		t.Errorf("left after Close: %d conns, %d idle, %d connecting, %d in flight, %d pending, %d waiting, %d flows",
			len(s.conns), len(s.idle), s.connecting, s.inFlight, s.pending.len(), s.waiting, len(s.flows))
	}
}

func failures(st *Stats) uint64 {
	var n uint64
	for i := range st.Failed {
		n += st.Failed[i].Load()
	}
	return n
}

// seqsByClient groups the X-Seq of recorded requests by the client address
// the shadow saw in X-Forwarded-For.
func seqsByClient(t *testing.T, reqs []recorded) map[string][]int {
	t.Helper()
	m := map[string][]int{}
	for _, r := range reqs {
		n, err := strconv.Atoi(r.Header.Get("X-Seq"))
		if err != nil {
			t.Fatalf("request without X-Seq: %+v", r)
		}
		xff := r.Header.Get("X-Forwarded-For")
		m[xff] = append(m[xff], n)
	}
	return m
}

func checkInOrderOnce(t *testing.T, client string, seqs []int, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Errorf("client %s: %d requests arrived, want %d: %v", client, len(seqs), n, seqs)
		return
	}
	for i, s := range seqs {
		if s != i {
			t.Errorf("client %s: arrival %d is request %d: %v", client, i, s, seqs)
			return
		}
	}
}

func bodyFor(client, seq int) string {
	if seq%3 != 1 {
		return ""
	}
	return strings.Repeat(string(rune('a'+client)), seq*50) + "\r\n\x00end"
}

// countingConn counts Write calls: the pipelining test wants many requests
// per write.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func countingDial(writes *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, writes}, nil
	}
}

// rawRecorder collects the X-Seq of requests read by a raw server.
type rawRecorder struct {
	mu   sync.Mutex
	seqs []int
}

func (rr *rawRecorder) add(req *http.Request) {
	n, _ := strconv.Atoi(req.Header.Get("X-Seq"))
	rr.mu.Lock()
	rr.seqs = append(rr.seqs, n)
	rr.mu.Unlock()
}

func (rr *rawRecorder) get() []int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]int(nil), rr.seqs...)
}

// finish half-closes c and waits for the client to close, so that unread
// requests do not turn the close into a reset.
func finish(c net.Conn) {
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}

// answerThenClose serves n requests per connection; the last response ends
// the connection as last says.
func answerThenClose(rr *rawRecorder, n int, last string) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := range n {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			rr.add(req)
			if i == n-1 {
				io.WriteString(c, last)
				finish(c)
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
}

// failingConn fails its n-th Write after writing half of it, as a
// connection broken mid-write would.
type failingConn struct {
	net.Conn
	writes *atomic.Int64
	n      int64
}

func (c failingConn) Write(b []byte) (int, error) {
	if c.writes.Add(1) == c.n {
		w, _ := c.Conn.Write(b[:len(b)/2])
		return w, errors.New("broken pipe (test)")
	}
	return c.Conn.Write(b)
}

// fakeReq is a request of the protocol-neutral view with no HTTP/1 wire
// form, as an HTTP/2 framer presents one: pseudo-header values, lower-case
// fields, a decoded body or a stream.
type fakeReq struct {
	method, scheme, authority, path string
	fields, trailers                [][2]string
	body                            string
	stream                          *httpmsg.BodyStream
	client, server                  netip.AddrPort
	released                        atomic.Int32
	wf, wt                          []httpmsg.Field // fields and trailers as bytes
	cm, cs, ca, cp                  cachedBytes     // method, scheme, authority, path as bytes
}

// cachedBytes is a string as bytes, made again only when the string
// changes: a framer's view does not allocate, and neither does the fake's.
type cachedBytes struct {
	s string
	b []byte
}

func (c *cachedBytes) get(s string) []byte {
	if s == "" {
		return nil
	}
	if c.b == nil || c.s != s {
		c.s, c.b = s, []byte(s)
	}
	return c.b
}

var _ httpmsg.Request = (*fakeReq)(nil)

func newFake(method, authority, path string, fields ...[2]string) *fakeReq {
	return &fakeReq{method: method, scheme: "http", authority: authority, path: path, fields: fields,
		client: testClient, server: testServer}
}

// wire returns kv as fields, made once: a framer's view does not allocate.
func wire(cache *[]httpmsg.Field, kv [][2]string) []httpmsg.Field {
	if len(*cache) != len(kv) {
		*cache = (*cache)[:0]
		for _, f := range kv {
			*cache = append(*cache, httpmsg.Field{Name: []byte(f[0]), Value: []byte(f[1])})
		}
	}
	return *cache
}

func bs(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func (f *fakeReq) Proto() httpmsg.Proto { return httpmsg.HTTP2 }
func (f *fakeReq) StreamID() uint32     { return 1 }
func (f *fakeReq) Method() []byte       { return f.cm.get(f.method) }
func (f *fakeReq) Scheme() []byte       { return f.cs.get(f.scheme) }
func (f *fakeReq) Authority() []byte    { return f.ca.get(f.authority) }
func (f *fakeReq) Path() []byte         { return f.cp.get(f.path) }
func (f *fakeReq) Header(name string) ([]byte, bool) {
	for _, kv := range f.fields {
		if strings.EqualFold(kv[0], name) {
			return []byte(kv[1]), true
		}
	}
	return nil, false
}
func (f *fakeReq) VisitHeaders(fn func(name, value []byte) bool) {
	for _, kv := range wire(&f.wf, f.fields) {
		if !fn(kv.Name, kv.Value) {
			return
		}
	}
}
func (f *fakeReq) VisitTrailers(fn func(name, value []byte) bool) {
	for _, kv := range wire(&f.wt, f.trailers) {
		if !fn(kv.Name, kv.Value) {
			return
		}
	}
}
func (f *fakeReq) BodyLen() int64 {
	if f.stream != nil {
		return -1
	}
	return int64(len(f.body))
}
func (f *fakeReq) VisitBody(fn func(b []byte) bool) {
	if f.stream == nil && f.body != "" {
		// In two pieces, as a framer's DATA frames may come.
		h := len(f.body) / 2
		if fn([]byte(f.body[:h])) {
			fn([]byte(f.body[h:]))
		}
	}
}
func (f *fakeReq) Stream() *httpmsg.BodyStream { return f.stream }
func (f *fakeReq) Client() netip.AddrPort      { return f.client }
func (f *fakeReq) Server() netip.AddrPort      { return f.server }
func (f *fakeReq) Time() time.Time             { return time.Time{} }
func (f *fakeReq) Release()                    { f.released.Add(1) }

// checkOnce checks that every request of n clients with per sequence
// numbers reached the server exactly once (key: client address in
// X-Forwarded-For, X-Seq).
func checkOnce(t *testing.T, reqs []recorded, clients, per int) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range reqs {
		seen[r.Header.Get("X-Forwarded-For")+"/"+r.Header.Get("X-Seq")]++
	}
	for c := range clients {
		for i := range per {
			k := clientAddr(c).Addr().String() + "/" + strconv.Itoa(i)
			if seen[k] != 1 {
				t.Errorf("request %s arrived %d times", k, seen[k])
			}
		}
	}
	if len(reqs) != clients*per {
		t.Errorf("%d requests arrived, want %d", len(reqs), clients*per)
	}
}

// checkStats checks counters of st by their summary names: queued,
// mirrored, retried, requeued, opened, failed_REASON, dropped_REASON,
// closed_CAUSE.
func checkStats(t *testing.T, st *Stats, want map[string]uint64) {
	t.Helper()
	sn := st.Snapshot()
	for k, v := range want {
		var got uint64
		switch {
		case k == "queued":
			got = sn.Queued
		case k == "mirrored":
			got = sn.Mirrored
		case k == "sent":
			got = sn.Sent
		case k == "retried":
			got = sn.Retried
		case k == "requeued":
			got = sn.Requeued
		case k == "opened":
			got = sn.ConnectionsOpened
		case strings.HasPrefix(k, "failed_"):
			got = sn.Failed[k[len("failed_"):]]
		case strings.HasPrefix(k, "dropped_"):
			got = sn.Dropped[k[len("dropped_"):]]
		case strings.HasPrefix(k, "closed_"):
			got = sn.ConnectionsClosed[k[len("closed_"):]]
		default:
			t.Fatalf("checkStats: unknown counter %q", k)
		}
		if got != v {
			t.Errorf("%s = %d, want %d (%v)", k, got, v, sn)
		}
	}
}
