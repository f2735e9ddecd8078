package reassembly

import (
	"slices"
	"time"
)

// chunk is a run of out-of-order bytes, copied because the segment's
// payload is only lent for the duration of Add.
type chunk struct {
	seq  uint32
	at   int64 // since when the hole before this chunk is known (clock)
	data []byte
}

// ooo is what a flow needs only while it waits for a hole to be filled: the
// bytes that arrived ahead of it, and the time a pending FIN arrived.
//
// The chunks are sorted by sequence number, never overlap, and all start
// after the flow's next expected byte. Keeping them disjoint is what makes
// "first arrival wins" cheap: a newcomer only fills the gaps between them.
type ooo struct {
	chunks []chunk
	bytes  int   // payload bytes in chunks
	finAt  int64 // when the FIN arrived, if it is ahead (clock)
	idx    int   // position of the flow in Assembler.waiting
}

// since returns the time from which the front hole is known to exist: the
// earliest arrival of anything beyond it. The at of each chunk is never
// later than that of the chunks after it (see store), so the first chunk
// holds the minimum.
func (o *ooo) since(c *conn) int64 {
	s := int64(1<<63 - 1)
	if len(o.chunks) > 0 {
		s = o.chunks[0].at
	}
	if c.finAhead() && o.finAt < s {
		s = o.finAt
	}
	return s
}

// Bounds on the bookkeeping of out-of-order chunks; see New.
const (
	chunkShare    = 256 // one chunk allowed per this many bytes of cap
	minFlowChunks = 64
	maxSpare      = 1024 // idle ooo records kept for reuse
	maxSpareCap   = 64   // chunk slices larger than this are not kept
)

// accept takes the payload p whose first byte has sequence number seq.
// Bytes already delivered or already buffered are dropped: the first copy
// of a byte to arrive is the one delivered, even if a later copy differs.
func (a *Assembler) accept(c *conn, seq uint32, p []byte, t time.Time) {
	st := a.stats
	full := false
	for {
		if int32(seq-c.nextSeq) < 0 {
			old := c.nextSeq - seq
			if uint64(old) >= uint64(len(p)) {
				st.Duplicate.Add(1)
				return
			}
			st.OverlapBytes.Add(uint64(old))
			p = p[old:]
			seq = c.nextSeq
		}
		if seq == c.nextSeq {
			a.deliver(c, p, t)
			return
		}
		if a.store(c, seq, p) {
			return
		}
		// A cap is reached. Waiting longer for the hole would only hold
		// more memory, so give it up now and try again.
		if !full {
			full = true
			st.BufferFullDrops.Add(1)
		}
		a.makeRoom(c, seq, t)
	}
}

// makeRoom gives up on the front hole of c because a segment starting at
// seq, ahead of it, could not be buffered. If that segment starts inside
// the front hole, the flow skips straight to it, which needs no memory at
// all; otherwise it skips to the first buffered chunk, which frees some.
func (a *Assembler) makeRoom(c *conn, seq uint32, t time.Time) {
	o := c.buf
	if o == nil || len(o.chunks) == 0 || seq-c.nextSeq < o.chunks[0].seq-c.nextSeq {
		a.gap(c, seq)
		return
	}
	a.skipHole(c, t)
}

// gap reports to the stream that the bytes up to seq are lost.
func (a *Assembler) gap(c *conn, seq uint32) {
	st := a.stats
	st.Gaps.Add(1)
	st.GapBytes.Add(uint64(seq - c.nextSeq))
	c.nextSeq = seq
	c.stream.Gap()
}

// skipHole gives up on the front hole of a waiting flow: a Gap, then every
// buffered byte that is contiguous after the hole.
func (a *Assembler) skipHole(c *conn, t time.Time) {
	o := c.buf
	switch {
	case len(o.chunks) > 0:
		a.gap(c, o.chunks[0].seq)
	case c.finAhead():
		a.gap(c, c.finSeq)
	}
	a.deliver(c, nil, t)
}

// deliver delivers p, which starts at c.nextSeq, then every buffered chunk
// that has become contiguous. Where p runs over buffered chunks, the
// chunks' bytes are delivered (they came first) and p resumes after them,
// so p is never copied.
func (a *Assembler) deliver(c *conn, p []byte, t time.Time) {
	o := c.buf
	if o == nil {
		a.emit(c, p, t)
		return
	}
	k := 0
	for len(p) > 0 && k < len(o.chunks) {
		ch := &o.chunks[k]
		off := ch.seq - c.nextSeq
		if uint64(len(p)) < uint64(off) {
			break
		}
		a.emit(c, p[:off], t)
		n := min(len(p)-int(off), len(ch.data))
		if n > 0 {
			a.stats.OverlapBytes.Add(uint64(n))
		}
		p = p[int(off)+n:]
		a.emitChunk(c, ch, t)
		k++
	}
	a.emit(c, p, t)
	for k < len(o.chunks) && o.chunks[k].seq == c.nextSeq {
		a.emitChunk(c, &o.chunks[k], t)
		k++
	}
	if k > 0 {
		n := copy(o.chunks, o.chunks[k:])
		clear(o.chunks[n:])
		o.chunks = o.chunks[:n]
	}
	a.settle(c)
}

