package reassembly

import (
	"encoding/binary"
	"testing"
	"time"
)

// The fuzz input is one config byte followed by 5-byte steps:
//
//	b0    bits 0-1 flow; bits 2-5 control bits: 0-10 none, 11-12 FIN,
//	      13 SYN, 14 SYN|FIN, 15 RST (so that most segments carry data
//	      and connections live long enough to get out of order);
//	      bits 6-7 == 3: a Tick instead of a segment
//	b1-2  sequence number, int16 little endian, relative to the flow's base
//	b3    payload length
//	b4    time step, in units of 25ms
//
// Every payload byte is a function of its flow and sequence number, so a
// delivered byte can be checked against what was sent at its place.
var fuzzFlows = [...]Flow{fA, fB, f6, fC}

// fuzzBase puts every flow's sequence numbers a few KiB before the 32-bit
// wrap, so that int16 offsets straddle it.
func fuzzBase(i int) uint32 { return 0xFFFFF000 + uint32(i)*0x300 }

func srcByte(flow int, seq uint32) byte {
	x := seq*0x9E3779B1 + uint32(flow)*0x85EBCA77
	x ^= x >> 15
	x *= 0x2C1B3C6D
	x ^= x >> 12
	return byte(x)
}

// fuzzCtl maps the 4-bit control field of a step to TCP flags.
var fuzzCtl = [16]Flags{11: FIN, 12: FIN, 13: SYN, 14: SYN | FIN, 15: RST}

func fuzzStep(flow int, fl Flags, off int16, n, dt uint8) []byte {
	ctl := 0
	for i, f := range fuzzCtl {
		if f == fl {
			ctl = i
			break
		}
	}
	b0 := byte(flow) | byte(ctl)<<2
	return []byte{b0, byte(off), byte(uint16(off) >> 8), n, dt}
}

func fuzzTick(dt uint8) []byte { return []byte{3 << 6, 0, 0, 0, dt} }

func fuzzInput(cfg byte, steps ...[]byte) []byte {
	b := []byte{cfg}
	for _, s := range steps {
		b = append(b, s...)
	}
	return b
}

// fuzzStream checks every call it receives.
type fuzzStream struct {
	h         *fuzzHarness
	flow      int
	delivered map[uint32]bool
	ended     bool
	afterGap  bool
}

type fuzzHarness struct {
	t       *testing.T
	a       *Assembler
	fed     [len(fuzzFlows)]map[uint32]bool
	given   [len(fuzzFlows)]int
	got     [len(fuzzFlows)]int
	streams []*fuzzStream
	total   int
}

func (h *fuzzHarness) newStream(seg *Segment, _ bool) Stream {
	f := seg.Flow
	for i, ff := range fuzzFlows {
		if ff == f {
			s := &fuzzStream{h: h, flow: i, delivered: map[uint32]bool{}}
			h.streams = append(h.streams, s)
			return s
		}
	}
	h.t.Fatalf("stream for unknown flow %v", f)
	return nil
}

func (s *fuzzStream) Data(b []byte, _ time.Time) {
	t := s.h.t
	if s.ended {
		t.Fatalf("flow %d: Data after End", s.flow)
	}
	if len(b) == 0 {
		t.Fatalf("flow %d: empty Data", s.flow)
	}
	s.afterGap = false
	c := s.h.a.flows[fuzzFlows[s.flow]]
	if c == nil || c.stream != Stream(s) {
		t.Fatalf("flow %d: Data to a stream that is not the flow's", s.flow)
	}
	// The assembler advances nextSeq after Data returns: it is the
	// sequence number of b[0] here.
	seq := c.nextSeq
	for i, x := range b {
		q := seq + uint32(i)
		if !s.h.fed[s.flow][q] {
			t.Fatalf("flow %d: delivered seq %#x, which was never sent", s.flow, q)
		}
		if x != srcByte(s.flow, q) {
			t.Fatalf("flow %d: byte at seq %#x is %#x, sent %#x", s.flow, q, x, srcByte(s.flow, q))
		}
		if s.delivered[q] {
			t.Fatalf("flow %d: seq %#x delivered twice", s.flow, q)
		}
		s.delivered[q] = true
	}
	s.h.got[s.flow] += len(b)
	s.h.total += len(b)
	if s.h.got[s.flow] > s.h.given[s.flow] {
		t.Fatalf("flow %d: delivered %d bytes of %d given", s.flow, s.h.got[s.flow], s.h.given[s.flow])
	}
}

func (s *fuzzStream) Gap() {
	if s.ended {
		s.h.t.Fatalf("flow %d: Gap after End", s.flow)
	}
	if s.afterGap {
		s.h.t.Fatalf("flow %d: two Gaps in a row", s.flow)
	}
	s.afterGap = true
}

func (s *fuzzStream) End() {
	if s.ended {
		s.h.t.Fatalf("flow %d: End twice", s.flow)
	}
	s.ended = true
}

var (
	fuzzStreamBufs = [...]int{16, 64, 300, 1 << 20}
	fuzzBufs       = [...]int{32, 256, 1 << 20, 1 << 26}
	fuzzMaxStreams = [...]int{1, 2, 3, 1 << 10}
)

