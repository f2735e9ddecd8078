package shadow

// The pieces of a sender that do not depend on the shadow's protocol: where
// and how to connect, the byte budget and the ledger, the line of requests
// waiting for a connection, the per-client-connection order, the dial
// backoff, admission. Both senders (HTTP/1 and HTTP/2) are built on them.

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// endpoint is where the shadow listens and how to reach it.
type endpoint struct {
	addr   string      // host:port to dial
	scheme string      // "http" or "https"
	tls    *tls.Config // nil for http://
	alpn   []string
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	hold   *AnswerHold
}

// newEndpoint parses cfg.URL and prepares TLS with the given ALPN
// protocols, the first one preferred.
func newEndpoint(cfg *SenderConfig, alpn ...string) (*endpoint, error) {
	o, err := httpsyntax.ParseOrigin(cfg.URL)
	if err != nil {
		return nil, err
	}
	e := &endpoint{addr: o.Addr, scheme: "http", dial: cfg.Dial, alpn: alpn, hold: cfg.Hold}
	if e.dial == nil {
		e.dial = (&net.Dialer{}).DialContext
	}
	if o.Secure {
		e.scheme = "https"
		tc := new(tls.Config)
		if cfg.TLSConfig != nil {
			tc = cfg.TLSConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = o.Host
		}
		// A server that picked another protocol would not understand a
		// byte we write.
		tc.NextProtos = alpn
		if tc.ClientSessionCache == nil {
			// New connections resume: one round trip and no certificate
			// check instead of a full handshake.
			tc.ClientSessionCache = tls.NewLRUClientSessionCache(0)
		}
		e.tls = tc
	}
	return e, nil
}

// connect dials the shadow and, for https, completes the handshake. nc is
// the connection to use and raw the one to close (closing raw never waits,
// where closing a tls.Conn may send an alert). On failure it returns the
// reason to fail requests with.
func (e *endpoint) connect(ctx context.Context, timeout time.Duration) (nc, raw net.Conn, reason FailReason, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err = e.dial(ctx, "tcp", e.addr)
	if err != nil {
		return nil, nil, FailConnect, err
	}
	raw = quiet(raw, e.hold)
	if e.tls == nil {
		return raw, raw, 0, nil
	}
	tc := tls.Client(raw, e.tls)
	err = tc.HandshakeContext(ctx)
	if p := tc.ConnectionState().NegotiatedProtocol; err == nil && p != "" && !slices.Contains(e.alpn, p) {
		err = errors.New("shadow negotiated " + p)
	}
	if err != nil {
		raw.Close()
		return nil, nil, FailTLS, err
	}
	return tc, raw, 0, nil
}

// record is one queued request and what its sender knows of it. Records
// are pooled; one lives from Send until the request ends.
type record struct {
	req  httpmsg.Request
	h1   *httpframe.Request // req, when it is one (spliced, not encoded)
	tag  any
	size int64 // bytes charged to the budget
	flow *flow // Ordered: the request's client connection line

	sent     time.Time // Send
	deadline time.Time // Timeout runs out
	written  time.Time // write started

	head       bool  // HEAD: the answer has no body whatever it says
	replayable bool  // idempotent by method or by Idempotency-Key
	retried    bool  // sent again once already
	requeued   uint8 // times put back in line because the shadow provably did not process it (HTTP/2: GOAWAY)
	reused     bool  // its connection had answered before it was assigned

	// The write, guarded by the sender's lock once assigned.
	wdone bool  // the write is over (or will never happen)
	wrote int64 // bytes written
	werr  error

	next *record // the next in a flow's line
}

var recordPool = sync.Pool{New: func() any { return new(record) }}

func newRecord(r httpmsg.Request, tag any, size int64, now time.Time) *record {
	rec := recordPool.Get().(*record)
	rec.req, rec.tag, rec.size, rec.sent = r, tag, size, now
	rec.h1, _ = asHTTP1(r)
	m := r.Method()
	rec.head = string(m) == "HEAD"
	rec.replayable = isReplayable(r, m)
	return rec
}

func freeRecord(rec *record) {
	*rec = record{}
	recordPool.Put(rec)
}

// asHTTP1 returns r as the HTTP/1 request it is, if it is one.
func asHTTP1(r httpmsg.Request) (*httpframe.Request, bool) {
	h1, ok := r.(*httpframe.Request)
	return h1, ok && h1 != nil
}

// isReplayable is net/http's Request.isReplayable for a request whose body
// we hold (or have none): GET, HEAD, OPTIONS and TRACE, and any request
// with an Idempotency-Key or X-Idempotency-Key field. A streaming body
// cannot be replayed.
func isReplayable(r httpmsg.Request, method []byte) bool {
	if r.Stream() != nil {
		return false
	}
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	if _, ok := r.Header("Idempotency-Key"); ok {
		return true
	}
	_, ok := r.Header("X-Idempotency-Key")
	return ok
}

// outcome is how a request ended.
type outcome struct {
	ok     bool // mirrored
	status int
	grpc   uint8 // the answer's grpc-status as grpcCode keeps it; grpcNone without one
	fail   FailReason
	answer *httpmsg.Answer // kept for the Answer callback
	end    time.Time       // of the answer
}

// ledger counts every request once, holds the byte budget, and wakes the
// Sends that wait for room (SenderConfig.Wait).
type ledger struct {
	stats    *Stats
	answer   AnswerFunc
	maxBytes int64
	held     atomic.Int64
	room     chan struct{} // nil unless Sends may wait
	// live counts the queued requests not yet ended; drained is signalled
	// when it falls to zero after closed was set.
	live    atomic.Int64
	closed  atomic.Bool
	drained chan struct{}
}

