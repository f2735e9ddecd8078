package shadow

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestTimeoutHoldsOnlyItsConnection(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // reads, never answers
	s := newSender(t, SenderConfig{URL: srv.URL(), Timeout: 200 * time.Millisecond})
	for i := range 5 {
		s.Send(request(t, clientAddr(i), 0, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "failures", func() bool { return failures(st) == 5 })
	closeSender(t, s)
	// Each on its own connection: each times out, none is aborted.
	checkStats(t, st, map[string]uint64{"failed_timeout": 5, "failed_aborted": 0, "opened": 5, "closed_timeout": 5})
}

func TestPendingTimeout(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	s := newSender(t, SenderConfig{URL: srv.URL(), MaxConnections: 1, Timeout: 200 * time.Millisecond})
	for i := range 3 {
		s.Send(request(t, clientAddr(i), 0, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "failures", func() bool { return failures(st) == 3 })
	closeSender(t, s)
	// The two that waited for the one connection time out waiting (a
	// second connection may be opened for them once the first is gone).
	checkStats(t, st, map[string]uint64{"failed_timeout": 3, "mirrored": 0})
	if st.PeakInFlight.Load() != 1 {
		t.Errorf("peak in flight %d with one connection", st.PeakInFlight.Load())
	}
}

// Connections the shadow ends: after each answer (Connection: close), after
// a few (keep-alive request limits), HTTP/1.0 without keep-alive, bodies
// delimited by the close. Nothing fails, nothing is sent twice.
func TestShadowEndsConnections(t *testing.T) {
	const closeAnswer = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
	for _, tc := range []struct {
		name    string
		perConn int
		last    string
	}{
		{"connection close", 1, closeAnswer},
		{"keep-alive limit", 3, closeAnswer},
		{"HTTP/1.0 without keep-alive", 1, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"read to close", 1, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends with the connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One at a time: the counts are exact.
			var rr rawRecorder
			srv := newRawServer(t, answerThenClose(&rr, tc.perConn, tc.last))
			s := newSender(t, SenderConfig{URL: srv.URL()})
			st := s.Stats()
			const n = 10
			for i := range n {
				s.Send(request(t, testClient, i, ""), nil)
				waitFor(t, "answer", func() bool { return st.Mirrored.Load() == uint64(i+1) })
			}
			closeSender(t, s)
			checkInOrderOnce(t, "one", rr.get(), n)
			conns := (n + tc.perConn - 1) / tc.perConn
			closedByAnswer := n / tc.perConn
			checkStats(t, st, map[string]uint64{"mirrored": n, "retried": 0, "requeued": 0, "opened": uint64(conns),
				"closed_connection_close": uint64(closedByAnswer), "closed_shutdown": uint64(conns - closedByAnswer)})
			if srv.accepts() != conns {
				t.Errorf("server accepted %d connections, want %d", srv.accepts(), conns)
			}

			// All at once.
			var rr2 rawRecorder
			srv2 := newRawServer(t, answerThenClose(&rr2, tc.perConn, tc.last))
			s2 := newSender(t, SenderConfig{URL: srv2.URL()})
			for i := range 50 {
				s2.Send(request(t, testClient, i, bodyFor(0, i)), nil)
			}
			waitFor(t, "answers", func() bool { return s2.Stats().Mirrored.Load() == 50 })
			closeSender(t, s2)
			seen := map[int]int{}
			for _, q := range rr2.get() {
				seen[q]++
			}
			for i := range 50 {
				if seen[i] != 1 {
					t.Errorf("request %d arrived %d times", i, seen[i])
				}
			}
			checkStats(t, s2.Stats(), map[string]uint64{"retried": 0})
		})
	}
}

// The reader notices a shadow closing an idle connection before the next
// request would go out on it.
func TestShadowClosesIdleConnection(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil, func(ts *httptest.Server) { ts.Config.IdleTimeout = 30 * time.Millisecond })
	s := newSender(t, SenderConfig{URL: ts.URL})
	st := s.Stats()
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "first response", func() bool { return st.Mirrored.Load() == 1 })
	waitFor(t, "idle close", func() bool { return st.ConnectionsClosed[CloseShadowClosed].Load() == 1 })
	s.Send(request(t, testClient, 1, ""), nil)
	waitFor(t, "second response", func() bool { return st.Mirrored.Load() == 2 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"opened": 2, "retried": 0})
	if failures(st) != 0 || len(rc.all()) != 2 {
		t.Errorf("stats: %v", st.Snapshot())
	}

	// A shadow that says 408 before closing an idle connection.
	srv := newRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if req, err := http.ReadRequest(br); err == nil {
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			time.Sleep(10 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
			finish(c)
		}
	})
	s = newSender(t, SenderConfig{URL: srv.URL()})
	st = s.Stats()
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "408 close", func() bool { return st.ConnectionsClosed[CloseShadowClosed].Load() == 1 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 1, "opened": 1})
}

