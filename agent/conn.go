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
	timers         *connTimers // the shard's, for HTTP/2's StreamAfter
	client, server netip.AddrPort
	mode           connMode
	// head holds the first bytes while they may still be the preface.
	head  [len(preface)]byte
	nhead int
	h1    *httpframe.Parser
	h2    *h2frame.Conn
	timed bool // in timers
}

func newConn(cfg *connConfig, timers *connTimers, first *reassembly.Segment, mid bool) *conn {
	c := &conn{cfg: cfg, timers: timers, client: first.Flow.Src, server: first.Flow.Dst}
	if mid {
		// Joined in the middle: no preface to wait for, and the HTTP/1
		// framer looks for a request line.
		c.mode = modeHTTP1
		c.h1 = httpframe.NewParser(cfg.h1, c.client, c.server, true)
	}
	return c
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
		c.timers.add(c)
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
		c.h1 = httpframe.NewParser(c.cfg.h1, c.client, c.server, false)
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
			c.h1 = httpframe.NewParser(c.cfg.h1, c.client, c.server, true)
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
	if c.h2 != nil {
		c.h2.End()
		c.h2 = nil
	}
	if (c.mode == modeDetect || c.mode == modeUpgraded) && c.nhead > 0 {
		// A stream that ended inside what could have been the preface.
		c.cfg.h1.Stats.GarbageBytes.Add(uint64(c.nhead))
	}
}

// connTimers are the connections of one shard whose HTTP/2 framer waits for
// time to pass. The shard's owner (whoever holds its lock) uses them.
type connTimers struct {
	conns []*conn
}

func (ts *connTimers) add(c *conn) { ts.conns = append(ts.conns, c) }

// next returns the earliest deadline of the connections, or zero.
func (ts *connTimers) next() time.Time {
	var next time.Time
	for _, c := range ts.conns {
		if c.h2 == nil {
			continue
		}
		if d := c.h2.NextDeadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	return next
}

// tick lets time pass for every connection, and forgets those that no
// longer wait.
func (ts *connTimers) tick(now time.Time) {
	kept := ts.conns[:0]
	for _, c := range ts.conns {
		if c.tick(now) {
			kept = append(kept, c)
		}
	}
	clear(ts.conns[len(kept):])
	ts.conns = kept
}
