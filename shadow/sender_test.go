package shadow

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

func TestSenderMirrorsToHTTPServer(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL})
	const clients, per = 4, 40
	for i := range per {
		for c := range clients {
			if !s.Send(request(t, clientAddr(c), i, bodyFor(c, i)), nil) {
				t.Fatal("Send refused a request")
			}
		}
	}
	st := s.Stats()
	waitFor(t, "all responses", func() bool { return st.Mirrored.Load() == clients*per })
	closeSender(t, s)

	reqs := rc.all()
	checkOnce(t, reqs, clients, per)
	for _, r := range reqs {
		seq, _ := strconv.Atoi(r.Header.Get("X-Seq"))
		var c int
		for c = 0; c < clients; c++ {
			if r.Header.Get("X-Forwarded-For") == clientAddr(c).Addr().String() {
				break
			}
		}
		if r.Host != "shop.example-shadow:8080" || r.Proto != "HTTP/1.1" {
			t.Errorf("Host %q proto %q", r.Host, r.Proto)
		}
		if want := bodyFor(c, seq); r.Body != want {
			t.Errorf("client %d request %d: body %q, want %q", c, seq, r.Body, want)
		}
		if !strings.HasPrefix(r.URI, "/item/"+strconv.Itoa(seq)) {
			t.Errorf("request %d: target %q", seq, r.URI)
		}
	}
	if st.Status(200) != clients*per || failures(st) != 0 || st.Sent.Load() != clients*per {
		t.Errorf("stats: %v", st.Snapshot())
	}
	if n := st.ConnectionsOpened.Load(); n != uint64(rc.conns.Load()) || n == 0 || int64(n) < st.PeakInFlight.Load()/int64(1) {
		t.Errorf("connections: sender %d, server %d, peak in flight %d", n, rc.conns.Load(), st.PeakInFlight.Load())
	}
}

// One request at a time reuses one connection: keep-alive.
func TestSenderReusesConnection(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL})
	st := s.Stats()
	for i := range 20 {
		s.Send(request(t, testClient, i, bodyFor(0, i)), nil)
		waitFor(t, "answer", func() bool { return st.Mirrored.Load() == uint64(i+1) })
	}
	closeSender(t, s)
	checkOnce(t, rc.all(), 1, 20)
	checkStats(t, st, map[string]uint64{"opened": 1, "closed_shutdown": 1, "mirrored": 20})
	if rc.conns.Load() != 1 || st.PeakInFlight.Load() != 1 {
		t.Errorf("server saw %d connections, peak %d", rc.conns.Load(), st.PeakInFlight.Load())
	}
}

func TestSenderChunkedRequestBody(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Ordered: true})
	s.Send(parseRequest(t, "POST /up HTTP/1.1\r\nHost: up.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"), nil)
	s.Send(parseRequest(t, "GET /after HTTP/1.1\r\nHost: up.example\r\n\r\n"), nil)
	waitFor(t, "responses", func() bool { return s.Stats().Mirrored.Load() == 2 })
	closeSender(t, s)
	reqs := rc.all()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	up := reqs[0]
	if up.Body != "hello world" || up.Trailer.Get("X-Sum") != "42" || len(up.TransferEncoding) != 1 || up.Host != "up.example-shadow" {
		t.Errorf("chunked request arrived as %+v", up)
	}
	if reqs[1].URI != "/after" {
		t.Errorf("second request %+v", reqs[1])
	}
}

