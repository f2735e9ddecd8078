package agent

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/shadowtee/shadowtee/h2frame"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/reassembly"
)

// preface is what an HTTP/2 client sends first (RFC 9113 3.4), with prior
// knowledge or after an h2c upgrade.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// connConfig is what the framers of every connection share.
type connConfig struct {
	h1 *httpframe.Config
	h2 *h2frame.Config
	// answers frames the servers' answers, when they are compared; nil:
	// the server's side of a connection is not read.
	answers *httpframe.ResponseConfig
}

// connMode is what a connection's client bytes are.
type connMode uint8

const (
	modeDetect connMode = iota // the first bytes may be the HTTP/2 preface
	modeHTTP1
	modeUpgraded // an h2c upgrade was asked for: the preface may follow
	modeHTTP2
	modeOpaque // not ours to frame
)

// conn is one captured TCP connection: the client's byte stream, whatever
// protocol it speaks. It is the reassembly Stream of the client-to-server
// flow, and decides per connection which framer reads it: HTTP/1 from the
// first byte that cannot start the HTTP/2 preface, HTTP/2 after the
// preface (with prior knowledge, or after an h2c upgrade request).
type conn struct {
	cfg            *connConfig
	shard          *connTable // the shard's connections and timers
	client, server netip.AddrPort
	mode           connMode
	// head holds the first bytes while they may still be the preface.
	head  [len(preface)]byte
	nhead int
	h1    *httpframe.Parser
	h2    *h2frame.Conn
	timed bool // in the shard's timers

	// The server's side, when answers are compared.
	resp        *httpframe.ResponseParser
	early       []byte // the server's HTTP/2 bytes after a 101, before the preface made h2
	serverSeen  bool   // the server's stream was opened
	serverEnded bool
	clientEnded bool
}

func newConn(cfg *connConfig, shard *connTable, first *reassembly.Segment, mid bool) *conn {
	c := &conn{cfg: cfg, shard: shard, client: first.Flow.Src, server: first.Flow.Dst}
	if cfg.answers != nil {
		c.resp = httpframe.NewResponseParser(cfg.answers, mid)
		shard.conns[first.Flow] = c
	}
	if mid {
		// Joined in the middle: no preface to wait for, and the HTTP/1
		// framer looks for a request line.
		c.mode = modeHTTP1
		c.newH1(true)
	}
	return c
}

// newH1 starts the HTTP/1 framer; when answers are compared, it tells the
// response framer of every request, in order.
func (c *conn) newH1(mid bool) {
	c.h1 = httpframe.NewParser(c.cfg.h1, c.client, c.server, mid)
	if r := c.resp; r != nil {
		c.h1.Watch(func(method []byte, tag any) {
			var x any
			if e := exchangeOf(tag); e != nil {
				x = e
			}
			r.Expect(method, x)
		})
	}
}

// Data takes the next bytes of the client's stream.
func (c *conn) Data(b []byte, t time.Time) {
	for len(b) > 0 {
		switch c.mode {
		case modeDetect, modeUpgraded:
			b = c.detect(b, t)
		case modeHTTP1:
			n := c.h1.Feed(b, t)
			b = b[n:]
			if c.h1.Switched() {
				c.mode, c.nhead = modeUpgraded, 0
			}
		case modeHTTP2:
			c.h2.ClientData(b, t)
			c.schedule()
			return
		case modeOpaque:
			c.cfg.h1.Stats.OpaqueBytes.Add(uint64(len(b)))
			return
		}
	}
}

// schedule tells the shard whether the HTTP/2 framer holds a request that
// must be emitted as streaming when time passes.
func (c *conn) schedule() {
	if d := c.h2.NextDeadline(); !d.IsZero() && !c.timed {
		c.timed = true
		c.shard.timers = append(c.shard.timers, c)
	}
}

// tick lets time pass for the HTTP/2 framer; it reports whether the
// connection still needs ticks.
func (c *conn) tick(now time.Time) bool {
	if c.h2 == nil {
		c.timed = false
		return false
	}
	c.h2.Tick(now)
	c.timed = !c.h2.NextDeadline().IsZero()
	return c.timed
}

// detect reads the first bytes of the stream, or those after an h2c
// upgrade request, until they are the preface or cannot be. It returns what
// is left of b for the framer chosen.
func (c *conn) detect(b []byte, t time.Time) []byte {
	want := preface[c.nhead:]
	n := min(len(b), len(want))
	if bytes.Equal(b[:n], []byte(want[:n])) {
		copy(c.head[c.nhead:], b[:n])
		c.nhead += n
		if c.nhead < len(preface) {
			return nil // so far, so HTTP/2
		}
		c.http2(t)
		return b[n:]
	}
	// Not the preface: HTTP/1, from the bytes held back on.
	held := c.head[:c.nhead]
	c.nhead = 0
	if c.mode == modeUpgraded {
		// The server refused the upgrade and answered in HTTP/1: the
		// upgrade request was an HTTP/1 request like any other.
		if r, tag := c.h1.TakeUpgrade(); r != nil {
			c.h1.Emit(r, tag)
		}
		c.h1.Resume()
	} else {
		c.newH1(false)
	}
	c.mode = modeHTTP1
	if len(held) > 0 {
		c.h1.Feed(held, t)
	}
	return b
}

