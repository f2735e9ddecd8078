package shadow

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// h1conn is one connection to the shadow. Its reader goroutine (run) dials
// it, then keeps a read pending on it for its whole life: the read returns
// when an answer starts, when the shadow closes the connection, or when
// what is due passes: the first request's Timeout while one is on it,
// IdleTimeout while none is (see rdl). The reader matches answers to
// requests in order, ends them, and gives the connection the next pending
// request.
//
// Requests are written by whoever assigns them when the connection is
// idle and they are small (writeDirect: a write that does not wait on the
// socket, on a connection without TLS), or else by a writer goroutine that lives while there is
// something to write (writeLoop), which also writes what a direct write
// left (writeRest). Only one writes at a time (writing).
type h1conn struct {
	s    *HTTP1Sender
	nc   net.Conn // the connection to the shadow: TCP, or TLS over it
	raw  net.Conn // the TCP connection, closed to end nc without waiting
	br   *bufio.Reader
	sc   httpsyntax.ChunkedScanner
	wbuf []byte    // the writer's, reused
	work work      // the reader's, reused
	redo []*record // the reader's, reused: requests to put back in line
	// tw writes to the socket without waiting (writeDirect), when nc is a
	// plain TCP connection (not TLS) that can; other plain connections
	// are written with a short deadline instead (directWait), and TLS
	// ones only by the writer goroutine (plain is false).
	tw    tryWriter
	plain bool
	// What a direct write left for writeRest: rest, within restBuf, after
	// restN bytes written.
	rest, restBuf []byte
	restN         int
	// The writer goroutine's, reused.
	batch []*record
	ends  []int64
	// ctx ends when the connection does: it stops a writer that waits for
	// a streaming body.
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by s.mu.
	ring     []*record // requests on the connection, in write order
	nwritten int       // ring[:nwritten] have been handed to a writer
	writing  bool      // a writer owns the write side
	waiting  bool      // the reader waits on cond for a write to end
	cond     sync.Cond
	dead     bool // takes no more requests
	// writeFailed: a write broke the connection; the requests on it that
	// were written whole fail as aborted.
	writeFailed bool
	shut        bool // closed by Close: what it carries fails with FailShutdown
	causeSet    bool
	cause       CloseCause
	idleIdx     int // in s.idle, -1 when not idle
	openIdx     int // in s.conns, -1 when not open
	answered    int // complete answers read
	idleUntil   time.Time
	gauge       connGauge
	// The deadlines set on nc. The read deadline is never later than what
	// is due (the first request's deadline, or the end of idleness), but
	// may be earlier: it then wakes the read for nothing, and connReader
	// moves it on. So it changes about once per Timeout, not per request.
	// The write deadline is moved only when it comes within Timeout/2.
	rdl, wdl time.Time
}

// connReader reads c for its bufio.Reader: a read that times out before
// what is due, because the deadline was left early, is retried with the
// deadline moved on; only a timeout that is due reaches the reader. Reads
// keep their place, so this holds in the middle of an answer too.
type connReader struct{ c *h1conn }

func (r connReader) Read(p []byte) (int, error) {
	for {
		n, err := r.c.nc.Read(p)
		if n > 0 || !isTimeout(err) || !r.c.rearm() {
			return n, err
		}
		r.c.s.rearms.Add(1)
	}
}

// rearm reports whether a read timeout came early, and if so moves the read
// deadline to what is due. A timeout that is due ends the connection then
// and there, so that nothing is given to it in between.
func (c *h1conn) rearm() bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.dead {
		return false
	}
	d, early := c.dueLocked(time.Now())
	if early {
		c.rdl = d
		c.nc.SetReadDeadline(d)
		return true
	}
	c.dead = true
	s.removeIdleLocked(c)
	if !c.causeSet {
		c.causeSet, c.cause = true, CloseTimeout
		if len(c.ring) == 0 {
			c.cause = CloseIdleTimeout
		}
	}
	return false
}

// armReadLocked makes the read deadline d at the latest.
func (c *h1conn) armReadLocked(d time.Time) {
	if c.rdl.IsZero() || d.Before(c.rdl) {
		c.rdl = d
		c.nc.SetReadDeadline(d)
	}
}

