package shadow

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
)

const (
	// maxBatchRequests and maxBatchBytes bound one write: enough to turn a
	// burst into one syscall, small enough that the first request of a batch
	// is not held back long.
	maxBatchRequests = 64
	maxBatchBytes    = 64 << 10
	// maxKeptWriteBuffer is the largest write buffer a worker keeps between
	// batches; a larger one (a request with a big body) goes back to the GC.
	maxKeptWriteBuffer = 1 << 20

	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// item is a request the Sender holds, with what it needs to account for it.
type item struct {
	req  *httpframe.Request
	size int64     // bytes charged to the byte budget
	enq  time.Time // when Send queued it
}

// record is a written request awaiting its response.
type record struct {
	item
	written time.Time
	head    bool // HEAD: the response has no body whatever it says
}

// worker owns one queue and, at a time, one connection to the shadow. The
// worker goroutine is the only writer of the connection; the connection's
// reader goroutine is the only reader. They share the ring of records in
// flight, in write order, under mu.
type worker struct {
	s     *Sender
	queue chan item

	// Owned by the worker goroutine.
	pending []item // taken from the queue or requeued, not yet written, oldest first
	spare   []item // scratch for putting items back in front of pending
	batch   []item
	wbuf    []byte
	br      *bufio.Reader // reused by every connection's reader, one at a time
	backoff time.Duration
	retryAt time.Time

	mu    sync.Mutex
	cond  sync.Cond // signalled when a record leaves the ring or the connection dies
	ring  []record  // fixed size MaxInFlight
	rhead int
	rlen  int

	// connMu lets Close reach the current connection; only the worker
	// goroutine changes cur.
	connMu  sync.Mutex
	cur     *conn
	aborted bool
}

func newWorker(s *Sender, queue, inFlight int) *worker {
	w := &worker{
		s:     s,
		queue: make(chan item, queue),
		batch: make([]item, 0, maxBatchRequests),
		br:    bufio.NewReaderSize(nil, readBufferSize),
		ring:  make([]record, inFlight),
	}
	w.cond.L = &w.mu
	return w
}

// conn is one connection to the shadow and the state its two goroutines
// agree on. The fields after done are guarded by worker.mu.
type conn struct {
	w    *worker
	nc   net.Conn
	done chan struct{} // closed when the reader goroutine has let go of the ring

	// dead means no record may be added any more. Records still in the ring
	// once the reader has finished were written after the response that
	// ended the connection, so the server never read them: they are
	// requeued. (When the connection fails, the reader fails them instead.)
	dead     bool
	failed   bool // ended by an error while requests were in flight
	answered bool // at least one complete response was read
	// ext is set when the worker or Close closed the connection: extReason
	// then applies to every record in flight.
	ext       bool
	extReason FailReason
}

func (c *conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// run is the worker goroutine.
func (w *worker) run() {
	defer w.s.wg.Done()
	draining := false
	for {
		if c := w.cur; c != nil && c.isDone() {
			w.reap(c)
			continue
		}
		if w.s.aborting() {
			w.abortAll()
			return
		}
		if len(w.pending) == 0 {
			if !w.waitWork(&draining) {
				return
			}
			continue
		}
		w.writeBatch()
	}
}

// waitWork waits for a request, for the connection to end, or for Close. It
// returns false when the worker has drained everything and may exit.
func (w *worker) waitWork(draining *bool) bool {
	var connDone <-chan struct{}
	if w.cur != nil {
		connDone = w.cur.done
	}
	if !*draining {
		select {
		case it := <-w.queue:
			w.pending = append(w.pending, it)
		case <-connDone:
		case <-w.s.stop:
			*draining = true
		case <-w.s.abortCtx.Done():
		}
		return true
	}
	select {
	case it := <-w.queue:
		w.pending = append(w.pending, it)
		return true
	default:
	}
	// Nothing queued or pending: wait for the answers in flight, then close.
	c := w.cur
	if c == nil {
		return false
	}
	w.mu.Lock()
	for w.rlen > 0 && !c.dead {
		w.cond.Wait()
	}
	idle := !c.dead
	if idle {
		c.ext, c.extReason = true, FailShutdown
	}
	w.mu.Unlock()
	if !idle {
		return true // the connection ended; run reaps it and goes on
	}
	c.nc.Close()
	w.reap(c)
	return false
}

// writeBatch writes as many pending and queued requests as the pipeline has
// room for, in one write.
func (w *worker) writeBatch() {
	s := w.s
	c := w.cur
	if c == nil {
		if time.Now().Before(w.retryAt) {
			// Fail fast while backing off: waiting would only fill the queue.
			w.failPending(FailBackoff)
			return
		}
		var reason FailReason
		if c, reason = w.dial(); c == nil {
			w.failPending(reason)
			return
		}
	}

	w.mu.Lock()
	if w.rlen == len(w.ring) {
		// The pipeline is full: wait until half of it has been answered, so
		// that the next write carries a batch rather than one request per
		// response. The other half keeps the server busy meanwhile.
		for w.rlen > len(w.ring)/2 && !c.dead {
			w.cond.Wait()
		}
	}
	dead, room := c.dead, len(w.ring)-w.rlen
	w.mu.Unlock()
	if dead {
		w.reap(c)
		return
	}

	w.gather(room)
	buf := w.wbuf[:0]
	for i := range w.batch {
		buf = s.rw.AppendRequest(buf, w.batch[i].req)
	}
	now := time.Now()
	w.mu.Lock()
	if c.dead {
		w.mu.Unlock()
		w.unget()
		w.reap(c)
		return
	}
	if w.rlen == 0 {
		// The first request in line starts the response clock.
		c.nc.SetReadDeadline(now.Add(s.timeout))
	}
	for i := range w.batch {
		it := w.batch[i]
		w.push(record{item: it, written: now, head: string(it.req.Bytes(it.req.MethodSpan)) == "HEAD"})
	}
	w.mu.Unlock()
	// From here on the reader may complete and release the batch's requests:
	// only the copies of the items in w.batch are used.
	n := len(w.batch)
	for i := range w.batch {
		s.stats.QueueDelay.Observe(now.Sub(w.batch[i].enq))
	}
	clear(w.batch)
	w.batch = w.batch[:0]

	c.nc.SetWriteDeadline(now.Add(s.timeout))
	_, err := c.nc.Write(buf)
	if cap(buf) <= maxKeptWriteBuffer {
		w.wbuf = buf[:0]
	} else {
		w.wbuf = nil
	}
	if err != nil {
		w.writeFailed(c, n)
		return
	}
	s.stats.Sent.Add(uint64(n))
}

// gather moves up to room requests into w.batch: pending ones first (they
// are older), then queued ones.
func (w *worker) gather(room int) {
	limit := min(room, maxBatchRequests)
	var bytes int64
	k := 0
	for k < len(w.pending) && len(w.batch) < limit && bytes < maxBatchBytes {
		w.batch = append(w.batch, w.pending[k])
		bytes += w.pending[k].size
		k++
	}
	n := copy(w.pending, w.pending[k:])
	clear(w.pending[n:])
	w.pending = w.pending[:n]
	for n == 0 && len(w.batch) < limit && bytes < maxBatchBytes {
		select {
		case it := <-w.queue:
			w.batch = append(w.batch, it)
			bytes += it.size
		default:
			return
		}
	}
}

// unget puts the unwritten batch back in front of pending.
func (w *worker) unget() {
	w.prepend(w.batch)
	clear(w.batch)
	w.batch = w.batch[:0]
}

func (w *worker) prepend(items []item) {
	w.spare = append(append(w.spare[:0], items...), w.pending...)
	clear(w.pending)
	w.pending, w.spare = w.spare, w.pending[:0]
}

// writeFailed handles a failed write of the last n records: those still
// unanswered fail with reason write, the connection is closed and the
// requests before them fail as aborted.
func (w *worker) writeFailed(c *conn, n int) {
	w.mu.Lock()
	if !c.dead && !c.ext {
		for ; n > 0 && w.rlen > 0; n-- {
			w.fail(w.popTail().item, FailWrite)
		}
		c.ext, c.extReason, c.failed = true, FailAborted, true
	}
	w.mu.Unlock()
	c.nc.Close()
	w.reap(c)
}

// reap waits for c's reader to finish, puts the records it left (requests
// the server never read) back in front of pending, and forgets c.
func (w *worker) reap(c *conn) {
	<-c.done
	w.mu.Lock()
	left := w.spare[:0]
	for w.rlen > 0 {
		left = append(left, w.popHead().item)
	}
	failed, answered := c.failed, c.answered
	w.mu.Unlock()
	if len(left) > 0 {
		w.s.stats.Requeued.Add(uint64(len(left)))
		w.spare = append(left, w.pending...)
		clear(w.pending)
		w.pending, w.spare = w.spare, w.pending[:0]
	}
	w.connMu.Lock()
	w.cur = nil
	w.connMu.Unlock()
	switch {
	case answered:
		w.backoff = 0
	case failed:
		w.growBackoff()
	}
}

func (w *worker) growBackoff() {
	w.backoff = min(max(2*w.backoff, minBackoff), maxBackoff)
	w.retryAt = time.Now().Add(w.backoff)
}

// dial connects to the shadow and starts the connection's reader. On
// failure it returns nil and the reason to fail the pending requests with.
func (w *worker) dial() (*conn, FailReason) {
	s := w.s
	ctx, cancel := context.WithTimeout(s.abortCtx, s.timeout)
	defer cancel()
	nc, err := s.dial(ctx, "tcp", s.addr)
	if err != nil {
		return nil, w.dialFailed(FailConnect)
	}
	if s.tls != nil {
		tc := tls.Client(nc, s.tls)
		err := tc.HandshakeContext(ctx)
		if p := tc.ConnectionState().NegotiatedProtocol; err == nil && p != "" && p != "http/1.1" {
			err = errors.New("shadow negotiated " + p)
		}
		if err != nil {
			nc.Close()
			return nil, w.dialFailed(FailTLS)
		}
		nc = tc
	}
	c := &conn{w: w, nc: nc, done: make(chan struct{})}
	w.connMu.Lock()
	if w.aborted {
		w.connMu.Unlock()
		nc.Close()
		return nil, FailShutdown
	}
	w.cur = c
	w.connMu.Unlock()
	s.stats.ConnectionsOpened.Add(1)
	w.br.Reset(nc)
	s.wg.Add(1) // the worker is counted, so the group is not at zero
	go c.readLoop()
	return c, 0
}

func (w *worker) dialFailed(reason FailReason) FailReason {
	if w.s.aborting() {
		return FailShutdown
	}
	w.growBackoff()
	return reason
}

// failPending fails every pending request.
func (w *worker) failPending(reason FailReason) {
	for _, it := range w.pending {
		w.fail(it, reason)
	}
	clear(w.pending)
	w.pending = w.pending[:0]
}

func (w *worker) fail(it item, reason FailReason) {
	w.s.stats.Failed[reason].Add(1)
	w.s.done(it)
}

// abortAll fails everything the worker holds with reason shutdown. Close has
// stopped Send, so the queue only shrinks.
func (w *worker) abortAll() {
	if c := w.cur; c != nil {
		c.closeWith(FailShutdown)
		w.reap(c)
	}
	w.failPending(FailShutdown)
	for {
		select {
		case it := <-w.queue:
			w.fail(it, FailShutdown)
		default:
			return
		}
	}
}

// abortConn is called by Close when it stops waiting: it closes the current
// connection, which wakes the worker wherever it waits, and forbids new ones.
func (w *worker) abortConn() {
	w.connMu.Lock()
	w.aborted = true
	c := w.cur
	w.connMu.Unlock()
	if c != nil {
		c.closeWith(FailShutdown)
	}
}

// closeWith closes c from outside; the requests in flight fail with reason.
func (c *conn) closeWith(reason FailReason) {
	c.w.mu.Lock()
	if !c.dead && !c.ext {
		c.ext, c.extReason = true, reason
	}
	c.w.mu.Unlock()
	c.nc.Close()
}

func (w *worker) push(rec record) {
	w.ring[(w.rhead+w.rlen)%len(w.ring)] = rec
	w.rlen++
}

func (w *worker) popHead() record {
	rec := w.ring[w.rhead]
	w.ring[w.rhead] = record{}
	w.rhead = (w.rhead + 1) % len(w.ring)
	w.rlen--
	return rec
}

func (w *worker) popTail() record {
	i := (w.rhead + w.rlen - 1) % len(w.ring)
	rec := w.ring[i]
	w.ring[i] = record{}
	w.rlen--
	return rec
}

// readLoop is the connection's reader goroutine: it matches responses to
// records in order, discards bodies, and ends the connection on an error or
// when a response closes it.
func (c *conn) readLoop() {
	w, s := c.w, c.w.s
	defer s.wg.Done()
	defer close(c.done)
	br := w.br
	for {
		// Block here even when nothing is in flight, so that a server
		// closing an idle connection is noticed before the next write.
		if _, err := br.Peek(1); err != nil {
			c.fail(err)
			return
		}
		w.mu.Lock()
		if w.rlen == 0 {
			w.mu.Unlock()
			c.fail(errUnsolicited)
			return
		}
		head := w.ring[w.rhead].head
		w.mu.Unlock()

		res, err := readResponse(br, head)
		if err != nil {
			c.fail(err)
			return
		}
		now := time.Now()
		w.mu.Lock()
		if w.rlen == 0 {
			// A failed write took the record back (writeFailed) while its
			// response was being read; the connection is closing anyway.
			w.mu.Unlock()
			c.fail(errUnsolicited)
			return
		}
		rec := w.popHead()
		c.answered = true
		switch {
		case res.close:
			c.dead = true
		case w.rlen > 0:
			// The next request is first in line from now on: it is not
			// blamed for the time it waited behind this one.
			c.nc.SetReadDeadline(now.Add(s.timeout))
		default:
			c.nc.SetReadDeadline(time.Time{})
		}
		w.cond.Broadcast()
		w.mu.Unlock()

		s.stats.Mirrored.Add(1)
		s.stats.countStatus(res.status)
		s.stats.Latency.Observe(now.Sub(rec.written))
		s.done(rec.item)
		if res.close {
			c.nc.Close()
			return
		}
	}
}

// fail ends the connection after err. The request first in line fails with
// the reason err stands for and the ones behind it as aborted, unless the
// connection was closed from outside, whose reason applies to all.
func (c *conn) fail(err error) {
	w := c.w
	w.mu.Lock()
	reason, all := failReasonOf(err), false
	if c.ext {
		reason, all = c.extReason, true
	}
	if w.rlen > 0 {
		c.failed = true
	}
	for first := true; w.rlen > 0; first = false {
		r := reason
		if !first && !all {
			r = FailAborted
		}
		w.fail(w.popHead().item, r)
	}
	c.dead = true
	w.cond.Broadcast()
	w.mu.Unlock()
	c.nc.Close()
}

// failReasonOf maps a read error to a FailReason.
func failReasonOf(err error) FailReason {
	var (
		pe    protocolError
		ne    net.Error
		rhe   tls.RecordHeaderError
		alert tls.AlertError
	)
	switch {
	case errors.As(err, &pe):
		return FailProtocol
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	case errors.As(err, &rhe), errors.As(err, &alert):
		return FailTLS
	}
	return FailReset
}