func (l *ledger) init(st *Stats, answer AnswerFunc, maxBytes int64, wait bool) {
	l.stats, l.answer, l.maxBytes = st, answer, maxBytes
	l.drained = make(chan struct{}, 1)
	if wait {
		l.room = make(chan struct{}, 1)
	}
}

// hold charges n bytes to the budget, or reports false when they do not fit.
func (l *ledger) hold(n int64) bool {
	if l.held.Add(n) > l.maxBytes {
		l.held.Add(-n)
		return false
	}
	l.stats.QueueBytes.Add(n)
	return true
}

func (l *ledger) unhold(n int64) {
	l.held.Add(-n)
	l.stats.QueueBytes.Add(-n)
	l.signalRoom()
}

// signalRoom wakes one waiting Send, if Sends may wait.
func (l *ledger) signalRoom() {
	if l.room != nil {
		select {
		case l.room <- struct{}{}:
		default:
		}
	}
}

// waitRoom waits until room may have been made, or until ctx or the
// sender is done (then false). The timer covers a release between the
// caller's check and the wait that another waiter took.
func (l *ledger) waitRoom(ctx context.Context, closing <-chan struct{}) bool {
	t := time.NewTimer(5 * time.Millisecond)
	defer t.Stop()
	select {
	case <-l.room:
		return true
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-closing:
	}
	return false
}

// admit charges r's bytes for a Send, waiting for room when the sender was
// made to wait (wait not nil) until wait or closing is done. When r cannot
// be taken it is dropped (counted and released) and admit reports false.
func (l *ledger) admit(r httpmsg.Request, wait context.Context, closing <-chan struct{}) (int64, bool) {
	if l.closed.Load() {
		l.drop(r, DropClosed)
		return 0, false
	}
	size := requestSize(r)
	if l.hold(size) {
		return size, true
	}
	if wait == nil || size > l.maxBytes {
		l.drop(r, DropOverflow)
		return 0, false
	}
	for !l.hold(size) {
		if !l.waitRoom(wait, closing) {
			l.drop(r, l.giveUpReason())
			return 0, false
		}
	}
	l.signalRoom() // there may be room for the next waiter too
	return size, true
}

// giveUpReason is why a Send that waited for room dropped its request.
func (l *ledger) giveUpReason() DropReason {
	if l.closed.Load() {
		return DropClosed
	}
	return DropOverflow
}

// refuse drops a request that had its bytes held but was not queued.
func (l *ledger) refuse(rec *record, why DropReason) {
	r, size := rec.req, rec.size
	freeRecord(rec)
	l.unhold(size)
	l.drop(r, why)
}

// drop counts a request refused by Send and releases it.
func (l *ledger) drop(r httpmsg.Request, why DropReason) {
	l.stats.Dropped[why].Add(1)
	r.Release()
}

// end counts rec's outcome, reports it to Answer, releases the request and
// its bytes, and recycles rec. It is the one place where a queued request
// ends; the caller holds no lock.
func (l *ledger) end(rec *record, o outcome) {
	st := l.stats
	if o.ok {
		st.Mirrored.Add(1)
		st.countStatus(o.status)
		st.countGRPC(o.grpc)
		st.Latency.Observe(o.end.Sub(rec.written))
	} else {
		st.Failed[o.fail].Add(1)
	}
	if l.answer != nil {
		l.answer(rec.tag, o.answer, o.fail, o.ok)
	}
	rec.req.Release()
	size := rec.size
	freeRecord(rec)
	l.unhold(size)
	if l.live.Add(-1) == 0 && l.closed.Load() {
		select {
		case l.drained <- struct{}{}:
		default:
		}
	}
}

// deque is a line of records: new ones join at the back, ones put back
// (retried, requeued) at the front.
type deque struct {
	buf  []*record
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow() {
	buf := make([]*record, max(16, 2*len(d.buf)))
	for i := range d.n {
		buf[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = buf, 0
}

func (d *deque) pushBack(r *record) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = r
	d.n++
}

func (d *deque) pushFront(r *record) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = r
	d.n++
}

func (d *deque) front() *record { return d.buf[d.head] }

func (d *deque) popFront() *record {
	r := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	return r
}

// flowKey names a client connection: Request.Client sent to Server.
type flowKey struct{ client, server netip.AddrPort }

// flow is the line of one client connection's requests in Ordered mode:
// its head is being sent (or waits for a connection), the others wait for
// it to end, linked through record.next.
type flow struct {
	key         flowKey
	first, last *record // waiting behind the head
	n           int
}

func (f *flow) push(r *record) {
	if f.last == nil {
		f.first = r
	} else {
		f.last.next = r
	}
	f.last = r
	f.n++
}

func (f *flow) pop() *record {
	r := f.first
	if r == nil {
		return nil
	}
	f.first, r.next = r.next, nil
	if f.first == nil {
		f.last = nil
	}
	f.n--
	return r
}

// backoff spaces dials after failures: 50ms doubling to 2s, reset by a
// dial that succeeds.
type backoff struct {
	d     time.Duration
	until time.Time
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func (b *backoff) failed(now time.Time) {
	b.d = min(max(2*b.d, minBackoff), maxBackoff)
	b.until = now.Add(b.d)
}

func (b *backoff) succeeded() { b.d, b.until = 0, time.Time{} }

func (b *backoff) active(now time.Time) bool { return now.Before(b.until) }

// maxDials bounds the dials in progress at once, given the connections
// open: a burst of waiting requests (a shadow's latency spike, a start
// under load) opens connections a few at a time, each dial that ends
// making room for the next, rather than one per waiting request at once,
// which would spike the shadow's load and latency, and so the pool again.
// The bound grows with the pool, so that a pool that must be large still
// grows fast.
func maxDials(open int) int { return max(8, open/4) }
