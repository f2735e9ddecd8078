package shadow

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate is a shadow handler that holds every request until released.
type gate struct {
	release chan struct{}
	held    atomic.Int32
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) handler(w http.ResponseWriter, r *http.Request) {
	g.held.Add(1)
	<-g.release
	io.WriteString(w, "ok")
}

// The pool follows the requests in flight: it grows while every
// connection is busy, and closes connections idle for IdleTimeout.
func TestPoolGrowsAndShrinks(t *testing.T) {
	g := newGate()
	ts, rc := newRecordingServer(t, false, g.handler)
	s := newSender(t, SenderConfig{URL: ts.URL, IdleTimeout: 50 * time.Millisecond})
	st := s.Stats()
	const n = 20
	for i := range n {
		s.Send(request(t, clientAddr(i), 0, ""), nil)
	}
	waitFor(t, "all held by the shadow", func() bool { return g.held.Load() == n })
	if st.ConnectionsOpen.Load() != n || st.ConnectionsBusy.Load() != n || st.InFlight.Load() != n || st.PeakInFlight.Load() != n {
		t.Errorf("while held: %v", st.Snapshot())
	}
	close(g.release)
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == n })
	waitFor(t, "idle timeouts", func() bool { return st.ConnectionsClosed[CloseIdleTimeout].Load() == n })
	if st.ConnectionsOpen.Load() != 0 || st.ConnectionsIdle.Load() != 0 {
		t.Errorf("after the idle timeout: %v", st.Snapshot())
	}
	// The pool starts again from nothing.
	s.Send(request(t, clientAddr(0), 1, ""), nil)
	waitFor(t, "answer", func() bool { return st.Mirrored.Load() == n+1 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"opened": n + 1, "closed_idle_timeout": n, "closed_shutdown": 1})
	if rc.conns.Load() != n+1 {
		t.Errorf("server accepted %d connections", rc.conns.Load())
	}
}

// A burst of requests on an empty pool opens connections a few at a time
// (maxDials), not one dial per request at once; the pool still grows to
// one connection per request in flight, and every request is mirrored.
func TestPoolDialsAFewAtATime(t *testing.T) {
	g := newGate()
	ts, _ := newRecordingServer(t, false, g.handler)
	var dialing, peak atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		n := dialing.Add(1)
		defer dialing.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond) // a shadow slow to accept
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	s := newSender(t, SenderConfig{URL: ts.URL, Dial: dial})
	st := s.Stats()
	const n = 40
	for i := range n {
		s.Send(request(t, clientAddr(i), 0, ""), nil)
	}
	waitFor(t, "all held by the shadow", func() bool { return g.held.Load() == n })
	if got := st.ConnectionsOpen.Load(); got != n {
		t.Errorf("%d connections for %d requests in flight", got, n)
	}
	close(g.release)
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == n })
	closeSender(t, s)
	// Eight at once while the pool is small.
	if p := peak.Load(); p > 8 {
		t.Errorf("%d dials at once, want at most 8", p)
	}
}

// Circuit breakers, as Envoy's: at most MaxConnections (dials included),
// at most MaxPending waiting, and the rest overflow.
func TestPoolCircuitBreakers(t *testing.T) {
	g := newGate()
	ts, _ := newRecordingServer(t, false, g.handler)
	dials := make(chan struct{})
	slowDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-dials
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	s := newSender(t, SenderConfig{URL: ts.URL, MaxConnections: 2, MaxPending: 3, Dial: slowDial})
	st := s.Stats()
	// While the dials wait, requests wait: three, and the other seven
	// overflow.
	for i := range 10 {
		if got := s.Send(request(t, clientAddr(i), 0, ""), nil); got != (i < 3) {
			t.Errorf("Send %d = %v", i, got)
		}
	}
	checkStats(t, st, map[string]uint64{"queued": 3, "dropped_overflow": 7})
	if st.Pending.Load() != 3 || st.ConnectionsConnecting.Load() != 2 {
		t.Errorf("waiting: %v", st.Snapshot())
	}
	close(dials)
	waitFor(t, "two on connections", func() bool { return g.held.Load() == 2 })
	if st.InFlight.Load() != 2 || st.Pending.Load() != 1 || st.ConnectionsOpen.Load() != 2 {
		t.Errorf("with two connections: %v", st.Snapshot())
	}
	// Two more fit in the line, the third overflows.
	for i := range 3 {
		if got := s.Send(request(t, clientAddr(i), 1, ""), nil); got != (i < 2) {
			t.Errorf("Send %d = %v", i, got)
		}
	}
	close(g.release)
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 5 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"queued": 5, "mirrored": 5, "dropped_overflow": 8, "opened": 2})
	if st.PeakInFlight.Load() != 2 {
		t.Errorf("peak in flight %d", st.PeakInFlight.Load())
	}
}