// armWriteLocked gives a write that may go on until d a deadline between
// d-Timeout/2 and d, so that a direct write (which never waits, but fails
// at once past the deadline) finds one ahead; a request's Timeout is kept
// by the read side.
func (c *h1conn) armWriteLocked(d time.Time) {
	if c.wdl.Before(d.Add(-c.s.set.timeout / 2)) {
		c.wdl = d
		c.nc.SetWriteDeadline(d)
	}
}

// connGauge is the gauge an open connection counts in.
type connGauge uint8

const (
	gaugeNone connGauge = iota
	gaugeIdle
	gaugeBusy
)

func (c *h1conn) setGauge(g connGauge) { c.gauge.set(c.s.stats, g) }

// set moves a connection from the gauge it counts in to g.
func (cg *connGauge) set(st *Stats, g connGauge) {
	switch *cg {
	case gaugeIdle:
		st.ConnectionsIdle.Add(-1)
	case gaugeBusy:
		st.ConnectionsBusy.Add(-1)
	}
	switch g {
	case gaugeIdle:
		st.ConnectionsIdle.Add(1)
	case gaugeBusy:
		st.ConnectionsBusy.Add(1)
	}
	*cg = g
}

var (
	errUnsolicited   = errors.New("shadow sent data with no request outstanding")
	errStreamAborted = errors.New("request body stream ended early")
)

// run is the connection's reader goroutine: it dials, then reads.
func (c *h1conn) run() {
	s := c.s
	defer s.wg.Done()
	defer c.cancel()
	nc, raw, reason, err := s.ep.connect(c.ctx, s.set.timeout)
	if err != nil {
		s.dialFailed(reason)
		return
	}
	c.nc, c.raw = nc, raw
	if nc == raw {
		c.plain, c.tw = true, tryWriterOf(nc)
	}
	now := time.Now()
	s.mu.Lock()
	s.connecting--
	s.stats.ConnectionsConnecting.Add(-1)
	s.stats.ConnectionsOpened.Add(1)
	if s.aborting || (s.closed && s.pending.len() == 0) {
		s.mu.Unlock()
		raw.Close()
		s.stats.ConnectionsClosed[CloseShutdown].Add(1)
		return
	}
	s.bo.succeeded()
	c.openIdx = len(s.conns)
	s.conns = append(s.conns, c)
	s.stats.ConnectionsOpen.Add(1)
	c.setGauge(gaugeIdle)
	c.br = bufio.NewReaderSize(connReader{c}, readBufferSize)
	s.freeLocked(c, now, &c.work)
	s.maybeDialLocked(now) // a dial ended: room for the next
	s.mu.Unlock()
	s.flush(&c.work)
	c.readLoop()
}

func (c *h1conn) readLoop() {
	s := c.s
	for {
		_, err := c.br.Peek(1)
		start := time.Now()
		s.mu.Lock()
		if err != nil {
			c.failLocked(err, start, true)
			return
		}
		if c.nwritten == 0 {
			// An answer to nothing: a server's 408 on an idle
			// connection, or garbage. Either way the connection is done.
			if !c.causeSet {
				c.causeSet, c.cause = true, CloseError
				if is408(c.br) {
					c.cause = CloseShadowClosed
				}
			}
			c.failLocked(errUnsolicited, start, true)
			return
		}
		rec := c.ring[0]
		s.mu.Unlock()

		var cp *capture
		if s.l.answer != nil {
			cp = &capture{max: s.set.answerCap}
		}
		res, err := readResponse(c.br, rec.head, &c.sc, cp)
		end := time.Now()
		s.mu.Lock()
		if err != nil {
			c.failLocked(err, end, false)
			return
		}
		// The shadow may answer before the request is written whole; the
		// request is ended only once its writer is done with it.
		for !rec.wdone {
			c.waiting = true
			c.cond.Wait()
		}
		c.waiting = false
		c.popLocked()
		c.answered++
		o := outcome{ok: true, status: res.status, end: end}
		if cp != nil {
			o.answer = cp.answer(res)
			o.answer.Start, o.answer.End = start, end
		}
		switch {
		case rec.werr != nil:
			c.dead = true // its writer closes it
		case res.close:
			c.dead = true
			if !c.causeSet {
				c.causeSet, c.cause = true, CloseConnectionClose
			}
		}
		if c.dead {
			s.endLocked(rec, o, end, &c.work)
			// Nothing of the next answers has arrived.
			c.failLocked(nil, end, true)
			return
		}
		if len(c.ring) > 0 {
			// Pipelined: the next request is first in line from now on,
			// and is not blamed for the time it waited behind this one.
			// (The read deadline may stay earlier: it moves on when it
			// fires.)
			h := c.ring[0]
			if d := end.Add(s.set.timeout); d.After(h.deadline) {
				h.deadline = d
			}
		}
		// Free the connection first: the request's Ordered successor,
		// dispatched when it ends, may take it.
		s.freeLocked(c, end, &c.work)
		s.endLocked(rec, o, end, &c.work)
		s.mu.Unlock()
		s.flush(&c.work)
	}
}

