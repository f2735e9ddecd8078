package shadow

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSenderMirrorsToHTTPServer(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 2})
	s.Start()
	const clients, per = 4, 40
	for i := range per {
		for c := range clients {
			if !s.Send(request(t, clientAddr(c), i, bodyFor(c, i))) {
				t.Fatal("Send refused a request")
			}
		}
	}
	st := s.Stats()
	waitFor(t, "all responses", func() bool { return st.Mirrored.Load() == clients*per })
	closeSender(t, s)

	reqs := rc.all()
	for _, r := range reqs {
		seq, _ := strconv.Atoi(r.Header.Get("X-Seq"))
		var c int
		for c = 0; c < clients; c++ {
			if r.Header.Get("X-Forwarded-For") == clientAddr(c).Addr().String() {
				break
			}
		}
		if r.Host != "shop.example-shadow:8080" {
			t.Errorf("Host %q", r.Host)
		}
		if want := bodyFor(c, seq); r.Body != want {
			t.Errorf("client %d request %d: body %q, want %q", c, seq, r.Body, want)
		}
		if !strings.HasPrefix(r.URI, "/item/"+strconv.Itoa(seq)) {
			t.Errorf("request %d: target %q", seq, r.URI)
		}
	}
	byClient := seqsByClient(t, reqs)
	if len(byClient) != clients {
		t.Errorf("XFF values %v", byClient)
	}
	for c, seqs := range byClient {
		checkInOrderOnce(t, c, seqs, per)
	}
	if st.Status(200) != clients*per || failures(st) != 0 || st.Sent.Load() != clients*per {
		t.Errorf("stats: %v", st.Snapshot())
	}
	if n := st.ConnectionsOpened.Load(); n > 2 {
		t.Errorf("%d connections for 2 workers", n)
	}
}

func TestSenderPipelines(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inFlight  int
		n         int
		maxWrites int64
	}{
		{"batches", 0, 200, 20},
		{"one in flight", 1, 20, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, rc := newRecordingServer(t, false, nil)
			var writes atomic.Int64
			s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1, MaxInFlight: tc.inFlight, Dial: countingDial(&writes)})
			// Queue everything first so the worker finds a full queue.
			for i := range tc.n {
				s.Send(request(t, testClient, i, bodyFor(0, i)))
			}
			s.Start()
			st := s.Stats()
			waitFor(t, "all responses", func() bool { return st.Mirrored.Load() == uint64(tc.n) })
			closeSender(t, s)
			t.Logf("%d writes for %d requests", writes.Load(), tc.n)
			if w := writes.Load(); w > tc.maxWrites {
				t.Errorf("%d writes for %d requests, want at most %d", w, tc.n, tc.maxWrites)
			}
			reqs := rc.all()
			for _, r := range reqs {
				seq, _ := strconv.Atoi(r.Header.Get("X-Seq"))
				if r.Body != bodyFor(0, seq) {
					t.Errorf("request %d: body %q", seq, r.Body)
				}
			}
			checkInOrderOnce(t, "one", seqsByClient(t, reqs)[testClient.Addr().String()], tc.n)
			if rc.conns.Load() != 1 {
				t.Errorf("%d connections", rc.conns.Load())
			}
		})
	}
}

func TestSenderChunkedRequestBody(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1})
	s.Send(parseRequest(t, "POST /up HTTP/1.1\r\nHost: up.example\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"))
	s.Send(parseRequest(t, "GET /after HTTP/1.1\r\nHost: up.example\r\n\r\n"))
	s.Start()
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
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1})
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
		s.Send(parseRequest(t, raw))
	}
	s.Start()
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
	// One connection up to /close; the two requests written after it were
	// never read by the server and went out again on a second one.
	if st.ConnectionsOpened.Load() != 2 || st.Requeued.Load() != 2 || rc.conns.Load() != 2 {
		t.Errorf("connections %d (server %d), requeued %d", st.ConnectionsOpened.Load(), rc.conns.Load(), st.Requeued.Load())
	}
}

func TestSenderRequeue(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perConn  int
		last     string
		requeued uint64
		conns    int
	}{
		{"read to close", 1, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends with the connection", 4 + 3 + 2 + 1, 5},
		{"HTTP/1.0 without keep-alive", 2, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 3 + 1, 3},
		{"connection close after 3", 3, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 17 + 14 + 11 + 8 + 5 + 2, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rr rawRecorder
			srv := newRawServer(t, answerThenClose(&rr, tc.perConn, tc.last))
			s := newSender(t, SenderConfig{URL: srv.URL(), Workers: 1})
			n := 5
			if tc.perConn == 3 {
				n = 20
			}
			for i := range n {
				s.Send(request(t, testClient, i, ""))
			}
			s.Start()
			st := s.Stats()
			waitFor(t, "responses", func() bool { return st.Mirrored.Load() == uint64(n) })
			closeSender(t, s)
			checkInOrderOnce(t, "one", rr.get(), n)
			if st.Requeued.Load() != tc.requeued || st.ConnectionsOpened.Load() != uint64(tc.conns) ||
				srv.accepts() != tc.conns || failures(st) != 0 {
				t.Errorf("requeued %d connections %d (server %d), want %d and %d: %v",
					st.Requeued.Load(), st.ConnectionsOpened.Load(), srv.accepts(), tc.requeued, tc.conns, st.Snapshot())
			}
		})
	}
}