// action is what a scripted shadow does with a request it has read.
type action uint8

const (
	answer  action = iota // 200 with a body
	hangUp                // close without a byte of answer
	reset                 // close with RST
	partial               // half a status line, then close
)

// scriptServer is a raw shadow that asks decide what to do with the n-th
// request of a connection (from 0) and the request itself, and counts the
// requests it read by X-Seq.
type scriptServer struct {
	*rawServer
	mu   sync.Mutex
	seen map[string]int
}

func newScriptServer(t *testing.T, decide func(n int, req *http.Request) action) *scriptServer {
	ss := &scriptServer{seen: map[string]int{}}
	ss.rawServer = newRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			ss.mu.Lock()
			ss.seen[req.Method+" "+req.Header.Get("X-Seq")]++
			ss.mu.Unlock()
			switch decide(n, req) {
			case answer:
				if req.Method == "HEAD" {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
				} else {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			case hangUp:
				finish(c)
				return
			case reset:
				c.(*net.TCPConn).SetLinger(0)
				return
			case partial:
				io.WriteString(c, "HTTP/1.1 2")
				finish(c)
				return
			}
		}
	})
	return ss
}

func (ss *scriptServer) count(key string) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.seen[key]
}

// seqRequest is a request with X-Seq seq and the given method and extra
// field lines.
func seqRequest(t *testing.T, method string, seq int, extra string) string {
	body := ""
	if method == "POST" {
		body = "Content-Length: 4\r\n\r\nbody"
	} else {
		body = "\r\n"
	}
	return method + " /r HTTP/1.1\r\nHost: h\r\nX-Seq: " + strconv.Itoa(seq) + "\r\n" + extra + body
}

