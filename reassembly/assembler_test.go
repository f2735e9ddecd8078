package reassembly

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type tableCase struct {
	name  string
	cfg   Config
	steps []step
	want  []string
	check func(t *testing.T, st *Stats, a *Assembler)
}

const ms = time.Millisecond

// orderCases are about sequence order: reordering, duplicates, overlaps,
// wraparound, and where a stream starts.
var orderCases = []tableCase{
	{
		name: "in order",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, PSH, "hello", 0),
			seg(fA, 106, PSH, " world", 0),
			seg(fA, 112, FIN, "", 0),
		},
		want: []string{"A open", "A data:hello", "A data: world", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Delivered", st.Delivered.Load(), 11)
			want(t, "StreamsClosed", st.StreamsClosed.Load(), 1)
			want(t, "StreamsMid", st.StreamsMid.Load(), 0)
			want(t, "Len", a.Len(), 0)
		},
	},
	{
		name: "duplicate segment",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "abc", 0),
			seg(fA, 101, 0, "abc", 0),
			seg(fA, 104, 0, "def", 0),
		},
		want: []string{"A open", "A data:abc", "A data:def"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Duplicate", st.Duplicate.Load(), 1)
		},
	},
	{
		name: "duplicate of a buffered segment",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 104, 0, "def", 0),
			seg(fA, 104, 0, "XYZ", 0),
			seg(fA, 101, 0, "abc", 0),
		},
		want: []string{"A open", "A data:abc", "A data:def"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Duplicate", st.Duplicate.Load(), 1)
			want(t, "OutOfOrder", st.OutOfOrder.Load(), 1)
			want(t, "BufferedBytes", st.BufferedBytes.Load(), 0)
		},
	},
	{
		name: "retransmit after delivery",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "hello", 0),
			seg(fA, 106, 0, "world", 0),
			seg(fA, 101, 0, "HELLO", 0),
		},
		want: []string{"A open", "A data:hello", "A data:world"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Duplicate", st.Duplicate.Load(), 1)
		},
	},
	{
		name: "partial overlap with delivered bytes",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "abcd", 0),
			seg(fA, 103, 0, "CDef", 0),
		},
		want: []string{"A open", "A data:abcd", "A data:ef"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "OverlapBytes", st.OverlapBytes.Load(), 2)
			want(t, "Duplicate", st.Duplicate.Load(), 0)
		},
	},
	{
		name: "in-order segment over buffered bytes: first arrival wins",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 105, 0, "XYZ", 0),
			seg(fA, 101, 0, "abcdefgh", 0),
		},
		want: []string{"A open", "A data:abcd", "A data:XYZ", "A data:h"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "OverlapBytes", st.OverlapBytes.Load(), 3)
			want(t, "Delivered", st.Delivered.Load(), 8)
		},
	},
	{
		name: "overlaps among buffered segments: first arrival wins",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 105, 0, "QRS", 0),  // 105-107
			seg(fA, 104, 0, "xyzw", 0), // 104-107: only 104 is new
			seg(fA, 106, 0, "1234", 0), // 106-109: 108-109 are new
			seg(fA, 101, 0, "abc", 0),
		},
		want: []string{"A open", "A data:abc", "A data:x", "A data:QRS", "A data:34"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "OverlapBytes", st.OverlapBytes.Load(), 5)
			want(t, "OutOfOrder", st.OutOfOrder.Load(), 3)
		},
	},
	{
		name: "segment spanning several buffered islands fills only the holes",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 103, 0, "C", 0),
			seg(fA, 105, 0, "E", 0),
			seg(fA, 107, 0, "G", 0),
			seg(fA, 102, 0, "bcdefgh", 0),
			seg(fA, 101, 0, "a", 0),
		},
		want: []string{"A open", "A data:a", "A data:b", "A data:C", "A data:d", "A data:E", "A data:f", "A data:G", "A data:h"},
	},
	{
		name: "sequence wraparound in order",
		steps: []step{
			seg(fA, 0xFFFFFFF0, SYN, "", 0),
			seg(fA, 0xFFFFFFF1, 0, "0123456789", 0),
			seg(fA, 0xFFFFFFFB, 0, "abcdefghij", 0), // wraps after f
			seg(fA, 0x00000005, 0, "KLM", 0),
			seg(fA, 0x00000008, FIN, "", 0),
		},
		want: []string{"A open", "A data:0123456789", "A data:abcdefghij", "A data:KLM", "A end"},
	},
	{
		name: "sequence wraparound out of order",
		steps: []step{
			seg(fA, 0xFFFFFFF0, SYN, "", 0),
			seg(fA, 0x00000005, FIN, "KLM", 0),
			seg(fA, 0xFFFFFFFB, 0, "abcdefghij", 0),
			seg(fA, 0xFFFFFFF9, 0, "89ab", 0), // overlaps both sides
			seg(fA, 0xFFFFFFF1, 0, "0123456789", 0),
		},
		want: []string{"A open", "A data:01234567", "A data:89", "A data:abcdefghij", "A data:KLM", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "OverlapBytes", st.OverlapBytes.Load(), 4)
		},
	},
	{
		name: "SYN with payload",
		steps: []step{
			seg(fA, 1000, SYN, "GET", 0),
			seg(fA, 1004, 0, " /", 0),
		},
		want: []string{"A open", "A data:GET", "A data: /"},
	},
	{
		name: "retransmitted SYN is not a new connection",
		steps: []step{
			seg(fA, 1000, SYN, "GET", 0),
			seg(fA, 1000, SYN, "GET", 0),
			seg(fA, 1004, 0, " /", 0),
		},
		want: []string{"A open", "A data:GET", "A data: /"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsOpened", st.StreamsOpened.Load(), 1)
		},
	},
	{
		name: "late SYN of a flow joined mid-stream",
		steps: []step{
			seg(fA, 1001, 0, "abc", 0),
			seg(fA, 1000, SYN, "", 0),
			seg(fA, 1004, 0, "def", 0),
		},
		want: []string{"A open mid", "A data:abc", "A data:def"},
	},
	{
		name: "mid-stream join",
		steps: []step{
			seg(fA, 5000, PSH, "xyz", 0),
			seg(fA, 5003, PSH, "w", 0),
		},
		want: []string{"A open mid", "A data:xyz", "A data:w"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsMid", st.StreamsMid.Load(), 1)
		},
	},
}

