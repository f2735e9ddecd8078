package reassembly

import (
	"testing"
	"time"
)

// holeCases are about holes that do not fill: the gap timeout and the
// buffer caps.
var holeCases = []tableCase{
	{
		name: "gap filled before the timeout",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, 0, "c", 500*ms),
			tick(1400 * ms), // 900ms after the hole was seen
			seg(fA, 102, 0, "b", 1450*ms),
		},
		want: []string{"A open", "A data:a", "A data:b", "A data:c"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Gaps", st.Gaps.Load(), 0)
		},
	},
	{
		name: "gap given up by a later segment's time",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, 0, "c", 100*ms),
			seg(fA, 104, 0, "d", 1100*ms),
			seg(fA, 105, 0, "e", 1100*ms),
		},
		want: []string{"A open", "A data:a", "A gap", "A data:c", "A data:d", "A data:e"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Gaps", st.Gaps.Load(), 1)
			want(t, "GapBytes", st.GapBytes.Load(), 1)
		},
	},
	{
		name: "gap given up by Tick",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 104, 0, "d", 0),
			seg(fA, 103, 0, "c", 500*ms), // known since the 104 arrived at 0
			tick(999 * ms),
			tick(1000 * ms),
			seg(fA, 102, 0, "b", 1100*ms), // too late
			seg(fA, 105, 0, "e", 1100*ms),
		},
		want: []string{"A open", "A data:a", "A gap", "A data:c", "A data:d", "A data:e"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Gaps", st.Gaps.Load(), 1)
			want(t, "Duplicate", st.Duplicate.Load(), 1)
		},
	},
	{
		name: "clock moved by another flow, hole expires at Tick",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, 0, "c", 0),
			seg(fC, 500, SYN, "", 2*time.Second),
			tick(0), // an older time does not move the clock back
		},
		want: []string{"A open", "A data:a", "C open", "A gap", "A data:c"},
	},
	{
		name: "two holes given up one after the other",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 103, 0, "c", 0),
			seg(fA, 105, 0, "e", 600*ms),
			tick(1000 * ms), // the hole before e is known since 600ms only
			tick(1599 * ms),
			tick(1600 * ms),
		},
		want: []string{"A open", "A gap", "A data:c", "A gap", "A data:e"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "GapBytes", st.GapBytes.Load(), 3)
		},
	},
	{
		name: "per-flow cap gives up the hole at once",
		cfg:  Config{MaxStreamBuffer: 4},
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, 0, "cc", 0),
			seg(fA, 105, 0, "ee", 0),
			seg(fA, 107, 0, "gg", 0), // a fifth byte does not fit
			seg(fA, 102, 0, "b", 0),  // the retransmission comes too late
		},
		want: []string{"A open", "A data:a", "A gap", "A data:cc", "A data:ee", "A data:gg"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "BufferFullDrops", st.BufferFullDrops.Load(), 1)
			want(t, "Gaps", st.Gaps.Load(), 1)
			want(t, "BufferedBytes", st.BufferedBytes.Load(), 0)
		},
	},
	{
		name: "per-flow cap: segment inside the front hole is delivered directly",
		cfg:  Config{MaxStreamBuffer: 4},
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 111, 0, "kkkk", 0),
			seg(fA, 105, 0, "eeeee", 0), // does not fit, and starts in the hole
			seg(fA, 110, 0, "j", 0),
		},
		want: []string{"A open", "A gap", "A data:eeeee", "A data:j", "A data:kkkk"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "BufferFullDrops", st.BufferFullDrops.Load(), 1)
			want(t, "GapBytes", st.GapBytes.Load(), 4)
		},
	},
	{
		name: "global cap",
		cfg:  Config{MaxBuffer: 4},
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fC, 200, SYN, "", 0),
			seg(fA, 102, 0, "bbb", 0),
			seg(fC, 202, 0, "yy", 0), // A holds 3 of the 4 bytes
			seg(fA, 101, 0, "a", 0),
		},
		want: []string{"A open", "C open", "C gap", "C data:yy", "A data:a", "A data:bbb"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "BufferFullDrops", st.BufferFullDrops.Load(), 1)
			want(t, "BufferedBytes", st.BufferedBytes.Load(), 0)
		},
	},
	{
		name: "chunk count cap",
		cfg:  Config{MaxStreamBuffer: 1024}, // 64 chunks
		steps: func() []step {
			s := []step{seg(fA, 100, SYN, "", 0)}
			for i := range 65 {
				s = append(s, seg(fA, uint32(103+2*i), 0, "x", 0))
			}
			return s
		}(),
		want: []string{"A open", "A gap", "A data:x"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "BufferFullDrops", st.BufferFullDrops.Load(), 1)
			want(t, "OutOfOrder", st.OutOfOrder.Load(), 65)
			want(t, "BufferedBytes", st.BufferedBytes.Load(), 64)
		},
	},
}