// A request is sent again exactly where net/http's Transport would do it:
// on a connection that answered before, when no byte of the answer
// arrived, for an idempotent request (or one not written at all); once.
func TestRetryLikeNetHTTP(t *testing.T) {
	for _, tc := range []struct {
		name         string
		method       string
		extra        string
		then         action // to the second request, on the reused connection
		fresh        bool   // fail the first request instead, on a fresh connection
		retried      uint64
		failed       FailReason
		arrivalsOfR1 int
	}{
		{name: "GET, closed", method: "GET", then: hangUp, retried: 1, arrivalsOfR1: 2},
		{name: "HEAD, reset", method: "HEAD", then: reset, retried: 1, arrivalsOfR1: 2},
		{name: "OPTIONS, closed", method: "OPTIONS", then: hangUp, retried: 1, arrivalsOfR1: 2},
		{name: "POST, closed", method: "POST", then: hangUp, failed: FailReset, arrivalsOfR1: 1},
		{name: "POST, reset", method: "POST", then: reset, failed: FailReset, arrivalsOfR1: 1},
		{name: "POST with Idempotency-Key", method: "POST", extra: "Idempotency-Key: k1\r\n", then: hangUp, retried: 1, arrivalsOfR1: 2},
		{name: "POST with X-Idempotency-Key", method: "POST", extra: "X-Idempotency-Key: k1\r\n", then: hangUp, retried: 1, arrivalsOfR1: 2},
		{name: "GET, part of an answer", method: "GET", then: partial, failed: FailReset, arrivalsOfR1: 1},
		{name: "GET on a fresh connection", method: "GET", then: hangUp, fresh: true, failed: FailReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var firstDone atomic.Bool
			ss := newScriptServer(t, func(n int, req *http.Request) action {
				if tc.fresh && !firstDone.Swap(true) {
					return tc.then
				}
				if n == 1 {
					return tc.then
				}
				return answer
			})
			s := newSender(t, SenderConfig{URL: ss.URL()})
			st := s.Stats()
			if tc.fresh {
				s.Send(parseRequest(t, seqRequest(t, tc.method, 0, tc.extra)), nil)
				waitFor(t, "end", func() bool { return st.Mirrored.Load()+failures(st) == 1 })
				closeSender(t, s)
				checkStats(t, st, map[string]uint64{"retried": 0, "sent": 1, "failed_" + tc.failed.String(): 1})
				return
			}
			s.Send(request(t, testClient, 0, ""), nil)
			waitFor(t, "first answer", func() bool { return st.Mirrored.Load() == 1 })
			s.Send(parseRequest(t, seqRequest(t, tc.method, 1, tc.extra)), nil)
			waitFor(t, "end", func() bool { return st.Mirrored.Load()+failures(st) == 2 })
			closeSender(t, s)
			// Each request written whole counts once in Sent, however
			// often it was written.
			want := map[string]uint64{"retried": tc.retried, "mirrored": 1 + tc.retried, "sent": 2}
			if tc.retried == 0 {
				want["failed_"+tc.failed.String()] = 1
			}
			checkStats(t, st, want)
			if got := ss.count(tc.method + " 1"); got != tc.arrivalsOfR1 {
				t.Errorf("the second request arrived %d times, want %d", got, tc.arrivalsOfR1)
			}
		})
	}
}

// A retried request is retried once: when its second attempt fails the
// same way, on a fresh connection, it fails.
func TestRetryOnce(t *testing.T) {
	var answered atomic.Bool
	ss := newScriptServer(t, func(n int, req *http.Request) action {
		if !answered.Swap(true) {
			return answer
		}
		return hangUp
	})
	s := newSender(t, SenderConfig{URL: ss.URL()})
	st := s.Stats()
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "first answer", func() bool { return st.Mirrored.Load() == 1 })
	s.Send(request(t, testClient, 1, ""), nil)
	waitFor(t, "failure", func() bool { return failures(st) == 1 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"retried": 1, "failed_reset": 1, "opened": 2, "sent": 2})
	if ss.count("GET 1") != 2 {
		t.Errorf("sent %d times", ss.count("GET 1"))
	}
}

// zeroWriteConn fails its n-th write without writing a byte.
type zeroWriteConn struct {
	net.Conn
	writes *atomic.Int64
	n      int64
}

func (c zeroWriteConn) Write(b []byte) (int, error) {
	if c.writes.Add(1) == c.n {
		return 0, errors.New("broken pipe (test)")
	}
	return c.Conn.Write(b)
}

// A request of which nothing was written, on a reused connection, is sent
// again whatever its method; a write that broke midway fails it.
func TestRetryNothingWritten(t *testing.T) {
	for _, tc := range []struct {
		name    string
		zero    bool
		retried uint64
	}{
		{"nothing written", true, 1},
		{"half written", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := newScriptServer(t, func(int, *http.Request) action { return answer })
			var writes atomic.Int64
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				if tc.zero {
					return zeroWriteConn{c, &writes, 2}, nil
				}
				return failingConn{c, &writes, 2}, nil
			}
			s := newSender(t, SenderConfig{URL: ss.URL(), Dial: dial})
			st := s.Stats()
			s.Send(request(t, testClient, 0, ""), nil)
			waitFor(t, "first answer", func() bool { return st.Mirrored.Load() == 1 })
			s.Send(parseRequest(t, seqRequest(t, "POST", 1, "")), nil)
			waitFor(t, "end", func() bool { return st.Mirrored.Load()+failures(st) == 2 })
			closeSender(t, s)
			// A request written halfway is not counted in Sent.
			want := map[string]uint64{"retried": tc.retried, "mirrored": 1 + tc.retried, "sent": 1 + tc.retried}
			if tc.retried == 0 {
				want["failed_write"] = 1
			}
			checkStats(t, st, want)
			if got := ss.count("POST 1"); got != int(tc.retried) {
				t.Errorf("the POST arrived whole %d times", got)
			}
		})
	}
}