func TestPoolMaxRequestsAndBytes(t *testing.T) {
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	s := newSender(t, SenderConfig{URL: ts.URL, MaxRequests: 1})
	for i := range 10 {
		s.Send(request(t, clientAddr(i), 0, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 10 })
	closeSender(t, s)
	// One at a time: the others wait rather than open connections.
	if st.PeakInFlight.Load() != 1 || st.ConnectionsOpened.Load() != 1 || rc.conns.Load() != 1 {
		t.Errorf("stats: %v", st.Snapshot())
	}

	// The byte budget: what does not fit overflows, never queued.
	size := int64(len(request(t, testClient, 0, "").Raw))
	g := newGate()
	ts2, _ := newRecordingServer(t, false, g.handler)
	s = newSender(t, SenderConfig{URL: ts2.URL, QueueBytes: 3*size + size/2})
	for i := range 10 {
		if got := s.Send(request(t, clientAddr(i), 0, ""), nil); got != (i < 3) {
			t.Errorf("Send %d = %v", i, got)
		}
	}
	st = s.Stats()
	if st.QueueBytes.Load() != 3*size {
		t.Errorf("queue bytes %d, want %d", st.QueueBytes.Load(), 3*size)
	}
	close(g.release)
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 3 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"queued": 3, "mirrored": 3, "dropped_overflow": 7})
}

// Without Ordered, the requests of one client connection do not wait for
// each other's answers; with it they do, while other client connections
// go on.
func TestPoolOrdered(t *testing.T) {
	var mu sync.Mutex
	inFlight, maxInFlight := map[string]int{}, map[string]int{}
	var arrivals []string
	holdA := make(chan struct{})
	var heldA atomic.Bool
	ts, _ := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		client, seq := r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Seq")
		mu.Lock()
		arrivals = append(arrivals, client+"/"+seq)
		inFlight[client]++
		maxInFlight[client] = max(maxInFlight[client], inFlight[client])
		mu.Unlock()
		if client == clientAddr(0).Addr().String() && seq == "0" {
			heldA.Store(true)
			<-holdA
		} else {
			time.Sleep(time.Millisecond)
		}
		mu.Lock()
		inFlight[client]--
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	const per = 10
	a, b := clientAddr(0).Addr().String(), clientAddr(1).Addr().String()

	s := newSender(t, SenderConfig{URL: ts.URL, Ordered: true})
	st := s.Stats()
	for i := range per {
		s.Send(request(t, clientAddr(0), i, bodyFor(0, i)), nil)
		s.Send(request(t, clientAddr(1), i, bodyFor(1, i)), nil)
	}
	// B's requests all complete while A's first is held, and A's others
	// wait for it.
	waitFor(t, "B's answers", func() bool { return st.Mirrored.Load() == per })
	if !heldA.Load() || st.Pending.Load() != per-1 {
		t.Errorf("while A is held: %v", st.Snapshot())
	}
	close(holdA)
	waitFor(t, "A's answers", func() bool { return st.Mirrored.Load() == 2*per })
	closeSender(t, s)
	mu.Lock()
	var seqA, seqB []int
	for _, k := range arrivals {
		c, seq, _ := strings.Cut(k, "/")
		n, _ := strconv.Atoi(seq)
		if c == a {
			seqA = append(seqA, n)
		} else {
			seqB = append(seqB, n)
		}
	}
	if maxInFlight[a] != 1 || maxInFlight[b] != 1 {
		t.Errorf("Ordered: at most %d and %d in flight per client connection", maxInFlight[a], maxInFlight[b])
	}
	mu.Unlock()
	checkInOrderOnce(t, a, seqA, per)
	checkInOrderOnce(t, b, seqB, per)

	// Unordered: the same client connection has several in flight.
	mu.Lock()
	arrivals, maxInFlight = nil, map[string]int{}
	mu.Unlock()
	s = newSender(t, SenderConfig{URL: ts.URL})
	st = s.Stats()
	for i := 1; i <= 50; i++ {
		s.Send(request(t, clientAddr(1), i, ""), nil)
	}
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 50 })
	closeSender(t, s)
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight[b] < 2 || len(arrivals) != 50 {
		t.Errorf("unordered: at most %d in flight, %d arrivals", maxInFlight[b], len(arrivals))
	}
}

