package shadow

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
)

// Defaults of SenderConfig.
const (
	DefaultWorkers       = 4
	DefaultTimeout       = 15 * time.Second // Envoy's default route timeout
	DefaultQueueRequests = 1024
	DefaultQueueBytes    = 64 << 20
	DefaultMaxInFlight   = 64
)

// SenderConfig configures a Sender. Zero values take the defaults above.
type SenderConfig struct {
	// URL is the shadow: http:// or https:// host[:port], with no path other
	// than "/". The ports default to 80 and 443.
	URL string
	// Workers is the number of workers, each with one persistent connection
	// to the shadow: it is the number of shadow connections.
	Workers int
	// Timeout bounds each request: dialling, writing, and waiting for the
	// complete response once the request is first in line on its connection.
	Timeout time.Duration
	// QueueRequests is the queue length of each worker.
	QueueRequests int
	// QueueBytes caps the bytes of all requests held by the Sender, from Send
	// until the request is answered or failed (so it bounds the requests
	// awaiting a response as well as the queued ones).
	QueueBytes int64
	// MaxInFlight is how many written requests may await their response on
	// one connection (the pipeline depth).
	MaxInFlight int
	// Rewriter turns captured requests into shadow requests. Default: a
	// Rewriter with the zero RewriteConfig.
	Rewriter *Rewriter
	// TLSConfig is used for https:// shadows (for example for RootCAs or
	// InsecureSkipVerify). ServerName defaults to the URL's host, and
	// NextProtos is always ["http/1.1"]. It is ignored for http://.
	TLSConfig *tls.Config
	// Stats receives the counters. Default: a new Stats, see Sender.Stats.
	Stats *Stats
	// Dial opens connections to the shadow (tests, network namespaces).
	// Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Sender replays requests to the shadow over a few persistent, pipelined
// connections, fire and forget.
//
// Send hashes the captured connection (client and server address) to a
// worker, so the requests of one client connection keep their order on one
// shadow connection. Each worker owns one connection at a time, writes its
// requests in batches (one write for many requests), and a reader goroutine
// per connection reads the answers in order, discards their bodies and
// counts them. Nothing is retried that the server may have seen; requests
// the server provably did not read (written after a response that closed the
// connection) are written again on the next connection.
type Sender struct {
	addr     string
	tls      *tls.Config // nil for http://
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	rw       *Rewriter
	stats    *Stats
	timeout  time.Duration
	maxBytes int64
	held     atomic.Int64  // bytes of requests held, checked against maxBytes
	room     chan struct{} // signalled when held bytes are released, for SendWait
	seed     maphash.Seed
	workers  []*worker

	// sending counts Send calls in progress, so that Close can wait until no
	// Send can still put a request into a queue that nobody drains.
	sending atomic.Int64
	closed  atomic.Bool

	mu      sync.Mutex // guards started and stopped
	started bool
	stopped bool

	stop        chan struct{}   // closed by Close: drain, then exit
	abortCtx    context.Context // cancelled when Close stops waiting
	abort       context.CancelFunc
	wg          sync.WaitGroup // workers and connection readers
	closeDone   chan struct{}
	closeResult error
}

// NewSender checks cfg and returns a Sender. Requests may be sent at once;
// they are written after Start.
func NewSender(cfg SenderConfig) (*Sender, error) {
	addr, host, secure, err := parseShadowURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	s := &Sender{
		addr:      addr,
		dial:      cfg.Dial,
		rw:        cfg.Rewriter,
		stats:     cfg.Stats,
		timeout:   cfg.Timeout,
		maxBytes:  cfg.QueueBytes,
		room:      make(chan struct{}, 1),
		seed:      maphash.MakeSeed(),
		stop:      make(chan struct{}),
		closeDone: make(chan struct{}),
	}
	workers, queue, inFlight := cfg.Workers, cfg.QueueRequests, cfg.MaxInFlight
	switch {
	case workers < 0:
		return nil, fmt.Errorf("shadow workers %d: must not be negative", workers)
	case queue < 0:
		return nil, fmt.Errorf("shadow queue length %d: must not be negative", queue)
	case inFlight < 0:
		return nil, fmt.Errorf("shadow max in flight %d: must not be negative", inFlight)
	case s.timeout < 0:
		return nil, fmt.Errorf("shadow timeout %v: must not be negative", s.timeout)
	case s.maxBytes < 0:
		return nil, fmt.Errorf("shadow queue bytes %d: must not be negative", s.maxBytes)
	}
	if workers == 0 {
		workers = DefaultWorkers
	}
	if queue == 0 {
		queue = DefaultQueueRequests
	}
	if inFlight == 0 {
		inFlight = DefaultMaxInFlight
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.maxBytes == 0 {
		s.maxBytes = DefaultQueueBytes
	}
	if s.rw == nil {
		s.rw, _ = NewRewriter(RewriteConfig{})
	}
	if s.stats == nil {
		s.stats = new(Stats)
	}
	if s.dial == nil {
		s.dial = (&net.Dialer{}).DialContext
	}
	if secure {
		tc := new(tls.Config)
		if cfg.TLSConfig != nil {
			tc = cfg.TLSConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		// We speak HTTP/1.1 only; a server that picked h2 would not
		// understand a single byte we write.
		tc.NextProtos = []string{"http/1.1"}
		s.tls = tc
	}
	s.abortCtx, s.abort = context.WithCancel(context.Background())
	for range workers {
		s.workers = append(s.workers, newWorker(s, queue, inFlight))
	}
	return s, nil
}

// parseShadowURL returns the dial address, the host name and whether TLS is
// used.
func parseShadowURL(raw string) (addr, host string, secure bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", false, fmt.Errorf("shadow URL %q: %w", raw, err)
	}
	bad := func(why string) error { return fmt.Errorf("shadow URL %q: %s", raw, why) }
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port, secure = "443", true
	default:
		return "", "", false, bad("want http:// or https://")
	}
	switch {
	case u.Opaque != "" || u.User != nil:
		return "", "", false, bad("want http(s)://host[:port]")
	case u.Path != "" && u.Path != "/":
		return "", "", false, bad("a path is not supported: requests keep their own target")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", "", false, bad("a query or fragment is not supported")
	}
	host = u.Hostname()
	if host == "" {
		return "", "", false, bad("missing host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", false, bad("invalid port")
		}
		port = p
	}
	return net.JoinHostPort(host, port), host, secure, nil
}

// Stats returns the counters the Sender updates.
func (s *Sender) Stats() *Stats { return s.stats }

// Start starts the workers. Calling it again, or after Close, does nothing.
func (s *Sender) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return
	}
	s.started = true
	for _, w := range s.workers {
		s.wg.Add(1)
		go w.run()
	}
}