func TestBrokenResponses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(c net.Conn)
		reason FailReason
	}{
		{"reset mid-response", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			time.Sleep(20 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0) // close with RST
		}, FailReset},
		{"EOF mid-response", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
			finish(c)
		}, FailReset},
		{"not HTTP", func(c net.Conn) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
			finish(c)
		}, FailProtocol},
		{"bad chunk", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
			finish(c)
		}, FailProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					tc.answer(c)
				}
			})
			s := newSender(t, SenderConfig{URL: srv.URL()})
			s.Send(request(t, testClient, 0, ""), nil)
			st := s.Stats()
			waitFor(t, "failure", func() bool { return failures(st) == 1 })
			closeSender(t, s)
			checkStats(t, st, map[string]uint64{"failed_" + tc.reason.String(): 1, "retried": 0, "closed_error": 1})
		})
	}
}

func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSender(t, SenderConfig{URL: "http://" + addr, MaxPending: 64})
	const n = 2000
	for i := range n {
		s.Send(request(t, clientAddr(i%7), i, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "failures", func() bool { return failures(st) == st.Queued.Load() })
	closeSender(t, s)
	q := st.Queued.Load()
	if st.Failed[FailConnect].Load() == 0 || st.Failed[FailConnect].Load()+st.Failed[FailBackoff].Load() != q ||
		q+st.Dropped[DropOverflow].Load() != n || st.ConnectionsOpened.Load() != 0 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestWriteFailure(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	var writes atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return failingConn{c, &writes, 1}, nil
	}
	s := newSender(t, SenderConfig{URL: ts.URL, Dial: dial})
	st := s.Stats()
	s.Send(request(t, testClient, 0, "body"), nil)
	waitFor(t, "failure", func() bool { return failures(st) == 1 })
	s.Send(request(t, testClient, 1, "body"), nil)
	waitFor(t, "answer", func() bool { return st.Mirrored.Load() == 1 })
	closeSender(t, s)
	// A fresh connection: no retry.
	checkStats(t, st, map[string]uint64{"failed_write": 1, "retried": 0, "opened": 2, "closed_error": 1})
	if len(rc.all()) != 1 {
		t.Errorf("server saw %d requests", len(rc.all()))
	}
}

// Large requests go through the writer goroutine, from where they lie.
func TestLargeRequests(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL})
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	for i := range 4 {
		s.Send(request(t, clientAddr(i), 0, string(big[:(i+1)<<19])), nil)
	}
	st := s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 4 })
	closeSender(t, s)
	for _, r := range rc.all() {
		if len(r.Body) < 1<<19 || r.Body != string(big[:len(r.Body)]) {
			t.Errorf("body of %d bytes differs", len(r.Body))
		}
	}
}