// emitChunk delivers a buffered chunk that starts at c.nextSeq and frees it.
func (a *Assembler) emitChunk(c *conn, ch *chunk, t time.Time) {
	b := ch.data
	ch.data = nil
	c.buf.bytes -= len(b)
	a.buffered -= len(b)
	a.chunks--
	a.stats.BufferedBytes.Add(-int64(len(b)))
	a.emit(c, b, t)
	a.pool.put(b)
}

// store buffers the bytes of p (starting at seq, ahead of c.nextSeq) that
// fill gaps between the chunks already held. It reports false, holding
// nothing, when that would exceed a cap.
func (a *Assembler) store(c *conn, seq uint32, p []byte) bool {
	o := c.buf
	var chunks []chunk
	held := 0
	if o != nil {
		chunks = o.chunks
		held = o.bytes
	}
	base := c.nextSeq
	rel := func(x uint32) int64 { return int64(x - base) }
	s := rel(seq)
	e := s + int64(len(p))

	// The chunks are disjoint, so their ends are sorted too: find the first
	// one that ends after s.
	lo, hi := 0, len(chunks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rel(chunks[m].seq)+int64(len(chunks[m].data)) > s {
			hi = m
		} else {
			lo = m + 1
		}
	}
	first := lo

	fresh, pieces := int64(0), 0
	cur := s
	for k := first; k < len(chunks); k++ {
		cs := rel(chunks[k].seq)
		if cs >= e {
			break
		}
		if cs > cur {
			fresh += cs - cur
			pieces++
		}
		cur = max(cur, cs+int64(len(chunks[k].data)))
	}
	if cur < e {
		fresh += e - cur
		pieces++
	}
	st := a.stats
	if fresh == 0 {
		st.Duplicate.Add(1)
		return true
	}
	n := int(fresh)
	if held+n > a.cfg.MaxStreamBuffer || a.buffered+n > a.cfg.MaxBuffer ||
		len(chunks)+pieces > a.flowChunks || a.chunks+pieces > a.maxChunks {
		return false
	}
	st.OutOfOrder.Add(1)
	if d := int64(len(p)) - fresh; d > 0 {
		st.OverlapBytes.Add(uint64(d))
	}

	o = a.waitFor(c)
	cur = s
	k := first
	for cur < e {
		end := e
		if k < len(o.chunks) {
			cs := rel(o.chunks[k].seq)
			if cs <= cur {
				cur = max(cur, cs+int64(len(o.chunks[k].data)))
				k++
				continue
			}
			end = min(end, cs)
		}
		// The hole before the new piece was known as soon as anything
		// beyond it arrived: the chunk after it, or a pending FIN.
		at := a.clock
		if k < len(o.chunks) {
			at = min(at, o.chunks[k].at)
		} else if c.finAhead() {
			at = min(at, o.finAt)
		}
		b := a.pool.get(int(end - cur))
		copy(b, p[cur-s:end-s])
		o.chunks = slices.Insert(o.chunks, k, chunk{seq: base + uint32(cur), at: at, data: b})
		k++
		cur = end
	}
	o.bytes += n
	a.buffered += n
	a.chunks += pieces
	st.BufferedBytes.Add(int64(n))
	return true
}

// waitFor marks c as waiting for a hole and returns its ooo record.
func (a *Assembler) waitFor(c *conn) *ooo {
	if c.buf != nil {
		return c.buf
	}
	var o *ooo
	if n := len(a.spare); n > 0 {
		o = a.spare[n-1]
		a.spare[n-1] = nil
		a.spare = a.spare[:n-1]
	} else {
		o = new(ooo)
	}
	o.idx = len(a.waiting)
	a.waiting = append(a.waiting, c)
	c.buf = o
	return o
}

// settle stops c waiting once it has no chunk and no FIN ahead.
func (a *Assembler) settle(c *conn) {
	o := c.buf
	if o == nil || len(o.chunks) > 0 || c.finAhead() {
		return
	}
	last := len(a.waiting) - 1
	moved := a.waiting[last]
	a.waiting[o.idx] = moved
	moved.buf.idx = o.idx
	a.waiting[last] = nil
	a.waiting = a.waiting[:last]
	c.buf = nil
	o.bytes, o.finAt, o.idx = 0, 0, 0
	if cap(o.chunks) <= maxSpareCap && len(a.spare) < maxSpare {
		o.chunks = o.chunks[:0]
		a.spare = append(a.spare, o)
	}
}
