package shadow

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// HTTP2Sender sends each request as a stream of its own on a few HTTP/2
// connections to the shadow: h2c with prior knowledge for an http://
// shadow, h2 negotiated by ALPN for https://. A connection carries as many
// streams as the shadow's SETTINGS_MAX_CONCURRENT_STREAMS allows; another
// is opened only when every open one is full (up to MaxConnections), and
// new streams go to the oldest connection with room, so that the extra ones
// empty and close after IdleTimeout.
//
// The implementation is this package's own, on x/net's Framer (to read
// frames) and hpack.Encoder, rather than x/net's Transport.NewClientConn
// on connections we dial. The Transport cannot send what a mirror must:
// it takes an http.Request, so the fields lose their order (a map), the
// pseudo-header fields go in its own order, and it adds user-agent and
// accept-encoding where the client sent none; its RoundTrip also costs a
// goroutine, an http.Request and an http.Response per request.
// BenchmarkHTTP2Sink and BenchmarkXNetClientConn measure both against the
// same h2c sink (net/http's server, in a child process, so that its CPU is
// not counted), sending as fast as they go, on the 2-core VM
// (go test -bench 'HTTP2Sink|XNet' -benchmem -benchtime=20000x):
//
//	this sender                 10-17 µs CPU, 1-2 allocs, 160-420 B per request
//	x/net ClientConn.RoundTrip  40-48 µs CPU, 57-67 allocs, 7 KB per request
//
// The one allocation left is x/net's Framer's HEADERS frame of each
// answer.
//
// Each connection has one reader goroutine (run: it dials, then reads
// frames and ends streams) and one writer goroutine (writeLoop), woken
// when there is something to write: Send and the reader only append frames
// to the connection's batch under the sender's lock, so that capture never
// waits for a socket. A streaming body (Request.Stream) has a goroutine of
// its own that moves chunks from the stream to its DATA frames, one batch
// at a time, as the flow-control windows let them go.
type HTTP2Sender struct {
	ep      *endpoint
	rw      *Rewriter
	set     settings
	l       ledger
	stats   *Stats
	wait    context.Context // nil for live capture
	ordered bool

	closing  chan struct{} // closed by Close
	abortCtx context.Context
	abort    context.CancelFunc
	wg       sync.WaitGroup // connection, writer and body goroutines
	timer    *time.Timer    // expires pending and in-flight requests, idle connections

	mu         sync.Mutex
	closed     bool      // Close was called: Send takes nothing more
	aborting   bool      // Close stopped waiting: everything left fails
	conns      []*h2conn // open connections, oldest first
	connecting int       // dials and handshakes in progress
	inFlight   int       // streams on connections
	pending    deque     // requests waiting for a stream
	waiting    int       // pending plus Ordered requests waiting for their turn
	flows      map[flowKey]*flow
	bo         backoff
	timerAt    time.Time // when timer fires, zero when stopped
	sent       sentOnce  // requests counted in Stats.Sent and put back in line
	// peerStreams is the SETTINGS_MAX_CONCURRENT_STREAMS of the last
	// connection opened: what a connection being opened is expected to
	// carry, so that a burst does not dial one connection per request.
	peerStreams int

	closeDone chan struct{}
	closeErr  error
}

var _ Sender = (*HTTP2Sender)(nil)

// NewHTTP2 checks cfg and returns a sender that speaks HTTP/2 to the
// shadow. Pipeline is ignored (HTTP/2 multiplexes). It dials nothing until
// the first request.
func NewHTTP2(cfg SenderConfig) (*HTTP2Sender, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	ep, err := newEndpoint(&cfg, "h2")
	if err != nil {
		return nil, err
	}
	s := &HTTP2Sender{
		ep: ep, rw: cfg.Rewriter, set: set, stats: cfg.Stats, wait: cfg.Wait, ordered: cfg.Ordered,
		closing: make(chan struct{}), closeDone: make(chan struct{}), peerStreams: defaultPeerStreams,
	}
	if s.rw == nil {
		s.rw, _ = NewRewriter(RewriteConfig{})
	}
	s.rw = s.rw.forScheme(ep.scheme)
	if s.stats == nil {
		s.stats = new(Stats)
	}
	if s.ordered {
		s.flows = map[flowKey]*flow{}
	}
	s.l.init(s.stats, cfg.Answer, set.maxBytes, cfg.Wait != nil)
	s.abortCtx, s.abort = context.WithCancel(context.Background())
	s.timer = time.AfterFunc(time.Hour, s.expire)
	s.timer.Stop()
	return s, nil
}