func want[T comparable](t *testing.T, name string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func TestAssemblerTable(t *testing.T) {
	var cases []tableCase
	cases = append(cases, orderCases...)
	cases = append(cases, holeCases...)
	cases = append(cases, lifecycleCases...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{t: t}
			st := new(Stats)
			cfg := tc.cfg
			cfg.NewStream = r.newStream
			cfg.Stats = st
			a := New(cfg)
			run(a, tc.steps)
			if got, w := logString(r.log), logString(tc.want); got != w {
				t.Errorf("calls:\n%s\nwant:\n%s", got, w)
			}
			if tc.check != nil {
				tc.check(t, st, a)
			}
			a.Close()
			checkDrained(t, st, a)
		})
	}
}

// checkDrained checks what must hold after Close.
func checkDrained(t testing.TB, st *Stats, a *Assembler) {
	t.Helper()
	if n := st.ActiveStreams.Load(); n != 0 {
		t.Errorf("ActiveStreams = %d after Close", n)
	}
	if n := st.BufferedBytes.Load(); n != 0 {
		t.Errorf("BufferedBytes = %d after Close", n)
	}
	if a.Len() != 0 || a.buffered != 0 || a.chunks != 0 || len(a.waiting) != 0 || a.head != nil || a.tail != nil {
		t.Errorf("after Close: Len %d buffered %d chunks %d waiting %d", a.Len(), a.buffered, a.chunks, len(a.waiting))
	}
	ended := st.StreamsClosed.Load() + st.StreamsExpired.Load() + st.StreamsEvicted.Load()
	if ended > st.StreamsOpened.Load() {
		t.Errorf("%d streams ended of %d opened", ended, st.StreamsOpened.Load())
	}
}

// TestOutOfOrderPermutations feeds the same four segments in every order.
func TestOutOfOrderPermutations(t *testing.T) {
	segs := []step{
		seg(fA, 101, 0, "aa", 0),
		seg(fA, 103, 0, "bb", 0),
		seg(fA, 105, 0, "cc", 0),
		seg(fA, 107, FIN, "dd", 0),
	}
	for _, perm := range permutations(len(segs)) {
		t.Run(fmt.Sprint(perm), func(t *testing.T) {
			r := &recorder{t: t}
			st := new(Stats)
			a := New(Config{NewStream: r.newStream, Stats: st})
			steps := []step{seg(fA, 100, SYN, "", 0)}
			for _, i := range perm {
				steps = append(steps, segs[i])
			}
			run(a, steps)
			w := []string{"A open", "A data:aa", "A data:bb", "A data:cc", "A data:dd", "A end"}
			if got, w := logString(r.log), logString(w); got != w {
				t.Errorf("calls:\n%s\nwant:\n%s", got, w)
			}
			checkDrained(t, st, a)
		})
	}
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func TestNewPanicsWithoutNewStream(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New did not panic")
		}
	}()
	New(Config{})
}

func TestDefaults(t *testing.T) {
	a := New(Config{NewStream: func(*Segment, bool) Stream { return nil }})
	c := a.cfg
	if c.MaxStreamBuffer != DefaultMaxStreamBuffer || c.MaxBuffer != DefaultMaxBuffer ||
		c.MaxStreams != DefaultMaxStreams || c.IdleTimeout != DefaultIdleTimeout ||
		c.GapTimeout != DefaultGapTimeout || c.Stats == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// TestStatsShared checks that one Stats can serve several Assemblers.
func TestStatsShared(t *testing.T) {
	st := new(Stats)
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			a := New(Config{NewStream: func(*Segment, bool) Stream { return nopStream{} }, Stats: st})
			var s Segment
			s.Flow = fA
			s.Flow.Src = netip.AddrPortFrom(s.Flow.Src.Addr(), uint16(w))
			s.Payload = []byte("x")
			for i := range 1000 {
				s.Seq = uint32(i)
				a.Add(&s)
			}
			a.Close()
		}()
	}
	for range 4 {
		<-done
	}
	want(t, "Delivered", st.Delivered.Load(), 4000)
	want(t, "StreamsOpened", st.StreamsOpened.Load(), 4)
	want(t, "ActiveStreams", st.ActiveStreams.Load(), 0)
}

type nopStream struct{}

func (nopStream) Data([]byte, time.Time) {}
func (nopStream) Gap()                   {}
func (nopStream) End()                   {}