// dueLocked returns what the read deadline must be now: the deadline of the
// first request on the connection, or the end of its idleness; and whether
// that is still to come (a timeout now came early).
func (c *h1conn) dueLocked(now time.Time) (time.Time, bool) {
	d := c.idleUntil
	if len(c.ring) > 0 {
		r := c.ring[0]
		if st := r.req.Stream(); !r.wdone && st != nil && !st.Done() {
			// The client is still sending its body: a streamed
			// request's Timeout counts from the client's end, as
			// Envoy's route timeout does.
			if late := now.Add(c.s.set.timeout); late.After(r.deadline) {
				r.deadline = late
			}
		}
		d = r.deadline
	}
	return d, now.Before(d)
}

// popLocked takes the first request off the connection.
func (c *h1conn) popLocked() {
	s := c.s
	c.ring[0] = nil
	c.ring = c.ring[:copy(c.ring, c.ring[1:])]
	c.nwritten--
	s.inFlight--
	s.stats.addInFlight(-1)
	if len(c.ring) == 0 {
		c.setGauge(gaugeIdle)
	}
}

// shutLocked makes Close close c: what it carries fails with FailShutdown.
func (c *h1conn) shutLocked(w *work) {
	if c.shut {
		return
	}
	c.shut = true
	c.s.removeIdleLocked(c)
	if !c.causeSet {
		c.causeSet, c.cause = true, CloseShutdown
	}
	c.dead = true
	w.closes = append(w.closes, c)
}

// failLocked ends the connection after err (nil when an answer ended it),
// with s.mu held, and releases it: it closes the connection, waits for its
// writer, then disposes of every request on it, in order:
//
//   - never written, or written after an answer that closed the connection
//     (the shadow does not process them): put back in line (Requeued);
//   - where net/http's Transport would retry (shouldRetryRequest): the
//     connection had answered before, no byte of this answer arrived, and
//     the request is idempotent or none of it was written; once per
//     request (Retried);
//   - otherwise failed: the first by err (or FailWrite when its write
//     failed), those behind it FailAborted; all FailShutdown after Close.
func (c *h1conn) failLocked(err error, now time.Time, noByte bool) {
	s := c.s
	c.dead = true
	s.removeIdleLocked(c)
	if !c.causeSet {
		c.causeSet, c.cause = true, closeCauseOf(err, len(c.ring) > 0, noByte)
	}
	s.mu.Unlock()
	c.raw.Close()
	c.cancel()
	s.mu.Lock()
	for c.writing {
		c.waiting = true
		c.cond.Wait()
	}
	c.waiting = false

	w := &c.work
	timeout := isTimeout(err)
	reason := failReasonOf(err)
	redo := c.redo[:0]
	for i, rec := range c.ring {
		c.ring[i] = nil
		s.inFlight--
		s.stats.addInFlight(-1)
		first := i == 0
		switch {
		case c.shut:
			s.endLocked(rec, outcome{fail: FailShutdown}, now, w)
		case first && (timeout || !now.Before(rec.deadline)):
			// The ones behind it (pipelined) are not blamed for its time.
			s.endLocked(rec, outcome{fail: FailTimeout}, now, w)
		case i >= c.nwritten || c.cause == CloseConnectionClose:
			s.stats.Requeued.Add(1)
			s.sentAgainLocked(rec)
			redo = append(redo, rec)
		case !rec.retried && rec.reused && (noByte || !first) &&
			(rec.replayable || (rec.werr != nil && rec.wrote == 0)):
			rec.retried = true
			s.stats.Retried.Add(1)
			s.sentAgainLocked(rec)
			redo = append(redo, rec)
		case rec.werr != nil && errors.Is(rec.werr, errStreamAborted):
			s.endLocked(rec, outcome{fail: FailAborted}, now, w)
		case rec.werr != nil:
			s.endLocked(rec, outcome{fail: FailWrite}, now, w)
		case first && !c.writeFailed:
			s.endLocked(rec, outcome{fail: reason}, now, w)
		default:
			s.endLocked(rec, outcome{fail: FailAborted}, now, w)
		}
	}
	c.ring, c.nwritten = c.ring[:0], 0

	// Forget the connection.
	if i := c.openIdx; i >= 0 {
		last := len(s.conns) - 1
		s.conns[i] = s.conns[last]
		s.conns[i].openIdx = i
		s.conns[last] = nil
		s.conns = s.conns[:last]
		c.openIdx = -1
		s.stats.ConnectionsOpen.Add(-1)
	}
	c.setGauge(gaugeNone)
	s.stats.ConnectionsClosed[c.cause].Add(1)
	s.redispatchLocked(redo, now, w)
	clear(redo)
	c.redo = redo[:0]
	s.maybeDialLocked(now)
	s.mu.Unlock()
	s.flush(w)
}

