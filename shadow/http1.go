package shadow

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// directWriteMax is the largest request that the goroutine which assigns it
// to an idle connection writes itself (Send, on the capture path, or a
// connection's reader), by one write that never waits (writeDirect). An
// established TCP connection with nothing queued takes that much into its
// socket buffer at once (Linux sizes the send buffer from the congestion
// window, over 40 KiB on a fresh connection), so that the write is usually
// whole; what the socket does not take (a shadow that stopped reading) goes
// to a writer goroutine. Larger requests, streamed bodies, requests
// pipelined behind others and every request on a TLS connection go to a
// writer goroutine.
const directWriteMax = 32 << 10

// maxKeptWriteBuffer is the largest write buffer a connection keeps between
// requests; a larger one goes back to the GC.
const maxKeptWriteBuffer = 64 << 10

// HTTP1Sender sends each request as its own HTTP/1.1 request on a pool of
// keep-alive connections to the shadow, as Envoy sends mirrors: the pool
// grows while every connection is busy (up to MaxConnections), and closes
// connections idle for IdleTimeout. By default a connection carries one
// request at a time, so a slow or endless answer holds its own connection
// and nothing else.
//
// A request costs one write and one wake-up when a connection is idle: the
// caller of Send writes it (it is small, the connection plain TCP, and the
// write one that never waits on the socket), and the
// connection's reader goroutine, parked in the netpoller, reads the answer,
// counts it and takes the next waiting request itself. Requests that find
// no idle connection wait in a bounded line (MaxPending) that freed and new
// connections take from.
type HTTP1Sender struct {
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
	wg       sync.WaitGroup // connection and writer goroutines
	timer    *time.Timer    // expires pending requests

	mu         sync.Mutex
	closed     bool      // Close was called: Send takes nothing more
	aborting   bool      // Close stopped waiting: everything left fails
	conns      []*h1conn // open connections
	idle       []*h1conn // open connections carrying nothing, most recently freed last
	connecting int       // dials and handshakes in progress
	inFlight   int       // requests on connections
	pending    deque     // requests waiting for a connection
	waiting    int       // pending plus Ordered requests waiting for their turn
	flows      map[flowKey]*flow
	bo         backoff
	timerAt    time.Time // when timer fires, zero when stopped
	sent       sentOnce  // requests counted in Stats.Sent and put back in line

	// rearms counts the read timeouts that came before what was due (a
	// deadline left early) and were moved on (connReader).
	rearms atomic.Uint64

	closeDone chan struct{}
	closeErr  error
}

var _ Sender = (*HTTP1Sender)(nil)

// NewHTTP1 checks cfg and returns a sender that speaks HTTP/1.1 to the
// shadow. It dials nothing until the first request.
func NewHTTP1(cfg SenderConfig) (*HTTP1Sender, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	ep, err := newEndpoint(&cfg, "http/1.1")
	if err != nil {
		return nil, err
	}
	// Answers are not held on HTTP/1 (see AnswerHold): each has a
	// connection of its own, which an answer read late keeps busy, and
	// the pool grows by what it holds.
	ep.hold = nil
	s := &HTTP1Sender{
		ep: ep, rw: cfg.Rewriter, set: set, stats: cfg.Stats, wait: cfg.Wait, ordered: cfg.Ordered,
		closing: make(chan struct{}), closeDone: make(chan struct{}),
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
	s.timer = time.AfterFunc(time.Hour, s.expirePending)
	s.timer.Stop()
	return s, nil
}

// Stats returns the counters the sender updates.
func (s *HTTP1Sender) Stats() *Stats { return s.stats }

// placed says where dispatch put a request.
type placed uint8

const (
	placedDirect   placed = iota // on an idle connection: the caller writes it
	placedConn                   // on a connection, written by its writer goroutine
	placedPending                // waiting for a connection
	placedWaiting                // Ordered: waiting for the request before it
	placedOverflow               // not placed: MaxPending are waiting
	placedFailed                 // ended at once: fail says why
)

// Send takes r for the shadow; see Sender. With a free connection r is
// written before Send returns (small requests) or handed to the
// connection's writer; otherwise it waits for one, bounded by MaxPending.
func (s *HTTP1Sender) Send(r httpmsg.Request, tag any) bool {
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
		case placedDirect:
			c.writeDirect(rec)
		case placedFailed:
			s.l.end(rec, outcome{fail: fail})
		}
		return true
	}
}