// Stats returns the counters the sender updates.
func (s *HTTP2Sender) Stats() *Stats { return s.stats }

// h2work is what a goroutine does once it has released the lock: wake
// writers, close connections, end requests.
type h2work struct {
	kicks  []*h2conn
	closes []net.Conn
	ends   []ending
}

func (w *h2work) kick(c *h2conn) {
	if !slices.Contains(w.kicks, c) {
		w.kicks = append(w.kicks, c)
	}
}

func (s *HTTP2Sender) flush(w *h2work) {
	for _, nc := range w.closes {
		nc.Close()
	}
	for _, c := range w.kicks {
		c.kick()
	}
	for _, e := range w.ends {
		s.l.end(e.rec, e.o)
	}
	clear(w.kicks)
	clear(w.closes)
	clear(w.ends)
	w.kicks, w.closes, w.ends = w.kicks[:0], w.closes[:0], w.ends[:0]
}

// Send takes r for the shadow; see Sender. With room on a connection, r's
// HEADERS are encoded into the connection's next write before Send returns
// and its writer is woken; otherwise r waits for a stream, bounded by
// MaxPending.
func (s *HTTP2Sender) Send(r httpmsg.Request, tag any) bool {
	size, ok := s.l.admit(r, s.wait, s.closing)
	if !ok {
		return false
	}
	now := time.Now()
	rec := newRecord(r, tag, size, now)
	for retry := false; ; retry = true {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.l.refuse(rec, DropClosed)
			return false
		}
		if retry {
			now = time.Now()
		}
		s.l.live.Add(1)
		c, how, fail := s.placeLocked(rec, now)
		if how == placedOverflow {
			s.l.live.Add(-1)
			s.mu.Unlock()
			if s.wait != nil && s.l.waitRoom(s.wait, s.closing) {
				continue
			}
			s.l.refuse(rec, s.l.giveUpReason())
			return false
		}
		s.stats.Queued.Add(1)
		s.mu.Unlock()
		switch how {
		case placedConn:
			c.kick()
		case placedFailed:
			s.l.end(rec, outcome{fail: fail})
		}
		return true
	}
}

// placeLocked puts a new request in line: behind its client connection's
// previous one (Ordered), or on a connection, or waiting for one.
func (s *HTTP2Sender) placeLocked(rec *record, now time.Time) (*h2conn, placed, FailReason) {
	if !s.ordered {
		rec.deadline = now.Add(s.set.timeout)
		return s.dispatchLocked(rec, false, true, now)
	}
	key := flowKey{rec.req.Client(), rec.req.Server()}
	if f := s.flows[key]; f != nil {
		if s.waiting >= s.set.maxPending {
			return nil, placedOverflow, 0
		}
		rec.flow = f
		f.push(rec)
		s.addWaiting(1)
		return nil, placedWaiting, 0
	}
	rec.deadline = now.Add(s.set.timeout)
	c, how, fail := s.dispatchLocked(rec, false, true, now)
	if how != placedOverflow && how != placedFailed {
		f := &flow{key: key}
		s.flows[key] = f
		rec.flow = f
	}
	return c, how, fail
}

// dispatchLocked puts a request that may go now on a connection, or in the
// pending line (at its front when it was there before: retried and
// requeued requests). fresh requests overflow past MaxPending; the others
// are already counted and always find a place. The caller wakes the
// connection's writer (placedConn) once it has released the lock.
func (s *HTTP2Sender) dispatchLocked(rec *record, front, fresh bool, now time.Time) (*h2conn, placed, FailReason) {
	if s.aborting {
		return nil, placedFailed, FailShutdown
	}
	// A new request does not overtake those already waiting.
	if front || s.pending.len() == 0 {
		if c := s.pickLocked(); c != nil {
			c.startLocked(rec, now)
			return c, placedConn, 0
		}
	}
	if fresh && s.waiting >= s.set.maxPending {
		return nil, placedOverflow, 0
	}
	if len(s.conns) == 0 && s.connecting == 0 && s.bo.active(now) {
		// Nothing could carry it before the backoff ends: fail fast
		// rather than fill the line.
		return nil, placedFailed, FailBackoff
	}
	if front {
		s.pending.pushFront(rec)
	} else {
		s.pending.pushBack(rec)
	}
	s.addWaiting(1)
	s.armLocked(rec.deadline, now)
	s.maybeDialLocked(now)
	if s.bo.active(now) {
		s.armLocked(s.bo.until, now)
	}
	return nil, placedPending, 0
}