// http2 hands the connection to the HTTP/2 framer, from the preface on.
// After an h2c upgrade, the request that asked is stream 1.
func (c *conn) http2(t time.Time) {
	if c.cfg.h2 == nil {
		st := c.cfg.h1.Stats
		st.Skipped[httpframe.ReasonHTTP2].Add(1)
		st.OpaqueBytes.Add(uint64(len(preface)))
		if c.mode == modeUpgraded {
			if r, tag := c.h1.TakeUpgrade(); r != nil {
				c.h1.Emit(r, tag)
			}
		}
		c.mode = modeOpaque
		return
	}
	c.h2 = h2frame.NewConn(c.cfg.h2, c.client, c.server, false)
	if c.mode == modeUpgraded {
		r, tag := c.h1.TakeUpgrade()
		c.h2.Upgrade(r, tag, r != nil)
		if r != nil {
			r.Release() // Upgrade only reads it
		}
	}
	c.mode = modeHTTP2
	c.h2.ClientData([]byte(preface), t)
	if len(c.early) > 0 {
		// The server switched before the client's preface was seen.
		c.h2.ServerData(c.early, t)
		c.early = nil
	}
}

// Gap reports lost bytes.
func (c *conn) Gap() {
	switch c.mode {
	case modeHTTP1:
		c.h1.Gap()
	case modeHTTP2:
		c.h2.ClientGap()
	case modeDetect, modeUpgraded:
		// The start is lost: look for a request line from here on.
		c.nhead = 0
		if c.h1 == nil {
			c.newH1(true)
		} else {
			c.h1.Resume()
			c.h1.Gap()
		}
		c.mode = modeHTTP1
	}
}

// End reports the end of the client's stream.
func (c *conn) End() {
	if c.h1 != nil {
		c.h1.End()
	}
	if (c.mode == modeDetect || c.mode == modeUpgraded) && c.nhead > 0 {
		// A stream that ended inside what could have been the preface.
		c.cfg.h1.Stats.GarbageBytes.Add(uint64(c.nhead))
	}
	c.clientEnded = true
	if c.serverEnded || !c.serverSeen {
		c.finish()
	}
}

// finish ends what both sides share, once both are over (or the server's
// never began): the HTTP/2 framer, and the answers still awaited.
func (c *conn) finish() {
	if c.h2 != nil {
		c.h2.End()
		c.h2 = nil
	}
	if c.resp != nil {
		c.resp.End()
		c.resp = nil
		if c.shard.conns[reassembly.Flow{Src: c.client, Dst: c.server}] == c {
			delete(c.shard.conns, reassembly.Flow{Src: c.client, Dst: c.server})
		}
	}
	c.early = nil
}

// answerSide is the reassembly Stream of a connection's server-to-client
// flow, when answers are compared.
type answerSide struct{ c *conn }

// answers opens the server's side of c, or returns nil when it has one.
func (c *conn) answers() reassembly.Stream {
	if c.serverSeen || c.resp == nil {
		return nil
	}
	c.serverSeen = true
	return answerSide{c}
}

// Data frames the server's bytes: HTTP/1 answers, or HTTP/2 frames once
// the client's preface was seen (after a 101 for an upgrade).
func (s answerSide) Data(b []byte, t time.Time) {
	c := s.c
	switch {
	case c.h2 != nil:
		c.h2.ServerData(b, t)
	case c.resp == nil:
	case !c.resp.Switched():
		n := c.resp.Feed(b, t)
		if c.resp.Switched() && n < len(b) {
			c.serverAfterSwitch(b[n:], t)
		}
	default:
		c.serverAfterSwitch(b, t)
	}
}

// serverAfterSwitch holds what the server sent after a 101 until the
// client's preface makes the HTTP/2 framer; bounded, past it the answers
// are lost (the framer reports them so).
func (c *conn) serverAfterSwitch(b []byte, t time.Time) {
	if c.h2 != nil {
		c.h2.ServerData(b, t)
		return
	}
	const maxEarly = 64 << 10
	if len(c.early)+len(b) <= maxEarly {
		c.early = append(c.early, b...)
	}
}

func (s answerSide) Gap() {
	c := s.c
	switch {
	case c.h2 != nil:
		c.h2.ServerGap()
	case c.resp != nil:
		c.resp.Gap()
	}
}

func (s answerSide) End() {
	c := s.c
	c.serverEnded = true
	if c.clientEnded {
		c.finish()
	} else if c.resp != nil && c.h2 == nil {
		// The server is done: whatever the client asks from now on gets
		// no answer.
		c.resp.End()
	}
}

// connTable is what one shard keeps of its connections: those whose
// server's side may come (when answers are compared), and those whose
// HTTP/2 framer waits for time to pass. Whoever holds the shard's lock
// uses it.
type connTable struct {
	conns  map[reassembly.Flow]*conn // by client-to-server flow
	timers []*conn
}

// next returns the earliest deadline of the timed connections, or zero.
func (ts *connTable) next() time.Time {
	var next time.Time
	for _, c := range ts.timers {
		if c.h2 == nil {
			continue
		}
		if d := c.h2.NextDeadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	return next
}

// tick lets time pass for every timed connection, and forgets those that
// no longer wait.
func (ts *connTable) tick(now time.Time) {
	kept := ts.timers[:0]
	for _, c := range ts.timers {
		if c.tick(now) {
			kept = append(kept, c)
		}
	}
	clear(ts.timers[len(kept):])
	ts.timers = kept
}
