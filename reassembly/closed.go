package reassembly

import "time"

// A connection that closed may still send segments: a retransmission whose
// acknowledgment was lost arrives after the FIN was delivered. Opened as a
// new mid-stream flow, such a segment could start with a request line and be
// mirrored a second time. So the assembler remembers, for a while, where
// each closed flow ended, and drops data that lies before that point.
//
// The memory is bounded in time (closedTTL, longer than TCP's retransmission
// back-off takes to give up on a few tries) and in count (oldest first).

const (
	closedTTL = 30 * time.Second
	// closedMax bounds the flows remembered per Assembler; about 150 bytes
	// each.
	closedMax = 1 << 16
)

type closedEnd struct {
	start uint32 // sequence number of the first byte of the stream
	end   uint32 // sequence number after the last byte delivered
	at    int64  // assembler clock when the flow closed
}

type closedEntry struct {
	flow Flow
	at   int64
}

// closedFlows remembers recently closed flows in a map, with a FIFO ring of
// the same entries for expiry and eviction in closing order.
type closedFlows struct {
	ends       map[Flow]closedEnd
	ring       []closedEntry
	head, size int
}

func (c *closedFlows) add(flow Flow, start, end uint32, now int64) {
	if c.ends == nil {
		c.ends = make(map[Flow]closedEnd)
	}
	if c.size == len(c.ring) {
		if len(c.ring) < closedMax {
			c.grow()
		} else {
			c.pop()
		}
	}
	c.ring[(c.head+c.size)%len(c.ring)] = closedEntry{flow: flow, at: now}
	c.size++
	c.ends[flow] = closedEnd{start: start, end: end, at: now}
}

func (c *closedFlows) grow() {
	n := max(64, 2*len(c.ring))
	ring := make([]closedEntry, min(n, closedMax))
	for i := range c.size {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
}

// pop forgets the oldest entry; the map entry goes too unless the flow
// closed again since (a newer entry then stands for it).
func (c *closedFlows) pop() {
	e := c.ring[c.head]
	c.ring[c.head] = closedEntry{}
	c.head = (c.head + 1) % len(c.ring)
	c.size--
	if cur, ok := c.ends[e.flow]; ok && cur.at == e.at {
		delete(c.ends, e.flow)
	}
}

// expire forgets the flows that closed more than closedTTL before now.
func (c *closedFlows) expire(now int64) {
	for c.size > 0 && now-c.ring[c.head].at > int64(closedTTL) {
		c.pop()
	}
}

// nextExpiry returns when the oldest entry is due to be forgotten.
func (c *closedFlows) nextExpiry() (int64, bool) {
	if c.size == 0 {
		return 0, false
	}
	return c.ring[c.head].at + int64(closedTTL) + 1, true
}

// lookup returns where flow ended, if it closed recently.
func (c *closedFlows) lookup(flow Flow) (uint32, bool) {
	e, ok := c.ends[flow]
	return e.end, ok
}

// sameStart reports whether a recently closed flow started at seq: a SYN
// with it is that connection's SYN once more (a retransmission, or the
// copy that a capture on two interfaces holds), not a new connection, which
// would start elsewhere.
func (c *closedFlows) sameStart(flow Flow, seq uint32) bool {
	e, ok := c.ends[flow]
	return ok && e.start == seq
}

func (c *closedFlows) forget(flow Flow) { delete(c.ends, flow) }

func (c *closedFlows) reset() { *c = closedFlows{} }

// afterClose trims a data segment of a recently closed flow to the bytes
// past its end. It returns the remaining sequence number and payload; an
// empty payload means the segment was a retransmission of delivered bytes.
func (a *Assembler) afterClose(flow Flow, seq uint32, p []byte) (uint32, []byte) {
	end, ok := a.closed.lookup(flow)
	if !ok {
		return seq, p
	}
	behind := int64(int32(end - seq))
	switch {
	case behind <= 0:
		return seq, p
	case behind >= int64(len(p)):
		a.stats.Duplicate.Add(1)
		return seq, nil
	default:
		a.stats.OverlapBytes.Add(uint64(behind))
		return end, p[behind:]
	}
}
