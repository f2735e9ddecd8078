package reassembly

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

const mss = 1448

// benchFlows returns n distinct client flows to one server.
func benchFlows(n int) []Flow {
	flows := make([]Flow, n)
	dst := netip.MustParseAddrPort("10.1.0.1:80")
	for i := range flows {
		a := [4]byte{10, 2, byte(i >> 16), byte(i >> 8)}
		flows[i] = Flow{Src: netip.AddrPortFrom(netip.AddrFrom4(a), uint16(1024+i&0xFF)), Dst: dst}
	}
	return flows
}

func nopNewStream(*Segment, bool) Stream { return nopStream{} }

// openFlows sends a SYN for every flow and returns the segments to reuse,
// each at its flow's first data byte.
func openFlows(a *Assembler, flows []Flow, payload []byte) []Segment {
	segs := make([]Segment, len(flows))
	fillFlows(a, flows, payload, segs)
	return segs
}

func fillFlows(a *Assembler, flows []Flow, payload []byte, segs []Segment) {
	for i, f := range flows {
		isn := uint32(i) * 0x9E3779B1
		a.Add(&Segment{Flow: f, Seq: isn, Flags: SYN, Time: t0})
		segs[i] = Segment{Flow: f, Seq: isn + 1, Flags: ACK | PSH, Payload: payload, Time: t0}
	}
}

// BenchmarkInOrder measures the common case: every segment is the next one
// of its flow, and is handed to the stream without a copy.
func BenchmarkInOrder(b *testing.B) {
	st := new(Stats)
	a := New(Config{NewStream: nopNewStream, Stats: st})
	segs := openFlows(a, benchFlows(1024), make([]byte, mss))
	b.SetBytes(mss)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := &segs[i%len(segs)]
		s.Time = t0.Add(time.Duration(i))
		a.Add(s)
		s.Seq += mss
	}
	b.StopTimer()
	if st.OutOfOrder.Load() != 0 || st.Delivered.Load() != uint64(b.N)*mss {
		b.Fatal("segments were not delivered in order")
	}
}

// BenchmarkOutOfOrder swaps every second pair of segments: one segment in
// two waits in the buffer for its predecessor.
func BenchmarkOutOfOrder(b *testing.B) {
	st := new(Stats)
	a := New(Config{NewStream: nopNewStream, Stats: st})
	flows := benchFlows(1024)
	segs := openFlows(a, flows, make([]byte, mss))
	base := make([]uint32, len(segs))
	count := make([]uint32, len(segs))
	for i := range segs {
		base[i] = segs[i].Seq
	}
	b.SetBytes(mss)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(segs)
		s := &segs[k]
		s.Seq = base[k] + (count[k]^1)*mss // 1, 0, 3, 2, ...
		count[k]++
		s.Time = t0.Add(time.Duration(i))
		a.Add(s)
	}
	b.StopTimer()
	if st.Gaps.Load() != 0 || st.OutOfOrder.Load() == 0 {
		b.Fatal("unexpected gaps, or nothing out of order")
	}
}

// BenchmarkManyFlows spreads in-order segments over 100,000 flows, so that
// the flow table and the activity list no longer fit in the caches, and
// reports the memory held per flow.
func BenchmarkManyFlows(b *testing.B) {
	const n = 100_000
	flows := benchFlows(n)
	segs := make([]Segment, n)
	payload := make([]byte, mss)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	a := New(Config{NewStream: nopNewStream})
	fillFlows(a, flows, payload, segs)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perFlow := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	b.SetBytes(mss)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s := &segs[i%n]
		s.Time = t0.Add(time.Duration(i))
		a.Add(s)
		s.Seq += mss
	}
	b.StopTimer()
	b.ReportMetric(perFlow, "B/flow")
	runtime.KeepAlive(flows)
	if a.Len() != n {
		b.Fatalf("%d flows tracked, want %d", a.Len(), n)
	}
}

// TestMemoryPerFlow keeps the per-flow cost of idle flows honest: the
// agent must hold hundreds of thousands of them.
func TestMemoryPerFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 flows")
	}
	const n = 100_000
	flows := benchFlows(n)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	a := New(Config{NewStream: nopNewStream})
	var s Segment
	s.Payload = []byte("GET / HTTP/1.1\r\n")
	for i, f := range flows {
		s.Flow, s.Seq, s.Flags = f, uint32(i), SYN
		s.Payload = s.Payload[:0]
		a.Add(&s)
		s.Seq++
		s.Flags = ACK
		s.Payload = s.Payload[:16]
		a.Add(&s)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if a.Len() != n {
		t.Fatalf("%d flows tracked, want %d", a.Len(), n)
	}
	perFlow := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	t.Logf("%d idle flows: %.0f bytes per flow (conn struct %d bytes)", n, perFlow, unsafe.Sizeof(conn{}))
	if perFlow >= 300 {
		t.Errorf("%.0f bytes per idle flow, want < 300", perFlow)
	}
	// Without these, the GC could free the test's own data during the
	// measurement and flatter the result.
	runtime.KeepAlive(a)
	runtime.KeepAlive(flows)
}

// TestInOrderDoesNotAllocate guards the steady state that
// BenchmarkInOrder measures: benchmarks do not fail when it regresses.
func TestInOrderDoesNotAllocate(t *testing.T) {
	a := New(Config{NewStream: nopNewStream})
	segs := openFlows(a, benchFlows(16), make([]byte, mss))
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		s := &segs[i%len(segs)]
		s.Time = t0.Add(time.Duration(i))
		a.Add(s)
		s.Seq += mss
		i++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per in-order segment, want 0", allocs)
	}
}