// redispatchLocked puts requests whose connection failed back in line, in
// their order and ahead of the new ones: on free connections, or at the
// front of the pending line.
func (s *HTTP1Sender) redispatchLocked(recs []*record, now time.Time, w *work) {
	for i, rec := range recs {
		rec.wdone, rec.wrote, rec.werr, rec.reused = false, 0, nil, false
		if s.aborting {
			s.endLocked(rec, outcome{fail: FailShutdown}, now, w)
			continue
		}
		if c := s.pickLocked(); c != nil {
			if s.assignLocked(c, rec) {
				w.writes = append(w.writes, pendingWrite{c, rec})
			}
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
			r := rest[j]
			r.wdone, r.wrote, r.werr, r.reused = false, 0, nil, false
			s.pending.pushFront(r)
			s.addWaiting(1)
			s.armLocked(r.deadline, now)
		}
		s.maybeDialLocked(now)
		return
	}
}

// writeDirect writes rec, which was just put on the idle c, from the
// calling goroutine (Send, on the capture path, or a connection's reader),
// by a write that does not wait on the socket (tryWrite). What the socket
// buffer does not take (the shadow stopped reading) is left to a writer
// goroutine (writeRest). rec is first in line on c from the start, so its
// deadline does not move.
func (c *h1conn) writeDirect(rec *record) {
	buf := c.encode(c.wbuf[:0], rec)
	rec.written = time.Now()
	c.s.stats.QueueDelay.Observe(rec.written.Sub(rec.sent))
	n, err := c.tryWrite(buf)
	if err == nil && n < len(buf) {
		c.rest, c.restBuf, c.restN = buf[n:], buf, n
		c.s.wg.Add(1)
		go c.writeRest(rec)
		return
	}
	c.keepBuffer(buf)
	c.wrote(rec, int64(n), err, false)
}

// directWait bounds a direct write on a plain connection that cannot write
// without waiting (see tryWriter).
const directWait = time.Millisecond

// tryWrite writes what of b the socket takes at once: without waiting when
// the connection can, else within directWait. A write cut short is not an
// error: the rest goes to a writer goroutine.
func (c *h1conn) tryWrite(b []byte) (int, error) {
	if c.tw != nil {
		return c.tw.tryWrite(b)
	}
	c.nc.SetWriteDeadline(time.Now().Add(directWait))
	n, err := c.nc.Write(b)
	c.nc.SetWriteDeadline(c.wdl)
	if isTimeout(err) {
		err = nil
	}
	return n, err
}

// tryWriter is a connection that writes what the socket takes now and
// returns, never waiting for it to take more.
type tryWriter interface {
	tryWrite(b []byte) (int, error)
}

// tryWriterOf returns nc as a tryWriter if it is one (a quietConn is);
// nil otherwise.
func tryWriterOf(nc net.Conn) tryWriter {
	tw, _ := nc.(tryWriter)
	return tw
}

// writeRest is the writer goroutine started by writeDirect: it writes what
// the socket did not take at once, within rec's Timeout, then goes on as
// writeLoop with whatever was put on c meanwhile.
func (c *h1conn) writeRest(rec *record) {
	s := c.s
	defer s.wg.Done()
	s.mu.Lock()
	c.wdl = rec.deadline
	c.nc.SetWriteDeadline(c.wdl)
	s.mu.Unlock()
	m, err := c.nc.Write(c.rest)
	n := int64(c.restN + m)
	c.keepBuffer(c.restBuf)
	c.rest, c.restBuf, c.restN = nil, nil, 0
	if c.wrote(rec, n, err, true) {
		c.writeAll()
	}
}

