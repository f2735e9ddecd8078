package reassembly

import "time"

// Assembler turns the segments of many flows into ordered bytes, one Stream
// per flow. It belongs to one goroutine: the agent runs one per worker shard
// and sends every segment of a flow to the same shard, so nothing here
// locks. Only the shared Stats are touched atomically.
//
// Each flow's bytes are delivered in sequence order, each byte once.
// Retransmissions and overlaps are trimmed to what has not been seen, and
// where two copies of a byte differ the first to arrive wins, so the
// consumer never has to undo anything. A hole that will not be filled is
// reported with Stream.Gap before the bytes after it.
//
// Memory is bounded three ways: MaxStreams caps the flows (the least
// recently active one is ended to make room), MaxStreamBuffer and MaxBuffer
// cap the out-of-order bytes (a flow that reaches a cap gives up on its
// hole at once), and GapTimeout caps how long a hole may hold bytes.
//
// Time comes only from the segments and from Tick, never from the system
// clock, so a capture replays the same way every time.
type Assembler struct {
	cfg         Config
	stats       *Stats
	gapTimeout  int64 // nanoseconds
	idleTimeout int64 // nanoseconds

	flows map[Flow]*conn
	// head is the least recently active flow and tail the most recent one.
	// Because every touch stamps the assembler clock, which never goes back,
	// the list is also sorted by lastSeen: idle expiry stops at the first
	// flow that is still fresh, and eviction takes the head.
	head, tail *conn

	// waiting lists the flows that wait for a hole to be filled, so that
	// Tick visits those and not every flow.
	waiting []*conn

	buffered   int // out-of-order payload bytes held, for MaxBuffer
	chunks     int // out-of-order chunks held, to bound bookkeeping memory
	flowChunks int // chunk limit per flow
	maxChunks  int // chunk limit per Assembler

	// clock is the newest time seen (segment times and Tick), in Unix
	// nanoseconds; 0 until a time has been seen.
	clock     int64
	clockTime time.Time

	pool  bufPool
	spare []*ooo

	// closed remembers where recently closed flows ended (closed.go).
	closed closedFlows
}

// conn is the state of one flow. It is kept small because an agent holds
// hundreds of thousands of them, most idle: everything that only a flow
// with a hole needs lives in ooo, allocated while the flow waits.
type conn struct {
	flow       Flow
	stream     Stream // nil once the flow has ended
	prev, next *conn  // activity list
	buf        *ooo   // non-nil while the flow waits for a hole
	lastSeen   int64
	nextSeq    uint32 // sequence number of the next byte to deliver
	start      uint32 // sequence number of the first byte of the stream
	finSeq     uint32 // sequence number of the FIN, when hasFin
	hasFin     bool
}

// finAhead reports whether a FIN was seen that the delivered bytes have not
// reached yet: the flow waits for the bytes in between.
func (c *conn) finAhead() bool { return c.hasFin && int32(c.finSeq-c.nextSeq) > 0 }

// sameConn reports whether a SYN whose first data byte would be seq belongs
// to this flow rather than to a new connection on a reused port. It matches
// a retransmitted SYN and also a SYN that arrives after the data of a flow
// that was joined without it (the SYN's own payload may then precede start).
func (c *conn) sameConn(seq uint32, n int) bool { return uint64(c.start-seq) <= uint64(n) }

type endReason uint8

const (
	endClosed  endReason = iota // FIN, RST, or a new connection on the same ports
	endExpired                  // idle
	endEvicted                  // MaxStreams
	endShut                     // Assembler.Close
)