func TestSenderResponseShapes(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "1000")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		case "/chunked":
			w.Header().Set("Trailer", "X-T")
			io.WriteString(w, "part1")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-T", "done")
		case "/big":
			io.WriteString(w, big)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		default:
			io.WriteString(w, "ok")
		}
	})
	s := newSender(t, SenderConfig{URL: ts.URL, Ordered: true})
	reqs := []string{
		"HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /nocontent HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /notmodified HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /continue HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
		"GET /big HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /close HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /after1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /after2 HTTP/1.1\r\nHost: h\r\n\r\n",
	}
	for _, raw := range reqs {
		s.Send(parseRequest(t, raw), nil)
	}
	st := s.Stats()
	waitFor(t, "responses", func() bool { return st.Mirrored.Load() == uint64(len(reqs)) })
	closeSender(t, s)
	got := rc.all()
	if len(got) != len(reqs) {
		t.Fatalf("server saw %d requests, want %d", len(got), len(reqs))
	}
	for i, r := range got {
		if want := strings.Fields(reqs[i])[1]; r.URI != want {
			t.Errorf("arrival %d: %s, want %s", i, r.URI, want)
		}
	}
	if got[4].Body != "body" {
		t.Errorf("Expect: 100-continue body %q", got[4].Body)
	}
	if st.Status(200) != 7 || st.Status(204) != 1 || st.Status(304) != 1 || failures(st) != 0 {
		t.Errorf("stats: %v", st.Snapshot())
	}
	// Ordered, one at a time: one connection up to /close, a second after.
	checkStats(t, st, map[string]uint64{"opened": 2, "closed_connection_close": 1, "closed_shutdown": 1, "retried": 0, "requeued": 0})
}

func TestSenderHTTP10WithoutHost(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Ordered: true})
	for range 3 {
		s.Send(parseRequest(t, "GET /legacy HTTP/1.0\r\nUser-Agent: old\r\n\r\n"), nil)
	}
	st := s.Stats()
	waitFor(t, "responses", func() bool { return st.Mirrored.Load() == 3 })
	closeSender(t, s)
	for _, r := range rc.all() {
		if r.Host != "198.18.0.2-shadow:8080" || r.Proto != "HTTP/1.0" {
			t.Errorf("request %+v", r)
		}
	}
	// "Connection: keep-alive" kept the one connection open.
	checkStats(t, st, map[string]uint64{"opened": 1, "mirrored": 3})
}

func TestSenderHTTPSResumesSessions(t *testing.T) {
	// The handshake that fails on purpose below would be logged.
	var resumed, full atomic.Int32
	tune := func(ts *httptest.Server) {
		ts.Config.ErrorLog = log.New(io.Discard, "", 0)
		ts.TLS = &tls.Config{VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.DidResume {
				resumed.Add(1)
			} else {
				full.Add(1)
			}
			return nil
		}}
	}
	release := make(chan struct{})
	ts, rc := newRecordingServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	}, tune)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	s := newSender(t, SenderConfig{URL: ts.URL, TLSConfig: &tls.Config{RootCAs: roots}})
	st := s.Stats()
	// One request first, so that the session ticket is in the cache.
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "first answer", func() bool { return st.Mirrored.Load() == 1 })
	// The slow request holds the one connection; the next needs another,
	// which resumes the session.
	s.Send(parseRequest(t, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"), nil)
	waitFor(t, "slow request", func() bool { return len(rc.all()) == 2 })
	s.Send(request(t, testClient, 1, "with a body"), nil)
	waitFor(t, "third answer", func() bool { return st.Mirrored.Load() == 2 })
	close(release)
	waitFor(t, "slow answer", func() bool { return st.Mirrored.Load() == 3 })
	closeSender(t, s)
	for _, r := range rc.all() {
		if !r.TLS || r.Proto != "HTTP/1.1" {
			t.Errorf("request %+v", r)
		}
	}
	if st.ConnectionsOpened.Load() != 2 || full.Load() != 1 || resumed.Load() != 1 {
		t.Errorf("%d connections, %d full handshakes, %d resumed", st.ConnectionsOpened.Load(), full.Load(), resumed.Load())
	}

	// Without the test CA the handshake fails: reason tls.
	bad := newSender(t, SenderConfig{URL: ts.URL})
	bad.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "tls failure", func() bool { return bad.Stats().Failed[FailTLS].Load() == 1 })
	closeSender(t, bad)
	checkStats(t, bad.Stats(), map[string]uint64{"opened": 0, "mirrored": 0})
}