func FuzzReassembly(f *testing.F) {
	const syn, fin = SYN, FIN
	f.Add(fuzzInput(0xFF,
		fuzzStep(0, syn, -1, 0, 0), fuzzStep(0, 0, 0, 100, 1), fuzzStep(0, fin, 100, 50, 1)))
	f.Add(fuzzInput(0xFF,
		fuzzStep(0, syn, -1, 0, 0), fuzzStep(0, 0, 200, 100, 1), fuzzStep(0, 0, 100, 100, 1),
		fuzzStep(0, 0, 0, 100, 1), fuzzStep(0, fin, 300, 0, 1)))
	f.Add(fuzzInput(0x00,
		fuzzStep(0, syn, -1, 0, 0), fuzzStep(0, 0, 50, 40, 0), fuzzStep(0, 0, 100, 40, 0),
		fuzzStep(1, 0, 0, 10, 0), fuzzStep(1, 0, 20, 10, 0), fuzzStep(2, 0, 0, 10, 0),
		fuzzStep(0, 0, 0, 200, 0)))
	f.Add(fuzzInput(0xFF,
		fuzzStep(2, syn, 4000, 10, 0), fuzzStep(2, 0, 4200, 100, 0), fuzzStep(2, 0, 4011, 255, 0),
		fuzzTick(60), fuzzStep(2, 0, 4000, 255, 0)))
	f.Add(fuzzInput(0x7F,
		fuzzStep(0, syn, -1, 0, 0), fuzzStep(1, syn, 500, 0, 0), fuzzStep(0, 0, 10, 10, 0),
		fuzzStep(1, RST, 501, 0, 0), fuzzStep(0, 0, 20, 10, 0), fuzzStep(3, 0, 0, 5, 200),
		fuzzTick(255), fuzzTick(255)))
	f.Add(fuzzInput(0xBB,
		fuzzStep(3, syn, -1, 0, 0), fuzzStep(3, fin, 30, 0, 0), fuzzStep(3, 0, 10, 10, 0),
		fuzzStep(3, syn, 9000, 0, 0), fuzzStep(3, 0, 9001, 30, 0), fuzzStep(3, 0, 8990, 30, 0)))

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		c0 := in[0]
		in = in[1:]
		h := &fuzzHarness{t: t}
		for i := range h.fed {
			h.fed[i] = map[uint32]bool{}
		}
		st := new(Stats)
		idle := 120 * time.Second
		if c0&0x40 == 0 {
			idle = 2 * time.Second
		}
		h.a = New(Config{
			NewStream:       h.newStream,
			Stats:           st,
			MaxStreamBuffer: fuzzStreamBufs[c0&3],
			MaxBuffer:       fuzzBufs[(c0>>2)&3],
			MaxStreams:      fuzzMaxStreams[(c0>>4)&3],
			IdleTimeout:     idle,
			GapTimeout:      time.Second,
		})
		now := t0
		buf := make([]byte, 256)
		for ; len(in) >= 5; in = in[5:] {
			b0 := in[0]
			now = now.Add(time.Duration(in[4]) * 25 * time.Millisecond)
			if b0>>6 == 3 {
				h.a.Tick(now)
			} else {
				fi := int(b0 & 3)
				seg := Segment{
					Flow: fuzzFlows[fi],
					Seq:  fuzzBase(fi) + uint32(int32(int16(binary.LittleEndian.Uint16(in[1:3])))),
					Time: now,
				}
				seg.Flags = fuzzCtl[(b0>>2)&15] | ACK
				first := seg.Seq
				if seg.Flags&SYN != 0 {
					first++
				}
				p := buf[:in[3]]
				for i := range p {
					q := first + uint32(i)
					p[i] = srcByte(fi, q)
					if seg.Flags&RST == 0 {
						h.fed[fi][q] = true
					}
				}
				if seg.Flags&RST == 0 {
					h.given[fi] += len(p)
				}
				seg.Payload = p
				h.a.Add(&seg)
				clear(p) // nothing may read the payload after Add
			}
			if err := invariants(h.a, true); err != nil {
				t.Fatal(err)
			}
		}
		h.a.Close()
		if err := invariants(h.a, true); err != nil {
			t.Fatal(err)
		}
		if n := st.ActiveStreams.Load(); n != 0 {
			t.Fatalf("ActiveStreams = %d after Close", n)
		}
		if n := st.BufferedBytes.Load(); n != 0 {
			t.Fatalf("BufferedBytes = %d after Close", n)
		}
		if h.a.Len() != 0 {
			t.Fatalf("Len = %d after Close", h.a.Len())
		}
		if got := st.Delivered.Load(); got != uint64(h.total) {
			t.Fatalf("Stats.Delivered = %d, streams got %d", got, h.total)
		}
		if got := st.StreamsOpened.Load(); got != uint64(len(h.streams)) {
			t.Fatalf("Stats.StreamsOpened = %d, %d streams made", got, len(h.streams))
		}
		for _, s := range h.streams {
			if !s.ended {
				t.Fatalf("flow %d: a stream was never ended", s.flow)
			}
		}
	})
}