// Bounds of one batched write of pipelined requests: enough to turn a burst
// into one syscall, small enough that the first is not held back long.
const (
	maxBatchRequests = 64
	maxBatchBytes    = 64 << 10
)

// batchable reports whether rec may share a write with others: it is small
// and whole.
func batchable(rec *record) bool {
	return rec.size <= directWriteMax-1024 && rec.req.Stream() == nil
}

// writeLoop is a writer goroutine: it writes c's requests in order until
// none is left to write, small ones in batches (pipelining), large and
// streamed ones alone.
func (c *h1conn) writeLoop() {
	defer c.s.wg.Done()
	c.writeAll()
}

// writeAll is writeLoop's work, on a goroutine that owns the write side.
func (c *h1conn) writeAll() {
	s := c.s
	for {
		s.mu.Lock()
		if c.dead || c.nwritten >= len(c.ring) {
			c.writing = false
			if c.waiting {
				c.cond.Broadcast()
			}
			s.mu.Unlock()
			return
		}
		head := c.nwritten == 0
		first := c.ring[c.nwritten]
		deadline := first.deadline // the reader may move it once first is first in line
		batch := append(c.batch[:0], first)
		c.nwritten++
		if batchable(first) {
			size := first.size
			for c.nwritten < len(c.ring) && len(batch) < maxBatchRequests {
				r := c.ring[c.nwritten]
				if !batchable(r) || size+r.size > maxBatchBytes {
					break
				}
				batch = append(batch, r)
				size += r.size
				c.nwritten++
			}
		}
		c.batch = batch
		if head {
			c.armReadLocked(deadline)
		}
		c.wdl = deadline
		c.nc.SetWriteDeadline(deadline)
		s.mu.Unlock()
		now := time.Now()
		for _, r := range batch {
			r.written = now
			s.stats.QueueDelay.Observe(now.Sub(r.sent))
		}
		if !batchable(first) {
			n, err := c.writeRecord(first)
			if !c.wrote(first, n, err, true) {
				return
			}
			continue
		}
		buf := c.wbuf[:0]
		ends := c.ends[:0]
		for _, r := range batch {
			buf = c.encode(buf, r)
			ends = append(ends, int64(len(buf)))
		}
		n, err := c.nc.Write(buf)
		c.keepBuffer(buf)
		c.ends = ends
		if !c.wroteBatch(batch, ends, int64(n), err) {
			return
		}
	}
}

// wrote records the end of rec's write. A failed write kills the
// connection: it is closed, which wakes the reader to dispose of what it
// carried. It reports whether a writer goroutine may go on. A direct
// writer that finds more to write starts the writer goroutine for it.
func (c *h1conn) wrote(rec *record, n int64, err error, loop bool) bool {
	s := c.s
	s.mu.Lock()
	rec.wdone, rec.wrote, rec.werr = true, n, err
	if err == nil && s.sent.first(rec) {
		s.stats.Sent.Add(1)
	}
	more := err == nil && c.nwritten < len(c.ring) && !c.dead
	if !loop && more {
		s.wg.Add(1)
		go c.writeLoop()
	} else if !loop {
		c.writing = false
	}
	return c.wroteLocked(err)
}

// wroteBatch records the end of a batched write: each request was written
// whole, in part or not at all, as the bytes written (n) reach its end.
func (c *h1conn) wroteBatch(batch []*record, ends []int64, n int64, err error) bool {
	s := c.s
	s.mu.Lock()
	var start int64
	for i, r := range batch {
		r.wdone, r.wrote = true, min(max(n-start, 0), ends[i]-start)
		if n >= ends[i] {
			if s.sent.first(r) {
				s.stats.Sent.Add(1)
			}
		} else {
			r.werr = err
		}
		start = ends[i]
		batch[i] = nil
	}
	return c.wroteLocked(err)
}

// wroteLocked ends wrote and wroteBatch, and unlocks.
func (c *h1conn) wroteLocked(err error) bool {
	s := c.s
	if err != nil {
		c.dead, c.writeFailed = true, true
		s.removeIdleLocked(c)
		if !c.causeSet {
			c.causeSet, c.cause = true, CloseError
			if isTimeout(err) {
				c.cause = CloseTimeout // the shadow stopped reading
			}
		}
		c.writing = false
	}
	if c.waiting {
		c.cond.Broadcast()
	}
	s.mu.Unlock()
	if err != nil {
		c.raw.Close()
		return false
	}
	return true
}