// A stuck answer holds its own connection and nothing else: while one
// endless stream (SSE) and one endless chunked download are open, a hundred
// quick requests from the same client connection all complete.
func TestSenderStuckAnswerDelaysNothing(t *testing.T) {
	var streaming sync.WaitGroup
	stop := make(chan struct{})
	ts, _ := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events", "/download":
			streaming.Add(1)
			defer streaming.Done()
			if r.URL.Path == "/events" {
				w.Header().Set("Content-Type", "text/event-stream")
			}
			for {
				if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-stop:
					return
				case <-r.Context().Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		default:
			io.WriteString(w, "ok")
		}
	})
	t.Cleanup(func() { close(stop) })
	s := newSender(t, SenderConfig{URL: ts.URL, Timeout: time.Minute})
	s.Send(parseRequest(t, "GET /events HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n"), "events")
	s.Send(parseRequest(t, "GET /download HTTP/1.1\r\nHost: h\r\n\r\n"), "download")
	st := s.Stats()
	waitFor(t, "both streams open", func() bool { return st.ConnectionsBusy.Load() == 2 })
	for i := range 100 {
		s.Send(request(t, testClient, i, bodyFor(0, i)), nil)
	}
	waitFor(t, "quick answers", func() bool { return st.Mirrored.Load() == 100 })
	if st.InFlight.Load() != 2 || st.ConnectionsBusy.Load() != 2 {
		t.Errorf("the streams ended early: %v", st.Snapshot())
	}
	// Close gives up on the streams: they fail with shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close returned nil with two endless answers")
	}
	checkClosed(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 100, "failed_shutdown": 2})
}

// A request of the neutral view with no wire form (as HTTP/2 captures it)
// goes to an HTTP/1 shadow as HTTP/1.1.
func TestSenderNeutralRequests(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Ordered: true})
	get := newFake("GET", "api.example:8443", "/v1/items?x=1",
		[2]string{"user-agent", "grpc-go"}, [2]string{"cookie", "a=1"}, [2]string{"cookie", "b=2"},
		[2]string{"te", "trailers"}, [2]string{"x-forwarded-for", "203.0.113.1"})
	post := newFake("POST", "api.example", "/upload", [2]string{"content-type", "application/grpc"},
		[2]string{"content-length", "11"})
	post.body = "hello world"
	post.trailers = [][2]string{{"grpc-status", "0"}}
	put := newFake("PUT", "", "/plain")
	put.body = "0123456789"
	stream := newFake("POST", "api.example", "/stream")
	stream.stream = httpmsg.NewBodyStream(1 << 20)
	for _, r := range []*fakeReq{get, post, put, stream} {
		if !s.Send(r, nil) {
			t.Fatal("refused")
		}
	}
	go func() {
		for i := range 5 {
			stream.stream.Write([]byte(fmt.Sprintf("part%d;", i)))
			time.Sleep(time.Millisecond)
		}
		stream.stream.End([]httpmsg.Field{{Name: []byte("x-checksum"), Value: []byte("abc")}})
	}()
	st := s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 4 })
	closeSender(t, s)
	reqs := rc.all()
	if len(reqs) != 4 {
		t.Fatalf("%d requests: %+v", len(reqs), reqs)
	}
	g, p, u, sr := reqs[0], reqs[1], reqs[2], reqs[3]
	if g.Method != "GET" || g.URI != "/v1/items?x=1" || g.Host != "api.example-shadow:8443" || g.Proto != "HTTP/1.1" ||
		g.Header.Get("Cookie") != "a=1; b=2" || len(g.Header["Cookie"]) != 1 || g.Header.Get("Te") != "" ||
		g.Header.Get("X-Forwarded-For") != "203.0.113.1, 192.0.2.10" || g.Header.Get("User-Agent") != "grpc-go" {
		t.Errorf("GET arrived as %+v", g)
	}
	if p.Body != "hello world" || p.Trailer.Get("Grpc-Status") != "0" || len(p.TransferEncoding) != 1 ||
		p.Header.Get("Content-Type") != "application/grpc" {
		t.Errorf("POST with trailers arrived as %+v", p)
	}
	if u.Body != "0123456789" || u.Host != "198.18.0.2-shadow:8080" || len(u.TransferEncoding) != 0 {
		t.Errorf("PUT arrived as %+v", u)
	}
	if sr.Body != "part0;part1;part2;part3;part4;" || sr.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("streamed POST arrived as %+v", sr)
	}
	for _, r := range []*fakeReq{get, post, put, stream} {
		if n := r.released.Load(); n != 1 {
			t.Errorf("%s %s released %d times", r.method, r.path, n)
		}
	}
}

