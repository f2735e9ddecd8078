package reassembly

import (
	"errors"
	"fmt"
)

// invariants checks the Assembler's internal bookkeeping. The fuzz test
// calls it after every step.
func invariants(a *Assembler, ownStats bool) error {
	n := 0
	var prev *conn
	for c := a.head; c != nil; c = c.next {
		n++
		if n > len(a.flows) {
			return errors.New("activity list longer than the flow map")
		}
		if c.prev != prev {
			return fmt.Errorf("%v: broken prev link", c.flow)
		}
		if prev != nil && prev.lastSeen > c.lastSeen {
			return fmt.Errorf("%v: activity list out of order", c.flow)
		}
		if a.flows[c.flow] != c {
			return fmt.Errorf("%v: listed but not in the map", c.flow)
		}
		if c.stream == nil {
			return fmt.Errorf("%v: tracked after its end", c.flow)
		}
		prev = c
	}
	if prev != a.tail || n != len(a.flows) {
		return fmt.Errorf("activity list has %d flows, map %d", n, len(a.flows))
	}

	bytes, chunks, waiting := 0, 0, 0
	for _, c := range a.flows {
		if c.buf != nil {
			waiting++
		}
	}
	if waiting != len(a.waiting) {
		return fmt.Errorf("%d flows have an ooo record, %d listed as waiting", waiting, len(a.waiting))
	}
	for i, c := range a.waiting {
		o := c.buf
		if o == nil || o.idx != i {
			return fmt.Errorf("%v: waiting list entry %d is stale", c.flow, i)
		}
		if len(o.chunks) == 0 && !c.finAhead() {
			return fmt.Errorf("%v: waits for nothing", c.flow)
		}
		b := 0
		end := c.nextSeq
		at := int64(-1 << 63)
		for k, ch := range o.chunks {
			if len(ch.data) == 0 {
				return fmt.Errorf("%v: empty chunk %d", c.flow, k)
			}
			if d := int32(ch.seq - end); d <= 0 && (k == 0 || d < 0) {
				return fmt.Errorf("%v: chunk %d at %d overlaps or is not ahead (next %d)", c.flow, k, ch.seq, c.nextSeq)
			}
			if ch.at < at {
				return fmt.Errorf("%v: chunk %d known since before the one ahead of it", c.flow, k)
			}
			at = ch.at
			end = ch.seq + uint32(len(ch.data))
			b += len(ch.data)
		}
		if b != o.bytes {
			return fmt.Errorf("%v: ooo counts %d bytes, holds %d", c.flow, o.bytes, b)
		}
		if b > a.cfg.MaxStreamBuffer || len(o.chunks) > a.flowChunks {
			return fmt.Errorf("%v: holds %d bytes in %d chunks, over its cap", c.flow, b, len(o.chunks))
		}
		bytes += b
		chunks += len(o.chunks)
	}
	if bytes != a.buffered || chunks != a.chunks {
		return fmt.Errorf("assembler counts %d bytes in %d chunks, flows hold %d in %d", a.buffered, a.chunks, bytes, chunks)
	}
	if a.buffered > a.cfg.MaxBuffer || a.chunks > a.maxChunks {
		return fmt.Errorf("assembler holds %d bytes in %d chunks, over its cap", a.buffered, a.chunks)
	}
	if ownStats {
		if got := a.stats.BufferedBytes.Load(); got != int64(a.buffered) {
			return fmt.Errorf("Stats.BufferedBytes %d, held %d", got, a.buffered)
		}
		if got := a.stats.ActiveStreams.Load(); got != int64(len(a.flows)) {
			return fmt.Errorf("Stats.ActiveStreams %d, tracked %d", got, len(a.flows))
		}
	}
	return nil
}