// encode appends rec whole as the shadow gets it.
func (c *h1conn) encode(dst []byte, rec *record) []byte {
	if rec.h1 != nil {
		return c.s.rw.AppendHTTP1(dst, rec.h1)
	}
	return c.s.rw.EncodeHTTP1(dst, rec.req)
}

func (c *h1conn) keepBuffer(buf []byte) {
	if cap(buf) <= maxKeptWriteBuffer {
		c.wbuf = buf[:0]
	} else {
		c.wbuf = nil
	}
}

// writeRecord writes rec from the writer goroutine: a large captured body
// from where it lies, a streaming one chunk by chunk as it arrives.
func (c *h1conn) writeRecord(rec *record) (int64, error) {
	s := c.s
	if rec.h1 != nil && len(rec.h1.WireBody()) > directWriteMax {
		head := s.rw.appendHTTP1Head(c.wbuf[:0], rec.h1)
		bufs := net.Buffers{head, rec.h1.WireBody()}
		n, err := bufs.WriteTo(c.nc)
		c.keepBuffer(head)
		return n, err
	}
	buf := c.encode(c.wbuf[:0], rec)
	m, err := c.nc.Write(buf)
	n := int64(m)
	c.keepBuffer(buf)
	st := rec.req.Stream()
	if err != nil || st == nil {
		return n, err
	}
	// No deadline on the body: its Timeout starts at its end (dueLocked),
	// and the connection's end cancels.
	for {
		chunks, serr := st.Next(c.ctx)
		buf = c.wbuf[:0]
		for _, b := range chunks {
			if len(b) == 0 {
				continue
			}
			buf = strconv.AppendInt(buf, int64(len(b)), 16)
			buf = append(buf, "\r\n"...)
			buf = append(buf, b...)
			buf = append(buf, "\r\n"...)
		}
		if serr == io.EOF {
			buf = append(buf, "0\r\n"...)
			for _, f := range st.Trailers() {
				buf = appendTrailer(buf, f.Name, f.Value)
			}
			buf = append(buf, "\r\n"...)
		}
		if len(buf) > 0 {
			c.streamed(rec, serr == io.EOF)
			m, err := c.nc.Write(buf)
			n += int64(m)
			c.keepBuffer(buf)
			if err != nil {
				st.Cancel()
				return n, err
			}
		}
		switch {
		case serr == io.EOF:
			return n, nil
		case serr != nil:
			st.Cancel()
			return n, errStreamAborted
		}
	}
}

// streamed moves the write deadline on before a piece of rec's streamed
// body is written (each piece has Timeout to go out), and, with its last
// piece, starts rec's Timeout.
func (c *h1conn) streamed(rec *record, last bool) {
	s := c.s
	now := time.Now()
	d := now.Add(s.set.timeout)
	s.mu.Lock()
	if last && d.After(rec.deadline) {
		rec.deadline = d
	}
	c.wdl = d
	c.nc.SetWriteDeadline(d)
	s.mu.Unlock()
}

func isTimeout(err error) bool {
	if err == nil {
		return false // and nothing allocated for ne
	}
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// closeCauseOf says why a connection ends after err: busy when requests
// were on it, noByte when none of their answer had arrived.
func closeCauseOf(err error, busy, noByte bool) CloseCause {
	switch {
	case isTimeout(err):
		return CloseTimeout
	case err == nil:
		return CloseConnectionClose
	case (!busy || noByte) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)):
		return CloseShadowClosed
	}
	return CloseError
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read" && !errors.Is(err, net.ErrClosed)
}

// failReasonOf maps a read error to a FailReason.
func failReasonOf(err error) FailReason {
	var (
		pe    protocolError
		rhe   tls.RecordHeaderError
		alert tls.AlertError
	)
	switch {
	case errors.As(err, &pe):
		return FailProtocol
	case isTimeout(err):
		return FailTimeout
	case errors.As(err, &rhe), errors.As(err, &alert):
		return FailTLS
	}
	return FailReset
}

// is408 reports whether what br holds starts an HTTP 408 answer: a server
// that times an idle connection out may say so before closing it.
func is408(br *bufio.Reader) bool {
	b, _ := br.Peek(min(br.Buffered(), 12))
	return len(b) == 12 && bytes.HasPrefix(b, []byte("HTTP/1.")) && string(b[8:12]) == " 408"
}