// A body stream that ends early fails its request (aborted) and does not
// take the connection with it for the others.
func TestSenderStreamAborted(t *testing.T) {
	var complete atomic.Int32
	srv := newRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			complete.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	s := newSender(t, SenderConfig{URL: srv.URL()})
	up := newFake("POST", "a", "/up")
	up.stream = httpmsg.NewBodyStream(1 << 10)
	s.Send(up, nil)
	up.stream.Write([]byte("some"))
	up.stream.Abort(io.ErrUnexpectedEOF)
	st := s.Stats()
	waitFor(t, "failure", func() bool { return st.Failed[FailAborted].Load() == 1 })
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "answer", func() bool { return st.Mirrored.Load() == 1 })
	closeSender(t, s)
	if complete.Load() != 1 || up.released.Load() != 1 {
		t.Errorf("server read %d whole requests, released %d", complete.Load(), up.released.Load())
	}
}

// A streamed body's Timeout counts from its end: a body that streams for
// longer than Timeout is not cut, and its answer is waited for.
func TestSenderStreamOutlastsTimeout(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Timeout: 200 * time.Millisecond})
	up := newFake("POST", "a", "/up")
	up.stream = httpmsg.NewBodyStream(1 << 10)
	s.Send(up, nil)
	for i := range 5 {
		up.stream.Write([]byte(fmt.Sprintf("part%d;", i)))
		time.Sleep(100 * time.Millisecond)
	}
	up.stream.End(nil)
	st := s.Stats()
	waitFor(t, "the end", func() bool { return st.Mirrored.Load()+failures(st) == 1 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 1, "failed_timeout": 0})
	if reqs := rc.all(); len(reqs) != 1 || reqs[0].Body != "part0;part1;part2;part3;part4;" {
		t.Errorf("the shadow got %+v", reqs)
	}
}