// New returns an Assembler for cfg, with zero fields replaced by the
// defaults. It panics if cfg.NewStream is nil.
func New(cfg Config) *Assembler {
	if cfg.NewStream == nil {
		panic("reassembly: Config.NewStream is nil")
	}
	if cfg.MaxStreamBuffer <= 0 {
		cfg.MaxStreamBuffer = DefaultMaxStreamBuffer
	}
	if cfg.MaxBuffer <= 0 {
		cfg.MaxBuffer = DefaultMaxBuffer
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.GapTimeout <= 0 {
		cfg.GapTimeout = DefaultGapTimeout
	}
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	a := &Assembler{
		cfg:         cfg,
		stats:       cfg.Stats,
		gapTimeout:  int64(cfg.GapTimeout),
		idleTimeout: int64(cfg.IdleTimeout),
		flows:       make(map[Flow]*conn),
	}
	// A chunk costs about 40 bytes of bookkeeping whatever its size, so
	// the count of chunks is capped as well as their bytes: otherwise a
	// sender of one-byte islands could make the bookkeeping dwarf the cap.
	a.flowChunks = max(cfg.MaxStreamBuffer/chunkShare, minFlowChunks)
	a.maxChunks = max(cfg.MaxBuffer/chunkShare, a.flowChunks)
	a.pool.limit = min(cfg.MaxBuffer, maxPooled)
	return a
}

// Len returns the number of flows tracked now.
func (a *Assembler) Len() int { return len(a.flows) }

// Add gives the Assembler one segment. Bytes that are now in order are
// delivered before Add returns, and a flow whose FIN is reached, or that is
// reset, is ended. seg and its Payload are not used after Add returns.
func (a *Assembler) Add(seg *Segment) {
	st := a.stats
	st.Segments.Add(1)
	st.Bytes.Add(uint64(len(seg.Payload)))
	if !seg.Time.IsZero() {
		a.advance(seg.Time)
	}
	c := a.flows[seg.Flow]
	if seg.Flags&RST != 0 {
		a.reset(c, seg)
		return
	}
	seq := seg.Seq
	syn := seg.Flags&SYN != 0
	if syn {
		// The SYN takes a sequence number of its own; its payload (TCP Fast
		// Open) starts after it.
		seq++
		if c != nil && !c.sameConn(seq, len(seg.Payload)) {
			a.end(c, endClosed, seg.Time)
			c = nil
		}
		if c == nil {
			if a.closed.sameStart(seg.Flow, seq) {
				// The closed connection's own SYN again: its data, if it
				// comes again too, is dropped as already delivered.
				a.stats.Duplicate.Add(1)
				return
			}
			a.closed.forget(seg.Flow) // a new connection on the same ports
		}
	}
	payload := seg.Payload
	if c == nil && !syn {
		// Late retransmissions of a closed flow are not a new stream.
		seq, payload = a.afterClose(seg.Flow, seq, payload)
	}
	if c == nil {
		// Only a SYN or data may open a flow: a pure ACK, or the FIN/ACK that
		// a closed connection retransmits, would open a stream of nothing.
		if !syn && len(payload) == 0 {
			return
		}
		c = a.open(seg, seq, !syn)
	} else {
		a.touch(c)
	}
	if len(payload) > 0 {
		a.accept(c, seq, payload, seg.Time)
	}
	if seg.Flags&FIN != 0 && !c.hasFin {
		// The first FIN wins: a later one with another number is noise.
		c.hasFin = true
		c.finSeq = seq + uint32(len(payload))
		if c.finAhead() {
			a.waitFor(c).finAt = a.clock
		}
	}
	if c.buf != nil {
		a.expireHoles(c, seg.Time)
	}
	a.checkFin(c, seg.Time)
}

// Tick moves the assembler clock to now (it never goes back), gives up on
// the holes that have waited GapTimeout, and ends the flows that have been
// idle for IdleTimeout. The agent calls it periodically, so that time passes
// for flows that receive no segment.
func (a *Assembler) Tick(now time.Time) {
	if !now.IsZero() {
		a.advance(now)
	}
	t := a.clockTime
	for i := 0; i < len(a.waiting); {
		c := a.waiting[i]
		a.expireHoles(c, t)
		a.checkFin(c, t)
		// A flow that stopped waiting was swapped out for the last one,
		// which has not been visited yet.
		if i < len(a.waiting) && a.waiting[i] == c {
			i++
		}
	}
	for c := a.head; c != nil && a.clock-c.lastSeen >= a.idleTimeout; c = a.head {
		a.end(c, endExpired, t)
	}
	a.closed.expire(a.clock)
}

// NextDeadline returns when Tick next has work to do: a hole's GapTimeout,
// the least recently active flow's IdleTimeout, or the expiry of a closed
// flow's memory, whichever comes first, on the clock of the segments. It
// returns the zero time when nothing is held, so that an idle agent need not
// wake up at all.
func (a *Assembler) NextDeadline() time.Time {
	const never = int64(1<<63 - 1)
	next := never
	for _, c := range a.waiting {
		if d := c.buf.since(c) + a.gapTimeout; d < next {
			next = d
		}
	}
	if a.head != nil {
		if d := a.head.lastSeen + a.idleTimeout; d < next {
			next = d
		}
	}
	if d, ok := a.closed.nextExpiry(); ok && d < next {
		next = d
	}
	if next == never {
		return time.Time{}
	}
	return a.clockTime.Add(time.Duration(next - a.clock))
}

// Close ends every flow, least recently active first, delivering what is
// buffered behind holes (after a Gap), and releases the buffers. The
// Assembler is empty afterwards and may be used again.
func (a *Assembler) Close() {
	for c := a.head; c != nil; c = a.head {
		a.end(c, endShut, a.clockTime)
	}
	a.flows = make(map[Flow]*conn)
	a.waiting = nil
	a.spare = nil
	a.pool = bufPool{limit: a.pool.limit}
	a.closed.reset()
}

// advance moves the clock forward to t.
func (a *Assembler) advance(t time.Time) {
	if n := t.UnixNano(); n > a.clock {
		a.clock = n
		a.clockTime = t
	}
}

// open starts tracking the flow of seg, whose first byte of data is seq.
func (a *Assembler) open(seg *Segment, seq uint32, mid bool) *conn {
	if len(a.flows) >= a.cfg.MaxStreams && a.head != nil {
		a.end(a.head, endEvicted, seg.Time)
	}
	flow := seg.Flow
	c := &conn{flow: flow, nextSeq: seq, start: seq, lastSeen: a.clock}
	c.stream = a.cfg.NewStream(seg, mid)
	a.flows[flow] = c
	a.pushBack(c)
	st := a.stats
	st.StreamsOpened.Add(1)
	if mid {
		st.StreamsMid.Add(1)
	}
	st.ActiveStreams.Add(1)
	return c
}

// reset ends c and the reverse flow, as an RST ends the connection. The
// RST's own payload is not stream data and is ignored.
func (a *Assembler) reset(c *conn, seg *Segment) {
	if c != nil {
		a.end(c, endClosed, seg.Time)
	}
	if r := a.flows[seg.Flow.Reverse()]; r != nil {
		a.end(r, endClosed, seg.Time)
	}
}

// checkFin ends c once every byte before its FIN has been delivered.
func (a *Assembler) checkFin(c *conn, t time.Time) {
	if c.stream != nil && c.hasFin && int32(c.nextSeq-c.finSeq) >= 0 {
		a.end(c, endClosed, t)
	}
}

// expireHoles gives up on the holes of c that have waited GapTimeout.
func (a *Assembler) expireHoles(c *conn, t time.Time) {
	for c.buf != nil && a.clock-c.buf.since(c) >= a.gapTimeout {
		a.skipHole(c, t)
	}
}

// end stops tracking c. What waits behind holes is delivered first, each
// hole announced by a Gap, so that the consumer sees every byte it can;
// End is the last call the Stream receives.
func (a *Assembler) end(c *conn, why endReason, t time.Time) {
	for c.buf != nil {
		a.skipHole(c, t)
	}
	delete(a.flows, c.flow)
	a.unlink(c)
	s := c.stream
	c.stream = nil
	st := a.stats
	st.ActiveStreams.Add(-1)
	switch why {
	case endClosed:
		st.StreamsClosed.Add(1)
		a.closed.add(c.flow, c.start, c.nextSeq, a.clock)
	case endExpired:
		st.StreamsExpired.Add(1)
	case endEvicted:
		st.StreamsEvicted.Add(1)
	}
	s.End()
}

// emit delivers b, which starts at c.nextSeq, to the stream.
func (a *Assembler) emit(c *conn, b []byte, t time.Time) {
	if len(b) == 0 {
		return
	}
	c.stream.Data(b, t)
	c.nextSeq += uint32(len(b))
	a.stats.Delivered.Add(uint64(len(b)))
}
