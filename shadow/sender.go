package shadow

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// Sender replays requests to one shadow, fire and forget. There is one per
// rule and shadow protocol (NewHTTP1, NewHTTP2), built on the same pool
// pieces: dialling and TLS, limits, the ledger and Stats.
type Sender interface {
	// Send takes r for the shadow and reports whether it was queued. It
	// never blocks the capture: past a limit r is dropped and counted
	// (DropOverflow), unless the sender was made to wait (SenderConfig.Wait).
	// Either way the sender owns r from now on and Releases it once; the
	// caller must not touch it again. tag comes back in SenderConfig.Answer.
	Send(r httpmsg.Request, tag any) bool
	// Close stops taking requests and lets those queued and in flight
	// finish until ctx is done; then it fails the rest (FailShutdown) and
	// returns ctx's error. It returns once every goroutine of the sender
	// has ended and every queued request has been counted. Later calls wait
	// for the first one.
	Close(ctx context.Context) error
	// Stats returns the counters the sender updates.
	Stats() *Stats
}

// Defaults of SenderConfig: Envoy's where Envoy has one (route timeout,
// cluster circuit breakers).
const (
	DefaultTimeout        = 15 * time.Second
	DefaultIdleTimeout    = time.Minute
	DefaultMaxConnections = 1024
	DefaultMaxPending     = 1024
	DefaultMaxRequests    = 1024
	DefaultQueueBytes     = 64 << 20
	DefaultAnswerBodyCap  = 64 << 10
)

// AnswerFunc receives the end of every queued request, once: the shadow's
// answer when it was mirrored (ok, a non-nil; the callee owns a), or why it
// failed (!ok, a nil). It runs on the sender's goroutines, so it must not
// block.
type AnswerFunc func(tag any, a *httpmsg.Answer, fail FailReason, ok bool)

// SenderConfig configures a Sender. Zero values take the defaults above.
type SenderConfig struct {
	// URL is the shadow: http:// or https:// host[:port], with no path other
	// than "/". The ports default to 80 and 443.
	URL string
	// Timeout bounds each request from the moment it may be sent (Send, or
	// for Ordered, reaching the head of its client connection's line) to the
	// end of its answer: waiting for a connection, dialling, writing and
	// reading. With Pipeline > 1, a request's clock also restarts when it
	// reaches the head of its connection's line, so that it is not blamed
	// for the answers before it.
	Timeout time.Duration
	// IdleTimeout closes connections that carried nothing for that long.
	IdleTimeout time.Duration
	// Circuit breakers, as Envoy's (per sender): connections open or being
	// opened, requests waiting for a connection (Ordered: or for their
	// turn), requests on connections. A request that would wait past
	// MaxPending is dropped with DropOverflow; one that finds MaxRequests
	// on connections waits like one that finds no free connection.
	MaxConnections int
	MaxPending     int
	MaxRequests    int
	// QueueBytes caps the bytes of all requests held by the sender, from
	// Send until the request is answered or failed. Past it, Send drops
	// with DropOverflow.
	QueueBytes int64
	// Pipeline is how many requests one connection carries at once, their
	// answers read in order. 0 or 1: one, as Envoy does; more only for
	// shadows known to handle pipelining. A new connection is opened only
	// when every open one carries Pipeline requests.
	Pipeline int
	// Ordered keeps the requests of one client connection (Request.Client
	// and Server) in order: each is sent once the one before it has ended.
	// Different client connections still go in parallel.
	Ordered bool
	// Rewriter turns captured requests into shadow requests. Default: a
	// Rewriter with the zero RewriteConfig.
	Rewriter *Rewriter
	// TLSConfig is used for https:// shadows (for example for RootCAs or
	// InsecureSkipVerify). ServerName defaults to the URL's host,
	// NextProtos is always ["http/1.1"] for NewHTTP1 (["h2"] for
	// NewHTTP2, which fails a shadow that negotiates nothing else), and a
	// ClientSessionCache is added when there is none, so that new
	// connections resume a session. It is ignored for http://.
	TLSConfig *tls.Config
	// Stats receives the counters. Default: a new Stats, see Sender.Stats.
	Stats *Stats
	// Dial opens connections to the shadow (tests, network namespaces).
	// Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Wait, when not nil, makes Send wait for room instead of dropping,
	// until Wait is done: for a capture file replayed as fast as the
	// shadow takes it. Live capture leaves it nil: Send never waits.
	Wait context.Context
	// Answer, when set, receives the end of every queued request with its
	// tag (see AnswerFunc). When nil, nothing of the answers is kept.
	Answer AnswerFunc
	// Hold, when set, lets HTTP/2 answers wait in their sockets for the
	// capture's next look at its ring (see AnswerHold). Live capture sets
	// it; nil reads every answer as it comes. HTTP/1 senders ignore it.
	Hold *AnswerHold
	// AnswerBodyCap is how much of an answer's body Answer gets (the rest
	// is read and counted in BodyLen). 0 means DefaultAnswerBodyCap;
	// negative keeps none.
	AnswerBodyCap int
}

// settings is a SenderConfig checked, with the defaults filled in.
type settings struct {
	timeout, idle                           time.Duration
	maxConns, maxPending, maxRequests, pipe int
	maxBytes                                int64
	answerCap                               int
}

func (cfg *SenderConfig) settings() (settings, error) {
	st := settings{
		timeout: cfg.Timeout, idle: cfg.IdleTimeout,
		maxConns: cfg.MaxConnections, maxPending: cfg.MaxPending, maxRequests: cfg.MaxRequests,
		pipe: cfg.Pipeline, maxBytes: cfg.QueueBytes, answerCap: cfg.AnswerBodyCap,
	}
	for _, c := range []struct {
		name string
		neg  bool
	}{
		{"timeout", st.timeout < 0},
		{"idle timeout", st.idle < 0},
		{"max connections", st.maxConns < 0},
		{"max pending", st.maxPending < 0},
		{"max requests", st.maxRequests < 0},
		{"pipeline", st.pipe < 0},
		{"queue bytes", st.maxBytes < 0},
	} {
		if c.neg {
			return st, fmt.Errorf("shadow %s: must not be negative", c.name)
		}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&st.maxConns, DefaultMaxConnections)
	def(&st.maxPending, DefaultMaxPending)
	def(&st.maxRequests, DefaultMaxRequests)
	def(&st.pipe, 1)
	def(&st.answerCap, DefaultAnswerBodyCap)
	if st.answerCap < 0 {
		st.answerCap = 0
	}
	if st.timeout == 0 {
		st.timeout = DefaultTimeout
	}
	if st.idle == 0 {
		st.idle = DefaultIdleTimeout
	}
	if st.maxBytes == 0 {
		st.maxBytes = DefaultQueueBytes
	}
	return st, nil
}