func TestSenderHTTPS(t *testing.T) {
	// The handshake that fails on purpose below would be logged.
	quiet := func(hs *http.Server) { hs.ErrorLog = log.New(io.Discard, "", 0) }
	ts, rc := newRecordingServer(t, true, nil, quiet)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1, TLSConfig: &tls.Config{RootCAs: roots}})
	s.Start()
	for i := range 5 {
		s.Send(request(t, testClient, i, bodyFor(0, i)))
	}
	st := s.Stats()
	waitFor(t, "responses", func() bool { return st.Mirrored.Load() == 5 })
	closeSender(t, s)
	for _, r := range rc.all() {
		if !r.TLS || r.Host != "shop.example-shadow:8080" || r.Proto != "HTTP/1.1" {
			t.Errorf("request %+v", r)
		}
	}
	if st.ConnectionsOpened.Load() != 1 {
		t.Errorf("%d connections", st.ConnectionsOpened.Load())
	}

	// Without the test CA the handshake fails: reason tls.
	bad := newSender(t, SenderConfig{URL: ts.URL, Workers: 1})
	bad.Start()
	bad.Send(request(t, testClient, 0, ""))
	waitFor(t, "tls failure", func() bool { return bad.Stats().Failed[FailTLS].Load() == 1 })
	closeSender(t, bad)
	if bad.Stats().ConnectionsOpened.Load() != 0 || bad.Stats().Mirrored.Load() != 0 {
		t.Errorf("stats: %v", bad.Stats().Snapshot())
	}
}

func TestSenderConnectionsEqualWorkers(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 3})
	s.Start()
	const clients, per = 60, 3
	for i := range per {
		for c := range clients {
			s.Send(request(t, clientAddr(c), i, ""))
		}
	}
	st := s.Stats()
	waitFor(t, "responses", func() bool { return st.Mirrored.Load() == clients*per })
	closeSender(t, s)
	if rc.conns.Load() != 3 || st.ConnectionsOpened.Load() != 3 {
		t.Errorf("server accepted %d connections, sender opened %d; want 3", rc.conns.Load(), st.ConnectionsOpened.Load())
	}
}

func TestSenderServerClosesIdleConnection(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil, func(hs *http.Server) { hs.IdleTimeout = 30 * time.Millisecond })
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1})
	s.Start()
	st := s.Stats()
	s.Send(request(t, testClient, 0, ""))
	waitFor(t, "first response", func() bool { return st.Mirrored.Load() == 1 })
	// The reader notices the server's close while idle, so the next request
	// goes out on a new connection instead of failing on the dead one.
	waitFor(t, "idle close", func() bool {
		w := s.workers[0]
		w.connMu.Lock()
		defer w.connMu.Unlock()
		return w.cur == nil
	})
	s.Send(request(t, testClient, 1, ""))
	waitFor(t, "second response", func() bool { return st.Mirrored.Load() == 2 })
	closeSender(t, s)
	if failures(st) != 0 || st.ConnectionsOpened.Load() != 2 || len(rc.all()) != 2 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestSenderHTTP10WithoutHost(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1})
	for range 3 {
		s.Send(parseRequest(t, "GET /legacy HTTP/1.0\r\nUser-Agent: old\r\n\r\n"))
	}
	s.Start()
	st := s.Stats()
	waitFor(t, "responses", func() bool { return st.Mirrored.Load() == 3 })
	closeSender(t, s)
	for _, r := range rc.all() {
		if r.Host != "198.18.0.2-shadow:8080" || r.Proto != "HTTP/1.0" {
			t.Errorf("request %+v", r)
		}
	}
	// "Connection: keep-alive" kept the one connection open.
	if st.ConnectionsOpened.Load() != 1 || failures(st) != 0 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestNewSenderErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg SenderConfig
		err string
	}{
		{SenderConfig{URL: ""}, "want http"},
		{SenderConfig{URL: "ftp://x"}, "want http"},
		{SenderConfig{URL: "x:80"}, "want http"},
		{SenderConfig{URL: "http://"}, "missing host"},
		{SenderConfig{URL: "http://x/api"}, "path"},
		{SenderConfig{URL: "http://x?a=1"}, "query"},
		{SenderConfig{URL: "http://x#f"}, "fragment"},
		{SenderConfig{URL: "http://u:p@x"}, "host[:port]"},
		{SenderConfig{URL: "http://x:0"}, "invalid port"},
		{SenderConfig{URL: "http://x:65536"}, "invalid port"},
		{SenderConfig{URL: "http://x", Workers: -1}, "workers"},
		{SenderConfig{URL: "http://x", Timeout: -time.Second}, "timeout"},
		{SenderConfig{URL: "http://x", QueueRequests: -1}, "queue length"},
		{SenderConfig{URL: "http://x", QueueBytes: -1}, "queue bytes"},
		{SenderConfig{URL: "http://x", MaxInFlight: -1}, "in flight"},
	} {
		if _, err := NewSender(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.err)
		}
	}
	for _, tc := range []struct{ url, addr string }{
		{"http://shadow", "shadow:80"},
		{"https://shadow/", "shadow:443"},
		{"HTTP://Shadow:8080", "Shadow:8080"},
		{"https://[fd00::5]", "[fd00::5]:443"},
	} {
		addr, _, _, err := parseShadowURL(tc.url)
		if err != nil || addr != tc.addr {
			t.Errorf("%s: %q %v, want %q", tc.url, addr, err, tc.addr)
		}
	}
}
