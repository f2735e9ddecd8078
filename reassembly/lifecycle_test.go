package reassembly

import (
	"testing"
	"time"
)

// lifecycleCases are about how flows start and end: FIN, RST, idle expiry,
// eviction, port reuse, pure ACKs and Close.
var lifecycleCases = []tableCase{
	{
		name: "FIN on the last data segment",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "bye", 0),
			seg(fA, 101, FIN, "bye", 0), // a late retransmission: already delivered
		},
		want: []string{"A open", "A data:bye", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Duplicate", st.Duplicate.Load(), 1)
			want(t, "StreamsOpened", st.StreamsOpened.Load(), 1)
		},
	},
	{
		name: "retransmission after close that reaches past the end",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "bye", 0),
			seg(fA, 102, 0, "yeGET", 0), // only "GET" was never delivered
		},
		want: []string{"A open", "A data:bye", "A end", "A open mid", "A data:GET"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "OverlapBytes", st.OverlapBytes.Load(), 2)
		},
	},
	{
		name: "a closed flow is forgotten after a while",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "bye", 0),
			tick(31 * time.Second),
			seg(fA, 101, 0, "bye", 31*time.Second),
		},
		want: []string{"A open", "A data:bye", "A end", "A open mid", "A data:bye"},
	},
	{
		name: "a new SYN after close starts over",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "bye", 0),
			seg(fA, 50, SYN, "", 0),
			seg(fA, 51, 0, "hi", 0),
		},
		want: []string{"A open", "A data:bye", "A end", "A open", "A data:hi"},
	},
	{
		name: "the same connection again, as a capture of two interfaces holds it",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "GET", 0),
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "GET", 0),
		},
		want: []string{"A open", "A data:GET", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Duplicate", st.Duplicate.Load(), 2)
			want(t, "StreamsOpened", st.StreamsOpened.Load(), 1)
		},
	},
	{
		name: "late data after a reset",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "abc", 0),
			seg(fA, 104, RST, "", 0),
			seg(fA, 101, 0, "abc", 0),
		},
		want: []string{"A open", "A data:abc", "A end"},
	},
	{
		name: "FIN without data, then stray FIN/ACK and ACK",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "bye", 0),
			seg(fA, 104, FIN, "", 0),
			seg(fA, 104, FIN, "", 0),
			seg(fA, 105, 0, "", 0),
		},
		want: []string{"A open", "A data:bye", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Len", a.Len(), 0)
			want(t, "StreamsOpened", st.StreamsOpened.Load(), 1)
		},
	},
	{
		name: "FIN before the last data",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, FIN, "", 0),
			seg(fA, 102, 0, "b", 0),
		},
		want: []string{"A open", "A data:a", "A data:b", "A end"},
	},
	{
		name: "FIN with data before the last data",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 103, FIN, "cd", 0),
			seg(fA, 101, 0, "ab", 0),
		},
		want: []string{"A open", "A data:ab", "A data:cd", "A end"},
	},
	{
		name: "FIN ahead of a hole that is never filled",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, FIN, "", 0),
			tick(999 * ms),
			tick(time.Second),
		},
		want: []string{"A open", "A data:a", "A gap", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "GapBytes", st.GapBytes.Load(), 1)
			want(t, "StreamsClosed", st.StreamsClosed.Load(), 1)
		},
	},
	{
		name: "FIN ahead, hole given up, buffered data then end",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 103, 0, "c", 0),
			seg(fA, 105, FIN, "", 0),
			tick(time.Second),
		},
		want: []string{"A open", "A gap", "A data:c", "A gap", "A end"},
	},
	{
		name: "RST with data behind a hole",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "a", 0),
			seg(fA, 103, 0, "c", 0),
			seg(fA, 104, RST, "", 0),
			seg(fA, 104, 0, "", 0), // ACK after the reset: nothing
		},
		want: []string{"A open", "A data:a", "A gap", "A data:c", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsClosed", st.StreamsClosed.Load(), 1)
			want(t, "BufferedBytes", st.BufferedBytes.Load(), 0)
			want(t, "Len", a.Len(), 0)
		},
	},
	{
		name: "RST from the other side ends both directions",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fB, 900, SYN, "", 0),
			seg(fA, 101, 0, "req", 0),
			seg(fB, 901, RST, "", 0),
		},
		want: []string{"A open", "B open", "A data:req", "B end", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsClosed", st.StreamsClosed.Load(), 2)
		},
	},
	{
		name: "RST of an untracked reverse flow ends the tracked one",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "req", 0),
			seg(fB, 901, RST, "", 0),
		},
		want: []string{"A open", "A data:req", "A end"},
	},
	{
		name: "RST of an unknown connection",
		steps: []step{
			seg(fA, 100, RST, "", 0),
		},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Len", a.Len(), 0)
		},
	},
	{
		name: "idle expiry",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fC, 200, SYN, "", 60*time.Second),
			seg(fA, 101, 0, "", 61*time.Second), // an ACK keeps A alive
			tick(120 * time.Second),
			tick(180 * time.Second), // C idle for 120s
			tick(181 * time.Second),
		},
		want: []string{"A open", "C open", "C end", "A end"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsExpired", st.StreamsExpired.Load(), 2)
			want(t, "ActiveStreams", st.ActiveStreams.Load(), 0)
		},
	},
	{
		name: "idle expiry delivers what waits behind a hole",
		cfg:  Config{IdleTimeout: time.Second, GapTimeout: time.Hour},
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 103, 0, "c", 0),
			tick(time.Second),
		},
		want: []string{"A open", "A gap", "A data:c", "A end"},
	},
	{
		name: "MaxStreams evicts the least recently active flow",
		cfg:  Config{MaxStreams: 2},
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fC, 200, SYN, "", 1*ms),
			seg(fA, 101, 0, "a", 2*ms),
			seg(fD, 300, SYN, "", 3*ms), // C is the least recently active
			seg(fA, 102, 0, "b", 4*ms),
			seg(f6, 400, SYN, "", 5*ms), // now D
		},
		want: []string{"A open", "C open", "A data:a", "C end", "D open", "A data:b", "D end", "V6 open"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsEvicted", st.StreamsEvicted.Load(), 2)
			want(t, "Len", a.Len(), 2)
		},
	},
	{
		name: "new SYN on a live flow: port reuse",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, 0, "old", 0),
			seg(fA, 7000, SYN, "", 0),
			seg(fA, 7001, 0, "new", 0),
		},
		want: []string{"A open", "A data:old", "A end", "A open", "A data:new"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "StreamsOpened", st.StreamsOpened.Load(), 2)
			want(t, "ActiveStreams", st.ActiveStreams.Load(), 1)
		},
	},
	{
		name: "new SYN after FIN",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "old", 0),
			seg(fA, 7000, SYN, "", 0),
			seg(fA, 7001, 0, "new", 0),
		},
		want: []string{"A open", "A data:old", "A end", "A open", "A data:new"},
	},
	{
		name: "data after FIN starts a mid-stream flow",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fA, 101, FIN, "old", 0),
			seg(fA, 105, 0, "", 0),
			seg(fA, 105, 0, "more", 0),
		},
		want: []string{"A open", "A data:old", "A end", "A open mid", "A data:more"},
	},
	{
		name: "IPv6 flow, and IPv4-mapped addresses are another flow",
		steps: []step{
			seg(f6, 100, SYN, "", 0),
			seg(f4in6, 500, SYN, "", 0),
			seg(fA, 300, SYN, "", 0),
			seg(f6, 102, 0, "b", 0),
			seg(f4in6, 501, 0, "m", 0),
			seg(fA, 301, 0, "a", 0),
			seg(f6, 101, 0, "a", 0),
			seg(f6, 103, FIN, "", 0),
		},
		want: []string{"V6 open", "M open", "A open", "M data:m", "A data:a", "V6 data:a", "V6 data:b", "V6 end"},
	},
	{
		name: "pure ACKs do not open flows",
		steps: []step{
			seg(fA, 100, 0, "", 0),
			seg(fB, 100, 0, "", 0),
			seg(fA, 100, FIN, "", 0),
		},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "Len", a.Len(), 0)
			want(t, "StreamsOpened", st.StreamsOpened.Load(), 0)
			want(t, "Segments", st.Segments.Load(), 3)
		},
	},
	{
		name: "Close ends every flow and flushes buffered data",
		steps: []step{
			seg(fA, 100, SYN, "", 0),
			seg(fC, 200, SYN, "", 0),
			seg(fA, 103, 0, "c", 0),
			seg(fA, 105, 0, "e", 0),
			seg(fC, 201, 0, "x", 0),
			closeAll(),
			seg(fA, 106, 0, "f", 0), // usable after Close
		},
		want: []string{"A open", "C open", "C data:x", "A gap", "A data:c", "A gap", "A data:e", "A end", "C end", "A open mid", "A data:f"},
		check: func(t *testing.T, st *Stats, a *Assembler) {
			want(t, "ActiveStreams", st.ActiveStreams.Load(), 1)
			want(t, "BufferedBytes", st.BufferedBytes.Load(), 0)
			want(t, "Gaps", st.Gaps.Load(), 2)
		},
	},
}