// The Answer callback gets every request's end once, with its tag: the
// answer's status, fields in order, trailers and body up to the cap, or why
// it failed.
func TestSenderAnswer(t *testing.T) {
	body := strings.Repeat("0123456789", 10)
	srv := newRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch req.URL.Path {
			case "/chunked":
				fmt.Fprintf(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nZ-First: 1\r\nA-Second: 2\r\nZ-First: 3\r\n"+
					"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
					"5;ext=x\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Sum: 42\r\nX-Other:  7 \r\n\r\n", body[:5], len(body)-5, body[5:])
			case "/length":
				fmt.Fprintf(c, "HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			case "/short":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			case "/eof":
				fmt.Fprintf(c, "HTTP/1.0 200 OK\r\n\r\n%s", body)
				finish(c)
				return
			case "/broken":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
				finish(c)
				return
			}
		}
	})
	var mu sync.Mutex
	got := map[string][]*httpmsg.Answer{}
	fails := map[string]FailReason{}
	s := newSender(t, SenderConfig{URL: srv.URL(), AnswerBodyCap: 32, Ordered: true,
		Answer: func(tag any, a *httpmsg.Answer, fail FailReason, ok bool) {
			mu.Lock()
			defer mu.Unlock()
			if ok {
				got[tag.(string)] = append(got[tag.(string)], a)
			} else {
				fails[tag.(string)] = fail
			}
		}})
	t0 := time.Now()
	for _, p := range []string{"/chunked", "/length", "/short", "/eof", "/broken"} {
		s.Send(parseRequest(t, "GET "+p+" HTTP/1.1\r\nHost: h\r\n\r\n"), p)
	}
	closeSender(t, s)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range []string{"/chunked", "/length", "/short", "/eof"} {
		if len(got[p]) != 1 {
			t.Fatalf("%s: %d answers", p, len(got[p]))
		}
	}
	if len(fails) != 1 || fails["/broken"] != FailReset {
		t.Errorf("failures %v", fails)
	}
	field := func(fs []httpmsg.Field) string {
		var b strings.Builder
		for _, f := range fs {
			fmt.Fprintf(&b, "%s=%s;", f.Name, f.Value)
		}
		return b.String()
	}
	a := got["/chunked"][0]
	if a.Status != 201 || a.Proto != httpmsg.HTTP11 ||
		field(a.Header) != "Z-First=1;A-Second=2;Z-First=3;Transfer-Encoding=chunked;Trailer=X-Sum;" ||
		field(a.Trailer) != "X-Sum=42;X-Other=7;" || string(a.Body) != body[:32] || a.BodyLen != 100 || !a.Truncated ||
		a.Start.Before(t0) || a.End.Before(a.Start) {
		t.Errorf("chunked answer %d %q %q %q %d %v", a.Status, field(a.Header), field(a.Trailer), a.Body, a.BodyLen, a.Truncated)
	}
	if v, ok := a.Get("a-second"); !ok || string(v) != "2" {
		t.Errorf("Get: %q %v", v, ok)
	}
	if a := got["/length"][0]; a.Status != 404 || string(a.Body) != body[:32] || a.BodyLen != 100 || !a.Truncated {
		t.Errorf("length answer %+v", a)
	}
	if a := got["/short"][0]; string(a.Body) != "ok" || a.BodyLen != 2 || a.Truncated || a.Trailer != nil {
		t.Errorf("short answer %+v", a)
	}
	if a := got["/eof"][0]; a.Proto != httpmsg.HTTP10 || a.BodyLen != 100 || len(a.Body) != 32 {
		t.Errorf("read-to-close answer %+v", a)
	}
}

func TestNewHTTP1Errors(t *testing.T) {
	for _, tc := range []struct {
		cfg SenderConfig
		err string
	}{
		{SenderConfig{URL: ""}, "want http"},
		{SenderConfig{URL: "ftp://x"}, "want http"},
		{SenderConfig{URL: "http://"}, "missing host"},
		{SenderConfig{URL: "http://x/api"}, "path"},
		{SenderConfig{URL: "http://x?a=1"}, "query"},
		{SenderConfig{URL: "http://u:p@x"}, "host[:port]"},
		{SenderConfig{URL: "http://x:0"}, "invalid port"},
		{SenderConfig{URL: "http://x", Timeout: -time.Second}, "timeout"},
		{SenderConfig{URL: "http://x", IdleTimeout: -time.Second}, "idle timeout"},
		{SenderConfig{URL: "http://x", MaxConnections: -1}, "max connections"},
		{SenderConfig{URL: "http://x", MaxPending: -1}, "max pending"},
		{SenderConfig{URL: "http://x", MaxRequests: -1}, "max requests"},
		{SenderConfig{URL: "http://x", Pipeline: -1}, "pipeline"},
		{SenderConfig{URL: "http://x", QueueBytes: -1}, "queue bytes"},
	} {
		if _, err := NewHTTP1(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.err)
		}
	}
	s, err := NewHTTP1(SenderConfig{URL: "https://[fd00::5]"})
	if err != nil || s.ep.addr != "[fd00::5]:443" || s.ep.tls.ServerName != "fd00::5" ||
		s.ep.tls.ClientSessionCache == nil || len(s.ep.tls.NextProtos) != 1 || s.ep.tls.NextProtos[0] != "http/1.1" ||
		s.rw.scheme != "https" {
		t.Fatalf("https sender: %v %+v", err, s)
	}
	d := s.set
	if d.timeout != DefaultTimeout || d.idle != DefaultIdleTimeout || d.maxConns != 1024 || d.maxPending != 1024 ||
		d.maxRequests != 1024 || d.maxBytes != 64<<20 || d.pipe != 1 || d.answerCap != DefaultAnswerBodyCap {
		t.Errorf("defaults %+v", d)
	}
	closeSender(t, s)
}