// Send queues r for the shadow and reports whether it was queued. It never
// blocks: when the worker's queue or the byte budget is full, or the Sender
// is closed, r is dropped and counted. Either way the Sender owns r from now
// on and releases it when done; the caller must not touch it again.
func (s *Sender) Send(r *httpframe.Request) bool {
	s.sending.Add(1)
	defer s.sending.Add(-1)
	if s.closed.Load() {
		s.drop(r, DropClosed)
		return false
	}
	size := int64(len(r.Raw))
	if s.held.Add(size) > s.maxBytes {
		s.held.Add(-size)
		s.drop(r, DropQueueFull)
		return false
	}
	s.stats.QueueBytes.Add(size)
	w := s.workers[s.pick(r)]
	select {
	case w.queue <- item{req: r, size: size, enq: time.Now()}:
		s.stats.Queued.Add(1)
		return true
	default:
		s.unhold(size)
		s.drop(r, DropQueueFull)
		return false
	}
}

func (s *Sender) drop(r *httpframe.Request, why DropReason) {
	s.stats.Dropped[why].Add(1)
	releaseRequest(r)
}

func (s *Sender) unhold(size int64) {
	s.held.Add(-size)
	s.stats.QueueBytes.Add(-size)
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// SendWait is Send for a source that can wait, such as a capture file
// replayed as fast as the shadow takes it: instead of dropping, it waits
// for room in the worker's queue and in the byte budget until ctx is done.
// It reports whether r was queued; a request larger than the whole budget,
// or one still waiting when ctx ends or the Sender closes, is dropped and
// counted. Live capture must use Send, which never waits.
func (s *Sender) SendWait(ctx context.Context, r *httpframe.Request) bool {
	s.sending.Add(1)
	defer s.sending.Add(-1)
	size := int64(len(r.Raw))
	if size > s.maxBytes {
		s.drop(r, DropQueueFull)
		return false
	}
	for {
		if s.closed.Load() {
			s.drop(r, DropClosed)
			return false
		}
		if s.held.Add(size) <= s.maxBytes {
			break
		}
		s.held.Add(-size)
		// A release may have happened between the check and the wait; the
		// short timer covers it without a lock on the hot path.
		select {
		case <-s.room:
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			s.drop(r, DropQueueFull)
			return false
		}
	}
	s.stats.QueueBytes.Add(size)
	w := s.workers[s.pick(r)]
	select {
	case w.queue <- item{req: r, size: size, enq: time.Now()}:
		s.stats.Queued.Add(1)
		return true
	case <-ctx.Done():
	case <-s.stop:
	}
	s.unhold(size)
	s.drop(r, DropClosed)
	return false
}

// done releases a request the Sender has finished with.
func (s *Sender) done(it item) {
	releaseRequest(it.req)
	s.unhold(it.size)
}

// pick returns the worker of r's connection. Both directions never meet
// here (only requests are sent), so the key need not be symmetric.
func (s *Sender) pick(r *httpframe.Request) int {
	if len(s.workers) == 1 {
		return 0
	}
	var key [36]byte
	c, v := r.ClientAddr.Addr().As16(), r.ServerAddr.Addr().As16()
	copy(key[0:16], c[:])
	copy(key[16:32], v[:])
	binary.LittleEndian.PutUint16(key[32:], r.ClientAddr.Port())
	binary.LittleEndian.PutUint16(key[34:], r.ServerAddr.Port())
	return int(maphash.Bytes(s.seed, key[:]) % uint64(len(s.workers)))
}

// Close stops accepting requests and lets the workers finish what is queued
// and in flight until ctx is done; then it aborts the rest (counted as
// failed with reason shutdown) and returns ctx's error. It returns when every
// goroutine of the Sender has exited. Later calls wait for the first one.
func (s *Sender) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		select {
		case <-s.closeDone:
			return s.closeResult
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	defer close(s.closeDone)

	s.closed.Store(true)
	// A Send that has not seen closed yet is about to queue its request;
	// Send never blocks, so this wait is short.
	for s.sending.Load() != 0 {
		runtime.Gosched()
	}
	close(s.stop)
	if !started {
		s.abort()
		for _, w := range s.workers {
			w.abortAll()
		}
		return nil
	}

	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
		s.abort()
		for _, w := range s.workers {
			w.abortConn()
		}
		<-finished
		s.closeResult = ctx.Err()
	}
	s.abort()
	return s.closeResult
}

// aborting reports whether Close has stopped waiting.
func (s *Sender) aborting() bool { return s.abortCtx.Err() != nil }

// errUnsolicited is data from the shadow while no request awaits an answer.
var errUnsolicited = errors.New("shadow sent data with no request outstanding")