// placeLocked puts a new request in line: behind its client connection's
// previous one (Ordered), or on a connection, or waiting for one.
func (s *HTTP1Sender) placeLocked(rec *record, now time.Time) (*h1conn, placed, FailReason) {
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
// are already counted and always find a place.
func (s *HTTP1Sender) dispatchLocked(rec *record, front, fresh bool, now time.Time) (*h1conn, placed, FailReason) {
	if s.aborting {
		return nil, placedFailed, FailShutdown
	}
	// A new request does not overtake those already waiting (with
	// Pipeline, a connection may have room while they wait for half of it
	// to be answered).
	if front || s.pending.len() == 0 {
		if c := s.pickLocked(); c != nil {
			if s.assignLocked(c, rec) {
				return c, placedDirect, 0
			}
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
		// Dial again for it once the backoff ends.
		s.armLocked(s.bo.until, now)
	}
	return nil, placedPending, 0
}

// pickLocked returns a connection that can take a request now: the idle one
// freed last (so that the others age and time out), or with Pipeline the
// open one carrying the fewest, below Pipeline.
func (s *HTTP1Sender) pickLocked() *h1conn {
	if s.inFlight >= s.set.maxRequests {
		return nil
	}
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
		c.idleIdx = -1
		return c
	}
	if s.set.pipe == 1 {
		return nil
	}
	var best *h1conn
	for _, c := range s.conns {
		if !c.dead && len(c.ring) < s.set.pipe && (best == nil || len(c.ring) < len(best.ring)) {
			best = c
		}
	}
	return best
}

// assignLocked puts rec on c. It reports true when the caller is to write
// rec itself (writeDirect); otherwise c's writer goroutine writes it.
func (s *HTTP1Sender) assignLocked(c *h1conn, rec *record) bool {
	wasIdle := len(c.ring) == 0
	c.ring = append(c.ring, rec)
	rec.reused = c.answered > 0
	s.inFlight++
	s.stats.addInFlight(1)
	if wasIdle {
		c.setGauge(gaugeBusy)
	}
	if wasIdle {
		c.armReadLocked(rec.deadline)
	}
	if wasIdle && !c.writing && c.plain && rec.size <= directWriteMax-1024 && rec.req.Stream() == nil {
		c.writing = true
		c.nwritten++
		c.armWriteLocked(rec.deadline)
		return true
	}
	if !c.writing {
		c.writing = true
		s.wg.Add(1)
		go c.writeLoop()
	}
	return false
}

// maybeDialLocked opens connections while the pending requests outnumber
// what the open connections have room for and the connections being opened
// will carry, within MaxConnections and MaxRequests, unless dialling backs
// off.
func (s *HTTP1Sender) maybeDialLocked(now time.Time) {
	room := max(len(s.conns)*s.set.pipe-s.inFlight, 0)
	for s.pending.len() > room+s.connecting*s.set.pipe &&
		s.connecting < maxDials(len(s.conns)) &&
		len(s.conns)+s.connecting < s.set.maxConns &&
		s.inFlight+s.connecting*s.set.pipe < s.set.maxRequests &&
		!s.aborting && !s.bo.active(now) {
		s.connecting++
		s.stats.ConnectionsConnecting.Add(1)
		c := &h1conn{s: s, idleIdx: -1, openIdx: -1}
		c.cond.L = &s.mu
		c.ctx, c.cancel = context.WithCancel(s.abortCtx)
		s.wg.Add(1)
		go c.run()
	}
}

// dialFailed is a dial or handshake that failed: dialling backs off, and
// when no connection is open and no other dial is in progress, the pending
// requests fail with reason.
func (s *HTTP1Sender) dialFailed(reason FailReason) {
	var w work
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
		// The last dial failed: nothing will carry what waits. (While
		// other dials are in progress, the requests wait for them: a
		// burst dials a few connections at a time, maxDials.)
		for s.pending.len() > 0 {
			rec := s.pending.popFront()
			s.addWaiting(-1)
			s.endLocked(rec, outcome{fail: reason}, now, &w)
		}
	} else if s.pending.len() > 0 && !s.aborting {
		// The open connections carry the pending requests meanwhile;
		// dial again for them once the backoff ends.
		s.armLocked(s.bo.until, now)
	}
	s.mu.Unlock()
	s.flush(&w)
}

