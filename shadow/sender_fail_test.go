package shadow

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
)

func TestSenderRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSender(t, SenderConfig{URL: "http://" + addr, Workers: 2, QueueRequests: 64})
	s.Start()
	const n = 5000
	reqs := make([]*httpframe.Request, n)
	for i := range reqs {
		reqs[i] = request(t, clientAddr(i%7), i, "")
	}
	// A Send that waited for a dial or a backoff would take 50ms at least,
	// and all the Sends after it too. Allow for the odd descheduled one.
	slow := 0
	for _, r := range reqs {
		t0 := time.Now()
		s.Send(r)
		if time.Since(t0) > 20*time.Millisecond {
			slow++
		}
	}
	st := s.Stats()
	waitFor(t, "failures", func() bool { return failures(st) == st.Queued.Load() })
	closeSender(t, s)
	if slow > n/100 {
		t.Errorf("%d of %d Sends took more than 20ms", slow, n)
	}
	q, f := st.Queued.Load(), st.Failed[FailConnect].Load()+st.Failed[FailBackoff].Load()
	if st.Failed[FailConnect].Load() == 0 || f != q || q+st.Dropped[DropQueueFull].Load() != n || st.ConnectionsOpened.Load() != 0 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestSenderTimeout(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // reads, never answers
	const timeout = 200 * time.Millisecond
	s := newSender(t, SenderConfig{URL: srv.URL(), Workers: 1, Timeout: timeout})
	for i := range 5 {
		s.Send(request(t, testClient, i, ""))
	}
	start := time.Now()
	s.Start()
	st := s.Stats()
	waitFor(t, "failures", func() bool { return failures(st) == 5 })
	if elapsed := time.Since(start); elapsed < timeout {
		t.Errorf("failed after %v, before the timeout", elapsed)
	}
	closeSender(t, s)
	if st.Failed[FailTimeout].Load() != 1 || st.Failed[FailAborted].Load() != 4 || st.Sent.Load() != 5 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestSenderTimeoutCountsFromHeadOfLine(t *testing.T) {
	// The server answers the pipelined requests one every 50ms: the last
	// answer comes 2.5s after the write, but each request is answered 50ms
	// after it reached the head of the line, well within the 2s timeout.
	// (The margin is wide because loaded test machines stretch sleeps.)
	const n, gap, timeout = 50, 50 * time.Millisecond, 2 * time.Second
	srv := newRawServer(t, func(c net.Conn) {
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
	s := newSender(t, SenderConfig{URL: srv.URL(), Workers: 1, Timeout: timeout})
	for i := range n {
		s.Send(request(t, testClient, i, ""))
	}
	s.Start()
	st := s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load()+failures(st) == n })
	closeSender(t, s)
	if st.Mirrored.Load() != n || st.Latency.Quantile(1) < timeout {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestSenderWriteFailure(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	var writes atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return failingConn{c, &writes, 2}, nil
	}
	s := newSender(t, SenderConfig{URL: srv.URL(), Workers: 1, Dial: dial})
	s.Start()
	st := s.Stats()
	s.Send(request(t, testClient, 0, ""))
	waitFor(t, "first write", func() bool { return st.Sent.Load() == 1 })
	s.Send(request(t, testClient, 1, "body"))
	waitFor(t, "failures", func() bool { return failures(st) == 2 })
	closeSender(t, s)
	// The request whose write broke fails as write; the one that waited for
	// its answer on the same connection is aborted with it.
	if st.Failed[FailWrite].Load() != 1 || st.Failed[FailAborted].Load() != 1 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestSenderBrokenResponses(t *testing.T) {
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					tc.answer(c)
				}
			})
			s := newSender(t, SenderConfig{URL: srv.URL(), Workers: 1})
			s.Start()
			s.Send(request(t, testClient, 0, ""))
			st := s.Stats()
			waitFor(t, "failure", func() bool { return failures(st) == 1 })
			closeSender(t, s)
			if st.Failed[tc.reason].Load() != 1 {
				t.Errorf("want one %v: %v", tc.reason, st.Snapshot())
			}
		})
	}
}

func TestSenderQueueFull(t *testing.T) {
	// Not started: nothing leaves the queues, so the counts are exact.
	s := newSender(t, SenderConfig{URL: "http://127.0.0.1:9", Workers: 1, QueueRequests: 4})
	size := int64(len(request(t, testClient, 0, "").Raw))
	for i := range 10 {
		if got := s.Send(request(t, testClient, 0, "")); got != (i < 4) {
			t.Fatalf("Send %d = %v", i, got)
		}
	}
	st := s.Stats()
	if st.Queued.Load() != 4 || st.Dropped[DropQueueFull].Load() != 6 || st.QueueBytes.Load() != 4*size {
		t.Errorf("stats: %v", st.Snapshot())
	}
	closeSender(t, s)
	if st.Failed[FailShutdown].Load() != 4 {
		t.Errorf("stats: %v", st.Snapshot())
	}

	// The byte budget spans all workers.
	s = newSender(t, SenderConfig{URL: "http://127.0.0.1:9", Workers: 3, QueueBytes: 3*size + size/2})
	for i := range 10 {
		if got := s.Send(request(t, clientAddr(i), 0, "")); got != (i < 3) {
			t.Fatalf("Send %d = %v", i, got)
		}
	}
	st = s.Stats()
	if st.Queued.Load() != 3 || st.Dropped[DropQueueFull].Load() != 7 {
		t.Errorf("stats: %v", st.Snapshot())
	}
	closeSender(t, s)
}

func TestSenderCloseDrains(t *testing.T) {
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "slow")
	})
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 2})
	s.Start()
	for i := range 40 {
		s.Send(request(t, clientAddr(i%4), i/4, bodyFor(i%4, i/4)))
	}
	closeSender(t, s) // returns once everything queued has been answered
	st := s.Stats()
	if st.Mirrored.Load() != 40 || len(rc.all()) != 40 {
		t.Errorf("stats: %v", st.Snapshot())
	}
	if s.Send(request(t, testClient, 99, "")) || st.Dropped[DropClosed].Load() != 1 {
		t.Errorf("Send after Close: %v", st.Snapshot())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSenderCloseAborts(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	var writes atomic.Int64
	s := newSender(t, SenderConfig{URL: srv.URL(), Workers: 1, MaxInFlight: 4, Timeout: time.Minute, Dial: countingDial(&writes)})
	s.Start()
	for i := range 10 {
		s.Send(request(t, testClient, i, ""))
	}
	st := s.Stats()
	waitFor(t, "pipeline full", func() bool { return st.Sent.Load() == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the context's deadline", err)
	}
	checkAccounting(t, st)
	checkNoGoroutines(t)
	if st.Failed[FailShutdown].Load() != 10 {
		t.Errorf("stats: %v", st.Snapshot())
	}
}

func TestSenderCloseBeforeStart(t *testing.T) {
	s := newSender(t, SenderConfig{URL: "http://127.0.0.1:9"})
	s.Send(request(t, testClient, 0, ""))
	closeSender(t, s)
	s.Start() // does nothing after Close
	if s.Stats().Failed[FailShutdown].Load() != 1 {
		t.Errorf("stats: %v", s.Stats().Snapshot())
	}
	checkNoGoroutines(t)
}