// pickLocked returns the oldest connection that can take a stream now.
func (s *HTTP2Sender) pickLocked() *h2conn {
	if s.inFlight >= s.set.maxRequests {
		return nil
	}
	for _, c := range s.conns {
		if c.canTakeLocked() {
			return c
		}
	}
	return nil
}

// roomLocked is how many more streams the open connections take now.
func (s *HTTP2Sender) roomLocked() int {
	n := 0
	for _, c := range s.conns {
		if c.canTakeLocked() {
			n += c.maxStreams - c.active
		}
	}
	return n
}

// maybeDialLocked opens connections while the pending requests outnumber
// what the open connections have room for and the connections being opened
// are expected to carry, within MaxConnections and MaxRequests, unless
// dialling backs off.
func (s *HTTP2Sender) maybeDialLocked(now time.Time) {
	if s.noStreamsAllowedLocked() {
		// The shadow takes no stream now (SETTINGS_MAX_CONCURRENT_STREAMS
		// 0, RFC 9113 6.5.2): another connection would be told the same.
		// The requests wait for it to allow streams, or for their Timeout.
		return
	}
	room := s.roomLocked()
	for s.pending.len() > room+s.expectedLocked() &&
		s.connecting < maxDials(len(s.conns)) &&
		len(s.conns)+s.connecting < s.set.maxConns &&
		s.inFlight+room+s.expectedLocked() < s.set.maxRequests &&
		!s.aborting && !s.bo.active(now) {
		s.connecting++
		s.stats.ConnectionsConnecting.Add(1)
		c := newH2Conn(s)
		s.wg.Add(1)
		go c.run()
	}
}

// noStreamsAllowedLocked reports whether connections are open and none of
// them allows a stream (SETTINGS_MAX_CONCURRENT_STREAMS 0).
func (s *HTTP2Sender) noStreamsAllowedLocked() bool {
	for _, c := range s.conns {
		if !c.dead && c.maxStreams > 0 {
			return false
		}
	}
	return len(s.conns) > 0
}

// expectedLocked is how many streams the connections being opened are
// expected to carry: at least one each, so that a shadow that allowed none
// on its last connection does not make every pending request dial.
func (s *HTTP2Sender) expectedLocked() int {
	return s.connecting * max(s.peerStreams, 1)
}

// dialFailed is a dial or handshake that failed: dialling backs off, and
// when no connection is open and no other dial is in progress, the pending
// requests fail with reason.
func (s *HTTP2Sender) dialFailed(reason FailReason) {
	var w h2work
	now := time.Now()
	s.mu.Lock()
	s.connecting--
	s.stats.ConnectionsConnecting.Add(-1)
	if s.aborting {
		reason = FailShutdown
	} else {
		s.bo.failed(now)
	}
	if len(s.conns) == 0 && s.connecting == 0 {
		// The last dial failed: nothing will carry what waits.
		for s.pending.len() > 0 {
			rec := s.pending.popFront()
			s.addWaiting(-1)
			s.endLocked(rec, outcome{fail: reason}, now, &w)
		}
	} else if s.pending.len() > 0 && !s.aborting {
		s.armLocked(s.bo.until, now)
	}
	s.mu.Unlock()
	s.flush(&w)
}

// addWaiting moves the count of waiting requests, and wakes a Send that
// waits for room when it falls.
func (s *HTTP2Sender) addWaiting(d int) {
	s.waiting += d
	s.stats.Pending.Add(int64(d))
	if d < 0 {
		s.l.signalRoom()
	}
}

// endLocked notes that rec ended with o: its Ordered successor may go, and
// the ledger counts it once the lock is released (flush).
func (s *HTTP2Sender) endLocked(rec *record, o outcome, now time.Time, w *h2work) {
	w.ends = append(w.ends, ending{rec, o})
	s.sent.forget(rec)
	f := rec.flow
	if f == nil {
		return
	}
	rec.flow = nil
	for {
		next := f.pop()
		if next == nil {
			delete(s.flows, f.key)
			return
		}
		s.addWaiting(-1)
		next.deadline = now.Add(s.set.timeout)
		c, how, fail := s.dispatchLocked(next, false, false, now)
		switch how {
		case placedConn:
			w.kick(c)
		case placedFailed:
			next.flow = nil
			w.ends = append(w.ends, ending{next, outcome{fail: fail}})
			continue
		}
		next.flow = f
		return
	}
}

