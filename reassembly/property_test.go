package reassembly

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// collector keeps what one stream received.
type collector struct {
	t     testing.TB
	data  bytes.Buffer
	gaps  int
	ends  int
	calls int
}

func (c *collector) Data(b []byte, _ time.Time) {
	if c.ends > 0 {
		c.t.Error("Data after End")
	}
	c.data.Write(b)
	c.calls++
}

func (c *collector) Gap() {
	if c.ends > 0 {
		c.t.Error("Gap after End")
	}
	c.gaps++
}

func (c *collector) End() { c.ends++ }

// cutStream cuts src, sent from sequence number isn, into segments that
// overlap their neighbours at random, adds retransmissions with other
// boundaries, and shuffles them within a window. The last byte carries the
// FIN.
func cutStream(rng *rand.Rand, f Flow, isn uint32, src []byte) []Segment {
	var segs []Segment
	add := func(from, to int) {
		s := Segment{Flow: f, Seq: isn + 1 + uint32(from), Flags: ACK, Payload: src[from:to]}
		if to == len(src) {
			s.Flags |= FIN
		}
		segs = append(segs, s)
	}
	for pos := 0; pos < len(src); {
		from := max(0, pos-rng.IntN(64)*rng.IntN(2))
		to := min(len(src), pos+1+rng.IntN(2000))
		add(from, to)
		if rng.IntN(10) == 0 { // retransmission, same bytes
			segs = append(segs, segs[len(segs)-1])
		}
		if rng.IntN(10) == 0 { // retransmission with other boundaries
			a := rng.IntN(to)
			add(a, min(to, a+1+rng.IntN(3000)))
		}
		pos = to
	}
	const window = 12
	for i := range segs {
		j := i + rng.IntN(min(window, len(segs)-i))
		segs[i], segs[j] = segs[j], segs[i]
	}
	return segs
}

func TestRandomSegmentation(t *testing.T) {
	flows := []Flow{fA, fB, f6}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		st := new(Stats)
		cols := map[Flow]*collector{}
		srcs := map[Flow][]byte{}
		a := New(Config{Stats: st, NewStream: func(seg *Segment, mid bool) Stream {
			f := seg.Flow
			first := cols[f]
			if first == nil {
				if mid {
					t.Errorf("seed %d: %v joined mid-stream", seed, f)
				}
				c := &collector{t: t}
				cols[f] = c
				return c
			}
			// A retransmission that arrives after the FIN was delivered
			// opens a flow of its own: its bytes must still be the sender's.
			if first.ends == 0 || !mid {
				t.Errorf("seed %d: %v opened again before it ended", seed, f)
			}
			return &tailCollector{t: t, src: srcs[f]}
		}})
		var queues [][]Segment
		for i, f := range flows {
			src := make([]byte, 1+rng.IntN(60000))
			for j := range src {
				src[j] = byte(rng.Uint32())
			}
			srcs[f] = src
			isn := rng.Uint32()
			if i == 0 || seed%3 == 0 {
				isn = 0xFFFFFFFF - uint32(rng.IntN(len(src)+2)) // wraps inside the stream
			}
			syn := Segment{Flow: f, Seq: isn, Flags: SYN}
			queues = append(queues, append([]Segment{syn}, cutStream(rng, f, isn, src)...))
		}
		now := t0
		for len(queues) > 0 {
			i := rng.IntN(len(queues))
			s := queues[i][0]
			queues[i] = queues[i][1:]
			if len(queues[i]) == 0 {
				queues = append(queues[:i], queues[i+1:]...)
			}
			now = now.Add(time.Microsecond)
			s.Time = now
			p := append([]byte(nil), s.Payload...)
			s.Payload = p
			a.Add(&s)
			clear(p)
		}
		for _, f := range flows {
			c := cols[f]
			if c == nil {
				t.Fatalf("seed %d: %v never opened", seed, f)
			}
			if !bytes.Equal(c.data.Bytes(), srcs[f]) {
				t.Errorf("seed %d: %v: delivered %d bytes, want %d, equal prefix %d", seed, f,
					c.data.Len(), len(srcs[f]), commonPrefix(c.data.Bytes(), srcs[f]))
			}
			if c.gaps != 0 || c.ends != 1 {
				t.Errorf("seed %d: %v: %d gaps, %d ends", seed, f, c.gaps, c.ends)
			}
		}
		if seed == 0 {
			t.Logf("seed 0: %d segments, %d out of order, %d duplicate, %d overlap bytes, %d streams opened",
				st.Segments.Load(), st.OutOfOrder.Load(), st.Duplicate.Load(), st.OverlapBytes.Load(), st.StreamsOpened.Load())
		}
		a.Close()
		checkDrained(t, st, a)
		if t.Failed() {
			return
		}
	}
}

// tailCollector checks that a flow opened by a late retransmission only
// delivers bytes that the sender sent.
type tailCollector struct {
	t   testing.TB
	src []byte
}

func (c *tailCollector) Data(b []byte, _ time.Time) {
	if !bytes.Contains(c.src, b) {
		c.t.Errorf("late flow delivered %d bytes that were never sent", len(b))
	}
}
func (c *tailCollector) Gap() {}
func (c *tailCollector) End() {}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