// Pipelining, when asked for: requests in order on one connection, several
// in flight; those written after an answer that closed the connection go
// again on the next one, in order.
func TestPipelining(t *testing.T) {
	ts, rc := newRecordingServer(t, false, nil)
	s := newSender(t, SenderConfig{URL: ts.URL, Pipeline: 8, MaxConnections: 1})
	const n = 60
	for i := range n {
		s.Send(request(t, testClient, i, bodyFor(0, i)), nil)
	}
	st := s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == n })
	closeSender(t, s)
	checkInOrderOnce(t, "one", seqsByClient(t, rc.all())[testClient.Addr().String()], n)
	if st.ConnectionsOpened.Load() != 1 || st.PeakInFlight.Load() > 8 || st.PeakInFlight.Load() < 2 {
		t.Errorf("stats: %v", st.Snapshot())
	}

	var rr rawRecorder
	srv := newRawServer(t, answerThenClose(&rr, 3, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"))
	s = newSender(t, SenderConfig{URL: srv.URL(), Pipeline: 4, MaxConnections: 1})
	for i := range 20 {
		s.Send(request(t, testClient, i, ""), nil)
	}
	st = s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 20 })
	closeSender(t, s)
	checkInOrderOnce(t, "one", rr.get(), 20)
	if st.Requeued.Load() == 0 || st.Retried.Load() != 0 || failures(st) != 0 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

// Pipelined requests share writes: a burst goes out in a few syscalls.
func TestPipelinedBatches(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pipeline  int
		n         int
		maxWrites int64
	}{
		{"batches", 64, 200, 20},
		{"one at a time", 1, 20, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, rc := newRecordingServer(t, false, nil)
			var writes atomic.Int64
			hold := make(chan struct{})
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				<-hold // everything is waiting when the connection opens
				return countingDial(&writes)(ctx, network, addr)
			}
			s := newSender(t, SenderConfig{URL: ts.URL, Pipeline: tc.pipeline, MaxConnections: 1, MaxPending: 4096, Dial: dial})
			for i := range tc.n {
				s.Send(request(t, testClient, i, bodyFor(0, i)), nil)
			}
			close(hold)
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

// Pipelined, a hung answer times the first request out and aborts those
// behind it; their clock starts when they are first in line, so answers
// one after another all come in time however long the line.
func TestPipelinedTimeouts(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	const timeout = 200 * time.Millisecond
	s := newSender(t, SenderConfig{URL: srv.URL(), Pipeline: 8, MaxConnections: 1, Timeout: timeout})
	for i := range 5 {
		s.Send(request(t, testClient, i, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "failures", func() bool { return failures(st) == 5 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"failed_timeout": 1, "failed_aborted": 4, "closed_timeout": 1})
	if st.Sent.Load() != 5 {
		t.Errorf("sent %d", st.Sent.Load())
	}

	// The server answers one every 50ms: the last answer comes 2.5s after
	// the write, but each 50ms after it is first in line, within 2s.
	const n, gap = 50, 50 * time.Millisecond
	slow := newRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for range n {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			time.Sleep(gap)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		io.Copy(io.Discard, c)
	})
	s = newSender(t, SenderConfig{URL: slow.URL(), Pipeline: n, MaxConnections: 1, Timeout: 2 * time.Second})
	for i := range n {
		s.Send(request(t, testClient, i, ""), nil)
	}
	st = s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load()+failures(st) == n })
	closeSender(t, s)
	if st.Mirrored.Load() != n || st.Latency.Quantile(1) < 2*time.Second {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

// Pipelined, a write that breaks fails its request (write) and aborts the
// one that waited for its answer on the same connection.
func TestPipelinedWriteFailure(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	var writes atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return failingConn{c, &writes, 2}, nil
	}
	s := newSender(t, SenderConfig{URL: srv.URL(), Pipeline: 4, MaxConnections: 1, Dial: dial})
	st := s.Stats()
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "first write", func() bool { return st.Sent.Load() == 1 })
	s.Send(request(t, testClient, 1, "body"), nil)
	waitFor(t, "failures", func() bool { return failures(st) == 2 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"failed_write": 1, "failed_aborted": 1, "retried": 0})
}