// A sender made for a capture file waits for room instead of dropping: a
// replay at full speed into a slow shadow loses nothing.
func TestWaitForRoom(t *testing.T) {
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		w.Write([]byte("ok"))
	})
	body := strings.Repeat("b", 1000)
	s := newSender(t, SenderConfig{URL: ts.URL, Wait: t.Context(), MaxConnections: 2, MaxPending: 3, QueueBytes: 8 << 10})
	const n = 200
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 4 {
				if !s.Send(request(t, clientAddr(g), i, body), nil) {
					t.Errorf("request %d/%d not queued", g, i)
				}
			}
		}()
	}
	wg.Wait()
	closeSender(t, s)
	st := s.Stats()
	checkStats(t, st, map[string]uint64{"mirrored": 3 * (n / 4), "dropped_overflow": 0})
	checkOnce(t, rc.all(), 3, n/4)
}

// A waiting Send gives up when its context ends; one larger than the whole
// budget never waits.
func TestWaitGivesUp(t *testing.T) {
	g := newGate()
	ts, _ := newRecordingServer(t, false, g.handler)
	ctx, cancel := context.WithCancel(t.Context())
	s := newSender(t, SenderConfig{URL: ts.URL, Wait: ctx, MaxConnections: 1, MaxPending: 1, Timeout: time.Minute, QueueBytes: 1 << 20})
	st := s.Stats()
	if !s.Send(request(t, clientAddr(0), 0, ""), nil) || !s.Send(request(t, clientAddr(0), 1, ""), nil) {
		t.Fatal("refused with room")
	}
	waitFor(t, "one held, one waiting", func() bool { return g.held.Load() == 1 && st.Pending.Load() == 1 })
	done := make(chan bool)
	go func() { done <- s.Send(request(t, clientAddr(0), 2, ""), nil) }()
	cancel()
	if <-done {
		t.Error("a Send whose context ended queued its request")
	}
	if s.Send(request(t, clientAddr(1), 99, strings.Repeat("y", 2<<20)), nil) {
		t.Error("a request larger than the byte budget was queued")
	}
	close(g.release)
	waitFor(t, "answers", func() bool { return st.Mirrored.Load() == 2 })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"queued": 2, "dropped_overflow": 2})
}