// redispatchLocked puts requests back in line, in their order and ahead of
// the new ones: on connections with room, or at the front of the pending
// line.
func (s *HTTP2Sender) redispatchLocked(recs []*record, now time.Time, w *h2work) {
	for i, rec := range recs {
		if s.aborting {
			s.endLocked(rec, outcome{fail: FailShutdown}, now, w)
			continue
		}
		if c := s.pickLocked(); c != nil {
			c.startLocked(rec, now)
			w.kick(c)
			continue
		}
		rest := recs[i:]
		if len(s.conns) == 0 && s.connecting == 0 && s.bo.active(now) {
			for _, r := range rest {
				s.endLocked(r, outcome{fail: FailBackoff}, now, w)
			}
			return
		}
		for j := len(rest) - 1; j >= 0; j-- {
			s.pending.pushFront(rest[j])
			s.addWaiting(1)
			s.armLocked(rest[j].deadline, now)
		}
		s.maybeDialLocked(now)
		return
	}
}

// takePendingLocked gives c, which may have room, streams from the
// pending line.
func (s *HTTP2Sender) takePendingLocked(c *h2conn, now time.Time, w *h2work) {
	for s.pending.len() > 0 && c.canTakeLocked() && s.inFlight < s.set.maxRequests {
		rec := s.pending.popFront()
		s.addWaiting(-1)
		if !now.Before(rec.deadline) {
			s.endLocked(rec, outcome{fail: FailTimeout}, now, w)
			continue
		}
		c.startLocked(rec, now)
		w.kick(c)
	}
}

// armLocked makes the timer fire by deadline.
func (s *HTTP2Sender) armLocked(deadline, now time.Time) {
	if s.timerAt.IsZero() || deadline.Before(s.timerAt) {
		s.timerAt = deadline
		s.timer.Reset(deadline.Sub(now))
	}
}

// expire runs when something may be due: it fails the pending requests and
// the streams whose Timeout ran out, closes the connections idle for
// IdleTimeout, dials for the pending requests once a backoff ended, and
// arms the timer for what is due next. The timer is armed only earlier,
// never later, as requests come, so under steady load it fires about once
// per Timeout.
func (s *HTTP2Sender) expire() {
	var w h2work
	now := time.Now()
	s.mu.Lock()
	s.timerAt = time.Time{}
	for s.pending.len() > 0 && !now.Before(s.pending.front().deadline) {
		rec := s.pending.popFront()
		s.addWaiting(-1)
		s.endLocked(rec, outcome{fail: FailTimeout}, now, &w)
	}
	var next time.Time
	due := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, c := range slices.Clone(s.conns) {
		c.expireLocked(now, &w, due)
	}
	if s.pending.len() > 0 && !s.aborting {
		s.maybeDialLocked(now)
		due(s.pending.front().deadline)
		if s.bo.active(now) {
			due(s.bo.until)
		}
	}
	if !next.IsZero() {
		s.armLocked(next, now)
	}
	s.mu.Unlock()
	s.flush(&w)
}

// Close stops taking requests and lets those queued and in flight finish
// until ctx is done; then it fails the rest (FailShutdown) and returns
// ctx's error. Idle connections are sent GOAWAY and closed at once, the
// others once their last stream ends. It returns when every goroutine of
// the sender has ended. Later calls wait for the first one.
func (s *HTTP2Sender) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		select {
		case <-s.closeDone:
			return s.closeErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.closed = true
	s.l.closed.Store(true)
	close(s.closing)
	var w h2work
	for _, c := range s.conns {
		if c.active == 0 {
			c.goAwayLocked(CloseShutdown, &w)
		}
	}
	s.mu.Unlock()
	s.flush(&w)

	var err error
	if s.l.live.Load() != 0 {
		select {
		case <-s.l.drained:
		case <-ctx.Done():
			err = ctx.Err()
			s.abortAll()
			if s.l.live.Load() != 0 {
				<-s.l.drained
			}
		}
	}
	// Nothing is left: close what is still open and stop dialling.
	s.mu.Lock()
	s.aborting = true
	for _, c := range s.conns {
		c.shutLocked(&w)
	}
	s.mu.Unlock()
	s.abort()
	s.flush(&w)
	s.wg.Wait()
	s.timer.Stop()
	s.closeErr = err
	close(s.closeDone)
	return err
}

// abortAll fails what waits and closes every connection; their readers
// fail what they carry. Ordered requests behind a failed one fail with it.
func (s *HTTP2Sender) abortAll() {
	var w h2work
	now := time.Now()
	s.mu.Lock()
	s.aborting = true
	for s.pending.len() > 0 {
		rec := s.pending.popFront()
		s.addWaiting(-1)
		s.endLocked(rec, outcome{fail: FailShutdown}, now, &w)
	}
	for _, c := range s.conns {
		c.shutLocked(&w)
	}
	s.mu.Unlock()
	s.abort()
	s.flush(&w)
}