// A read deadline left early that fires in the middle of an answer is
// moved on: the answer completes. The deadline left is the end of the
// connection's idleness after a first answer (IdleTimeout, shorter than
// Timeout); the shadow starts the second answer and finishes it only once
// that deadline has fired (the sender counts it).
func TestEarlyDeadlineMidAnswer(t *testing.T) {
	for attempt := 1; !earlyDeadlineMidAnswer(t); attempt++ {
		// The idle deadline fired before the second answer started: a
		// stalled machine. Try again.
		if attempt == 3 {
			t.Fatal("the early deadline never fired in the middle of an answer")
		}
	}
}

// earlyDeadlineMidAnswer runs TestEarlyDeadlineMidAnswer once, and reports
// whether the early deadline fired in the middle of the answer.
func earlyDeadlineMidAnswer(t *testing.T) bool {
	started, more := make(chan struct{}), make(chan struct{})
	srv := newRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Header.Get("X-Seq") == "0" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n")
			close(started)
			<-more
			io.WriteString(c, "4\r\nmore\r\n0\r\n\r\n")
		}
	})
	s := newSender(t, SenderConfig{URL: srv.URL(), Timeout: time.Minute, IdleTimeout: 500 * time.Millisecond})
	st := s.Stats()
	s.Send(request(t, testClient, 0, ""), nil)
	waitFor(t, "first answer", func() bool { return st.Mirrored.Load() == 1 })
	s.Send(request(t, testClient, 1, ""), nil)
	<-started
	reached := st.ConnectionsOpened.Load() == 1 && s.rearms.Load() == 0
	if reached {
		waitFor(t, "the early deadline", func() bool { return s.rearms.Load() > 0 })
	}
	close(more)
	waitFor(t, "second answer", func() bool { return st.Mirrored.Load()+failures(st) == 2 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 2})
	return reached
}

// smallBufferServer is a raw shadow whose sockets take little before they
// are full (its receive buffer set on the listener, so that the window it
// advertises is small from the handshake on).
func smallBufferServer(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { handle(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// smallSendBuffer dials with a small send buffer.
func smallSendBuffer(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}

// Send writes a small request on an idle connection itself, but never
// waits for the socket: when the shadow stopped reading and the socket
// buffers are full, Send returns at once, the rest goes to a writer
// goroutine, and the request ends by its Timeout. So on a TCP connection
// (written without waiting) and on any other (written within a short
// deadline).
func TestSendDoesNotWaitOnSocket(t *testing.T) {
	for _, tc := range []struct {
		name string
		dial func(ctx context.Context, network, addr string) (net.Conn, error)
	}{
		{"tcp", smallSendBuffer},
		{"wrapped", func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := smallSendBuffer(ctx, network, addr)
			return countingConn{c, new(atomic.Int64)}, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := make(chan struct{})
			url := smallBufferServer(t, func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				<-stop // reads nothing more
			})
			defer close(stop)
			s := newSender(t, SenderConfig{URL: url, Timeout: 3 * time.Second, Dial: tc.dial})
			st := s.Stats()
			s.Send(request(t, testClient, 0, ""), nil)
			waitFor(t, "first answer", func() bool { return st.Mirrored.Load() == 1 })

			// Small enough to be written by Send, larger than what the
			// buffers take.
			r := request(t, testClient, 1, strings.Repeat("b", directWriteMax-2048))
			if int64(len(r.Raw)) > directWriteMax-1024 {
				t.Fatalf("the request (%d bytes) would not be written by Send", len(r.Raw))
			}
			returned := make(chan bool)
			go func() { returned <- s.Send(r, nil) }()
			select {
			case ok := <-returned:
				if !ok {
					t.Fatal("Send dropped the request")
				}
			case <-time.After(1500 * time.Millisecond):
				t.Fatal("Send waits for the socket")
			}
			waitFor(t, "the timeout", func() bool { return failures(st) == 1 })
			closeSender(t, s)
			checkStats(t, st, map[string]uint64{"mirrored": 1, "failed_timeout": 1, "closed_timeout": 1, "opened": 1})
			if st.Sent.Load() != 1 {
				t.Errorf("sent %d, want 1", st.Sent.Load())
			}
		})
	}
}