func TestCloseDrains(t *testing.T) {
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "slow")
	})
	s := newSender(t, SenderConfig{URL: ts.URL, MaxConnections: 3})
	for i := range 40 {
		s.Send(request(t, clientAddr(i%4), i/4, bodyFor(i%4, i/4)), nil)
	}
	closeSender(t, s) // returns once everything queued has been answered
	st := s.Stats()
	checkStats(t, st, map[string]uint64{"mirrored": 40})
	checkOnce(t, rc.all(), 4, 10)
	if s.Send(request(t, testClient, 99, ""), nil) || st.Dropped[DropClosed].Load() != 1 {
		t.Errorf("Send after Close: %v", st.Snapshot())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseAborts(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	s := newSender(t, SenderConfig{URL: srv.URL(), MaxConnections: 4, Ordered: true, Timeout: time.Minute})
	for i := range 10 {
		s.Send(request(t, clientAddr(i%6), i, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "four on connections", func() bool { return st.Sent.Load() == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the context's deadline", err)
	}
	checkClosed(t, s)
	checkStats(t, st, map[string]uint64{"failed_shutdown": 10, "closed_shutdown": 4})
}

func TestCloseUnused(t *testing.T) {
	s := newSender(t, SenderConfig{URL: "http://127.0.0.1:9"})
	closeSender(t, s)
	if s.Send(request(t, testClient, 0, ""), nil) {
		t.Error("Send after Close")
	}
	checkStats(t, s.Stats(), map[string]uint64{"dropped_closed": 1, "queued": 0})
}

// Many clients, random delays, random limits: every request ends once and
// reaches the shadow once.
func TestPoolRandomLoad(t *testing.T) {
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		io.WriteString(w, strings.Repeat("r", rand.IntN(5000)))
	})
	for _, cfg := range []SenderConfig{
		{MaxConnections: 1},
		{MaxConnections: 7, MaxPending: 4096},
		{MaxConnections: 3, Ordered: true, MaxPending: 4096},
		{MaxConnections: 2, Pipeline: 4, MaxPending: 4096},
		{IdleTimeout: time.Millisecond, MaxPending: 4096},
	} {
		cfg.URL, cfg.Wait = ts.URL, t.Context()
		rc.mu.Lock()
		rc.reqs = nil
		rc.mu.Unlock()
		s := newSender(t, cfg)
		const clients, per = 10, 30
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					s.Send(request(t, clientAddr(c), i, bodyFor(c, i)), nil)
				}
			}()
		}
		wg.Wait()
		closeSender(t, s)
		st := s.Stats()
		checkStats(t, st, map[string]uint64{"mirrored": clients * per})
		checkOnce(t, rc.all(), clients, per)
		if cfg.MaxConnections > 0 && st.PeakInFlight.Load() > int64(cfg.MaxConnections*max(cfg.Pipeline, 1)) {
			t.Errorf("%+v: peak in flight %d", cfg, st.PeakInFlight.Load())
		}
		if cfg.Ordered {
			for c, seqs := range seqsByClient(t, rc.all()) {
				checkInOrderOnce(t, c, seqs, per)
			}
		}
	}
}

// Once a connection is warm, a request costs no allocation: Send, the
// write, the answer, the ledger.
func TestSendDoesNotAllocate(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn) { sink(c, 0) })
	s := newSender(t, SenderConfig{URL: srv.URL()})
	st := s.Stats()
	r := parseRequest(t, benchRequest)
	send := func() {
		want := st.Mirrored.Load() + failures(st) + 1
		if !s.Send(r, nil) {
			t.Fatal("refused")
		}
		// Sleep rather than yield: AllocsPerRun runs on one P, where a
		// goroutine that only yields leaves the netpoller to sysmon.
		for i := 0; st.Mirrored.Load()+failures(st) < want; i++ {
			if i == 1e6 {
				t.Fatal("no answer")
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
	for range 100 {
		send()
	}
	if n := testing.AllocsPerRun(500, send); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"opened": 1, "mirrored": 601})
}

// A dial that fails while others are in progress fails nothing: the
// requests wait for the other dials, and all are mirrored.
func TestPoolOneDialFails(t *testing.T) {
	ts, _ := newRecordingServer(t, false, nil)
	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		n := dials.Add(1)
		time.Sleep(time.Duration(n) * 5 * time.Millisecond) // the first ends first
		if n == 1 {
			return nil, errors.New("connection refused (test)")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	s := newSender(t, SenderConfig{URL: ts.URL, Dial: dial})
	st := s.Stats()
	const n = 30
	for i := range n {
		s.Send(request(t, clientAddr(i), 0, ""), nil)
	}
	waitFor(t, "all ended", func() bool { return st.Mirrored.Load()+failures(st) == n })
	closeSender(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": n})
}