// freeLocked gives c, which has room, requests from the pending line; when
// it gets none it becomes idle (or closes, once Close was called).
func (s *HTTP1Sender) freeLocked(c *h1conn, now time.Time, w *work) {
	// Pipelined, a connection takes more once half of it is answered, so
	// that the next write carries a batch while the other half keeps the
	// shadow busy.
	if len(c.ring) > s.set.pipe/2 {
		return
	}
	for !c.dead && len(c.ring) < s.set.pipe && s.pending.len() > 0 && s.inFlight < s.set.maxRequests {
		rec := s.pending.popFront()
		s.addWaiting(-1)
		if !now.Before(rec.deadline) {
			s.endLocked(rec, outcome{fail: FailTimeout}, now, w)
			continue
		}
		if s.assignLocked(c, rec) {
			w.writes = append(w.writes, pendingWrite{c, rec})
		}
	}
	if len(c.ring) > 0 || c.dead || c.idleIdx >= 0 {
		return
	}
	if s.closed && s.waiting == 0 {
		c.shutLocked(w)
		return
	}
	c.idleIdx = len(s.idle)
	s.idle = append(s.idle, c)
	c.idleUntil = now.Add(s.set.idle)
	c.armReadLocked(c.idleUntil)
}

// removeIdleLocked takes c out of the idle stack, keeping the others' order.
func (s *HTTP1Sender) removeIdleLocked(c *h1conn) {
	i := c.idleIdx
	if i < 0 {
		return
	}
	copy(s.idle[i:], s.idle[i+1:])
	s.idle[len(s.idle)-1] = nil
	s.idle = s.idle[:len(s.idle)-1]
	for _, d := range s.idle[i:] {
		d.idleIdx--
	}
	c.idleIdx = -1
}

// sentAgainLocked is called when rec goes back in line after c failed: if
// its write was counted in Stats.Sent, the next one is not.
func (s *HTTP1Sender) sentAgainLocked(rec *record) {
	if rec.wdone && rec.werr == nil {
		s.sent.add(rec)
	}
}

// addWaiting moves the count of waiting requests, and wakes a Send that
// waits for room when it falls.
func (s *HTTP1Sender) addWaiting(d int) {
	s.waiting += d
	s.stats.Pending.Add(int64(d))
	if d < 0 {
		s.l.signalRoom()
	}
}

// endLocked notes that rec ended with o: its Ordered successor may go, and
// the ledger counts it once the lock is released (flush).
func (s *HTTP1Sender) endLocked(rec *record, o outcome, now time.Time, w *work) {
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
		case placedDirect:
			w.writes = append(w.writes, pendingWrite{c, next})
		case placedFailed:
			next.flow = nil
			w.ends = append(w.ends, ending{next, outcome{fail: fail}})
			continue
		}
		next.flow = f
		return
	}
}

// armLocked makes the pending timer fire by deadline.
func (s *HTTP1Sender) armLocked(deadline, now time.Time) {
	if s.timerAt.IsZero() || deadline.Before(s.timerAt) {
		s.timerAt = deadline
		s.timer.Reset(deadline.Sub(now))
	}
}

// expirePending fails the pending requests whose Timeout ran out while they
// waited for a connection, and dials for the others when a backoff ended.
func (s *HTTP1Sender) expirePending() {
	var w work
	now := time.Now()
	s.mu.Lock()
	s.timerAt = time.Time{}
	for s.pending.len() > 0 && !now.Before(s.pending.front().deadline) {
		rec := s.pending.popFront()
		s.addWaiting(-1)
		s.endLocked(rec, outcome{fail: FailTimeout}, now, &w)
	}
	if s.pending.len() > 0 && !s.aborting {
		s.maybeDialLocked(now)
		s.armLocked(s.pending.front().deadline, now)
		if s.bo.active(now) {
			s.armLocked(s.bo.until, now)
		}
	}
	s.mu.Unlock()
	s.flush(&w)
}

// work is what a goroutine does once it has released the lock: close
// connections, write requests it assigned to idle ones, and end requests.
type work struct {
	closes []*h1conn
	writes []pendingWrite
	ends   []ending
}

type pendingWrite struct {
	c   *h1conn
	rec *record
}

type ending struct {
	rec *record
	o   outcome
}

func (s *HTTP1Sender) flush(w *work) {
	for _, c := range w.closes {
		c.raw.Close()
	}
	for _, p := range w.writes {
		p.c.writeDirect(p.rec)
	}
	for _, e := range w.ends {
		s.l.end(e.rec, e.o)
	}
	clear(w.closes)
	clear(w.writes)
	clear(w.ends)
	w.closes, w.writes, w.ends = w.closes[:0], w.writes[:0], w.ends[:0]
}

// Close stops taking requests and lets those queued and in flight finish
// until ctx is done; then it fails the rest (FailShutdown) and returns ctx's
// error. Idle connections close at once, the others once their last
// answer is read. It returns when every goroutine of the sender has ended.
// Later calls wait for the first one.
func (s *HTTP1Sender) Close(ctx context.Context) error {
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
	var w work
	for _, c := range slices.Clone(s.idle) {
		c.shutLocked(&w)
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
func (s *HTTP1Sender) abortAll() {
	var w work
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