// NextDeadline names the next time Tick has work, and nothing when nothing
// is held: an idle agent can sleep until then, or for good.
func TestNextDeadline(t *testing.T) {
	r := &recorder{t: t}
	a := New(Config{NewStream: r.newStream, GapTimeout: time.Second, IdleTimeout: time.Minute})
	if d := a.NextDeadline(); !d.IsZero() {
		t.Fatalf("empty assembler: deadline %v", d)
	}
	t0 := time.Unix(1000, 0)
	f := fA
	a.Add(&Segment{Flow: f, Seq: 100, Flags: SYN, Time: t0})
	a.Add(&Segment{Flow: f, Seq: 101, Payload: []byte("abc"), Time: t0})
	if d := a.NextDeadline(); !d.Equal(t0.Add(time.Minute)) {
		t.Errorf("idle deadline %v, want %v", d, t0.Add(time.Minute))
	}
	// A hole: the gap timeout comes first.
	a.Add(&Segment{Flow: f, Seq: 110, Payload: []byte("xyz"), Time: t0.Add(time.Second)})
	if d := a.NextDeadline(); !d.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("gap deadline %v, want %v", d, t0.Add(2*time.Second))
	}
	// Ticking at the deadline gives the hole up; then idle expiry is next.
	a.Tick(t0.Add(2 * time.Second))
	if d := a.NextDeadline(); !d.Equal(t0.Add(time.Second + time.Minute)) {
		t.Errorf("after the gap: deadline %v, want %v", d, t0.Add(time.Second+time.Minute))
	}
	// Closed: the memory of the closed flow expires after closedTTL.
	a.Add(&Segment{Flow: f, Seq: 113, Flags: FIN, Time: t0.Add(3 * time.Second)})
	if a.Len() != 0 {
		t.Fatalf("flow not closed")
	}
	want := t0.Add(3*time.Second + closedTTL + 1)
	if d := a.NextDeadline(); !d.Equal(want) {
		t.Errorf("closed-flow deadline %v, want %v", d, want)
	}
	a.Tick(want)
	if d := a.NextDeadline(); !d.IsZero() {
		t.Errorf("after everything expired: deadline %v", d)
	}
}
