package bpf

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/shadowtee/shadowtee/reassembly"
)

// runOne runs the ingress program once on a frame, as a packet would.
func runOne(t *testing.T, prog *ebpf.Program, frame []byte) {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	skipIfNotSupported(t, err, "BPF_PROG_TEST_RUN for TC programs (Linux 4.12)")
	if err != nil || ret != tcActUnspec {
		t.Fatalf("verdict %#x err %v", ret, err)
	}
}

// asleep reports whether the reader is blocked now: every block counts a
// sleep, every wake-up from one a wake-up.
func asleep(st ReaderStats) bool { return st.Sleeps > st.Wakeups }

// waitAsleep waits until the reader blocks, then checks that it stays
// blocked: its polls do not move.
func waitAsleep(t *testing.T, rd *Reader) ReaderStats {
	t.Helper()
	if !waitUntil(5*time.Second, func() bool { return asleep(rd.Stats()) }) {
		t.Fatalf("the reader did not block: %+v", rd.Stats())
	}
	st := rd.Stats()
	time.Sleep(50 * time.Millisecond)
	if now := rd.Stats(); now.Polls != st.Polls || now.Sleeps != st.Sleeps {
		t.Fatalf("the reader blocked but kept looking: %+v, then %+v", st, now)
	}
	return st
}

// With nothing to read the reader blocks; one record wakes it, once, and is
// delivered.
func TestReaderSleepsAndWakes(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	rd, col := startReader(t, tee, time.Millisecond)
	requireBlocking(t, rd)
	for i := range 3 {
		st := waitAsleep(t, rd)
		// The sink was told, after its last Flush, once per block.
		if sleeps, flushed := col.sleepState(); sleeps != i+1 || flushed {
			t.Errorf("round %d: %d Sleep calls, a Flush since the last: %v", i, sleeps, flushed)
		}
		k := counters(t, tee)
		runOne(t, tee.objs.TeeEth, packet{src: client4, dst: server4, seq: uint32(i), flags: 0x18, payload: get}.frame())
		if !waitUntil(5*time.Second, func() bool { return col.len() == i+1 }) {
			t.Fatalf("record %d not delivered: reader %+v, kernel %+v", i, rd.Stats(), counters(t, tee))
		}
		if got := rd.Stats().Wakeups; got != st.Wakeups+1 {
			t.Errorf("record %d: reader woken %d times, want once", i, got-st.Wakeups)
		}
		if got := counters(t, tee).Wakeups; got != k.Wakeups+1 {
			t.Errorf("record %d: the program forced %d wake-ups, want 1", i, got-k.Wakeups)
		}
	}
}

// Records that come at any moment, also while the reader is on its way to
// block, are all delivered: no wake-up is lost. Several goroutines (so,
// several CPUs) send records after random pauses around the reader's poll
// interval, so that many land in the window between the reader's last look
// and its blocking; every so often they wait for delivery, so that a lost
// wake-up shows as a record that never comes.
func TestReaderLosesNoWakeup(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 22})
	rd, col := startReader(t, tee, 200*time.Microsecond)
	requireBlocking(t, rd)
	frame := packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get}.frame()
	const senders, rounds = 3, 120
	var (
		wg   sync.WaitGroup
		sent atomic.Int64
		errs = make(chan error, senders)
	)
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
				ret, err := tee.objs.TeeEth.Run(&ebpf.RunOptions{Data: frame})
				if err != nil || ret != tcActUnspec {
					errs <- fmt.Errorf("verdict %#x err %v", ret, err)
					return
				}
				n := sent.Add(1)
				if i%4 == 3 && !waitUntil(5*time.Second, func() bool { return int64(col.len()) >= n }) {
					errs <- fmt.Errorf("%d records sent, %d delivered: reader %+v", n, col.len(), rd.Stats())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const n = senders * rounds
	if !waitUntil(5*time.Second, func() bool { return col.len() == n }) {
		t.Fatalf("%d of %d records delivered: reader %+v, kernel %+v", col.len(), n, rd.Stats(), counters(t, tee))
	}
	st, k := rd.Stats(), counters(t, tee)
	t.Logf("%d records from %d goroutines: reader %+v; kernel wake-ups %d (lost %d)", n, senders, st, k.Wakeups, k.WakeupsLost)
	if st.Sleeps == 0 || st.Wakeups == 0 {
		t.Errorf("the reader never blocked or was never woken: %+v", st)
	}
}

// The program's half of the protocol: after committing, it finds the word
// set, clears it and rings the doorbell, once; with the word clear it rings
// nothing.
func TestProgramRingsWhenReaderWaits(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	rd, err := tee.NewReader(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	frame := packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get}.frame()

	runOne(t, tee.objs.TeeEth, frame)
	if k := counters(t, tee); k.Wakeups != 0 || rd.bell.available() != 0 {
		t.Fatalf("rang with the word clear: %+v, doorbell %d bytes", k, rd.bell.available())
	}
	atomic.StoreUint32(rd.waiting, 1)
	// A packet that is not copied does not ring.
	runOne(t, tee.objs.TeeEth, packet{src: client4, dst: mustAddrPort("198.18.0.2:9"), seq: 1, flags: 0x18, payload: get}.frame())
	if k := counters(t, tee); k.Wakeups != 0 {
		t.Fatalf("an uncopied packet rang: %+v", k)
	}
	runOne(t, tee.objs.TeeEth, frame)
	if k := counters(t, tee); k.Wakeups != 1 || k.WakeupsLost != 0 {
		t.Fatalf("counters %+v: want one wake-up", k)
	}
	if w := atomic.LoadUint32(rd.waiting); w != 0 {
		t.Errorf("reader_waiting %d after the wake-up, want 0", w)
	}
	if rd.bell.available() == 0 {
		t.Error("the doorbell holds nothing")
	}
	runOne(t, tee.objs.TeeEth, frame)
	if k := counters(t, tee); k.Wakeups != 1 {
		t.Errorf("rang again with the word clear: %+v", k)
	}
	// The reader empties the doorbell; the records are all discarded ones.
	if n, busy, err := rd.bell.read(nil); n != 0 || busy || err != nil || rd.bell.available() != 0 {
		t.Errorf("doorbell read: %d records, busy %v, err %v, %d bytes left", n, busy, err, rd.bell.available())
	}
}

// The reader's half: with a record in the ring it does not block, whatever
// the program saw.
func TestReaderDoesNotBlockOnARecord(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	rd, err := tee.NewReader(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	requireBlocking(t, rd)
	runOne(t, tee.objs.TeeEth, packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get}.frame())
	if err := rd.block(); err != nil {
		t.Fatal(err)
	}
	if st := rd.Stats(); st.Sleeps != 0 {
		t.Errorf("blocked with a record in the ring: %+v", st)
	}
	if w := atomic.LoadUint32(rd.waiting); w != 0 {
		t.Errorf("reader_waiting %d while awake", w)
	}
}

// Stop reads what is still in the ring, flushes the sink and returns once
// Run has. The records here sit in the ring while the reader waits on its
// (long) poll timer, so only Stop can bring them out.
func TestStopReadsWhatIsLeft(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	rd, err := tee.NewReader(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	requireBlocking(t, rd)
	col := &collector{}
	done := make(chan error, 1)
	go func() { done <- rd.Run(col) }()

	waitAsleep(t, rd)
	frame := func(seq uint32) []byte {
		return packet{src: client4, dst: server4, seq: seq, flags: 0x18, payload: get}.frame()
	}
	runOne(t, tee.objs.TeeEth, frame(0))
	if !waitUntil(5*time.Second, func() bool { return col.len() == 1 }) {
		t.Fatalf("the first record did not wake the reader: %+v", rd.Stats())
	}
	// Now the reader polls, an hour from now; the program does not wake it.
	for i := 1; i <= 5; i++ {
		runOne(t, tee.objs.TeeEth, frame(uint32(i)))
	}
	if rd.Pending() == 0 {
		t.Fatal("nothing pending in the ring")
	}
	col.mu.Lock()
	flushes := col.flushes
	col.mu.Unlock()

	rd.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("Stop returned before Run")
	}
	if col.len() != 6 {
		t.Fatalf("%d records after Stop, want 6", col.len())
	}
	for i, s := range col.segs {
		if s.Seq != uint32(i) {
			t.Errorf("record %d has seq %d", i, s.Seq)
		}
	}
	if col.flushes <= flushes {
		t.Error("the sink was not flushed after the last records")
	}
	if rd.Pending() != 0 {
		t.Errorf("%d bytes still pending", rd.Pending())
	}
	rd.Stop() // twice is harmless
}

// Stop before Run makes Run read what is there and return at once.
func TestStopBeforeRun(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	rd, err := tee.NewReader(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for i := range 3 {
		runOne(t, tee.objs.TeeEth, packet{src: client4, dst: server4, seq: uint32(i), flags: 0x18, payload: get}.frame())
	}
	rd.Stop()
	col := &collector{}
	if err := rd.Run(col); err != nil {
		t.Fatal(err)
	}
	if col.len() != 3 {
		t.Fatalf("%d records, want 3", col.len())
	}
	if err := rd.Run(col); err == nil {
		t.Error("a second Run did not fail")
	}
}

// Close while Run is blocked ends it; Run after Close returns at once.
func TestCloseEndsBlockedRun(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 16})
	rd, err := tee.NewReader(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rd.Run(&collector{}) }()
	if rd.Blocking() {
		waitAsleep(t, rd)
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rd.Pending() != 0 {
		t.Error("Pending after Close")
	}
	rd2, err := tee.NewReader(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rd2.Close()
	if err := rd2.Run(&collector{}); err != nil {
		t.Fatal(err)
	}
}

// aliasSink checks that every payload it gets lies in the ring's memory.
type aliasSink struct {
	data  []byte
	n     int
	outer int
}

func (s *aliasSink) Segment(seg *reassembly.Segment, _ int) {
	if len(seg.Payload) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(s.data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(seg.Payload)))
	if p >= start && p+uintptr(len(seg.Payload)) <= start+uintptr(len(s.data)) {
		s.n++
	} else {
		s.outer++
	}
}

func (s *aliasSink) Flush() {}

// The reader copies nothing: the sink's payload is the record in the ring.
func TestPayloadIsTheRingsMemory(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 16})
	rd, err := tee.NewReader(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// Enough records to wrap around the 64 KiB ring a few times: one that
	// straddles the end is still one slice, thanks to the double mapping.
	sink := &aliasSink{data: rd.ring.data}
	for i := range 100 {
		runOne(t, tee.objs.TeeEth, packet{src: client4, dst: server4, seq: uint32(i), flags: 0x18, payload: payloadOf(3000)}.frame())
		if i%10 == 9 {
			if _, _, err := rd.ring.read(func(raw []byte) {
				var seg reassembly.Segment
				if _, err := decodeEvent(raw, &seg, 0); err != nil {
					t.Fatal(err)
				}
				sink.Segment(&seg, 0)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sink.n != 100 || sink.outer != 0 {
		t.Errorf("%d payloads in the ring, %d elsewhere; want 100 and 0", sink.n, sink.outer)
	}
}

// A steady trickle, faster than the poll interval, is read in batches: the
// reader neither blocks nor is woken per packet.
func TestLiveTrickleIsBatched(t *testing.T) {
	tp := newTopology(t)
	tee := loadForTest(t, Options{Ports: []uint16{8080}})
	tp.hook(t, tee, AttachAuto)
	rd, col := startReader(t, tee, 20*time.Millisecond)
	requireBlocking(t, rd)

	conn, closeConn := tp.connect(t, "198.18.0.2:8080")
	defer closeConn()
	// The handshake's bare SYN does not ring: it waits for what follows.
	waitAsleep(t, rd)
	before, kBefore := rd.Stats(), counters(t, tee)
	const packets = 100
	var sent []byte
	for i := range packets {
		req := fmt.Appendf(nil, "GET /%d HTTP/1.1\r\nHost: trickle\r\n\r\n", i)
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, req...)
		time.Sleep(2 * time.Millisecond)
	}
	waitStream(t, col, conn.LocalAddr(), sent)
	after, kAfter := rd.Stats(), counters(t, tee)
	polls, wakeups, sleeps := after.Polls-before.Polls, after.Wakeups-before.Wakeups, after.Sleeps-before.Sleeps
	t.Logf("%d packets, one every 2 ms, poll interval 20 ms: %d polls, %d sleeps, %d wake-ups (kernel: %d)",
		packets, polls, sleeps, wakeups, kAfter.Wakeups-kBefore.Wakeups)
	if wakeups > packets/5 || sleeps > packets/5 {
		t.Errorf("%d wake-ups and %d sleeps for %d packets: not batched", wakeups, sleeps, packets)
	}
	if polls > packets/2 {
		t.Errorf("%d polls for %d packets: not batched", polls, packets)
	}
}

// Over veth, in both attach modes: the reader blocks when nothing comes,
// stays blocked, and one packet wakes it and is delivered. The lag is
// logged, not asserted.
func TestLiveReaderWakesForOnePacket(t *testing.T) {
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			tp := newTopology(t)
			tee := loadForTest(t, Options{Ports: []uint16{8080}})
			tp.hook(t, tee, mode)
			rd, col := startReader(t, tee, DefaultPoll)
			requireBlocking(t, rd)

			// A bare SYN does not ring: the reader stays asleep, and the
			// SYN waits in the ring for the request that follows it, so
			// that one wake-up delivers both.
			st := waitAsleep(t, rd)
			n := col.len()
			conn, closeConn := tp.connect(t, "198.18.0.2:8080")
			defer closeConn()
			time.Sleep(20 * time.Millisecond)
			k := counters(t, tee)
			if w := rd.Stats().Wakeups; w != st.Wakeups || col.len() != n {
				t.Errorf("the SYN woke the reader (%d wake-ups, %d records)", w-st.Wakeups, col.len()-n)
			}
			sent := time.Now()
			if _, err := conn.Write(get); err != nil {
				t.Fatal(err)
			}
			if !waitUntil(5*time.Second, func() bool { return col.len() > n }) {
				t.Fatalf("the request was not delivered: reader %+v, kernel %+v", rd.Stats(), counters(t, tee))
			}
			after := rd.Stats()
			if after.Wakeups <= st.Wakeups {
				t.Errorf("delivered without a wake-up: %+v, then %+v", st, after)
			}
			if kw := counters(t, tee).Wakeups; kw <= k.Wakeups {
				t.Errorf("the program forced no wake-up (%d, then %d)", k.Wakeups, kw)
			}
			col.mu.Lock()
			last := len(col.segs) - 1
			seg, got := col.segs[last], col.received[last]
			col.mu.Unlock()
			if string(seg.Payload) != string(get) || seg.Dir != reassembly.ToServer {
				t.Errorf("delivered %q (%v), want the request", seg.Payload, seg.Dir)
			}
			t.Logf("%s: write to sink %v, kernel copy to sink %v", mode, got.Sub(sent), got.Sub(seg.Time))
		})
	}
}

// connect opens a connection from the client namespace to a server that
// reads and discards, both closed by the returned function.
func (tp *topology) connect(t *testing.T, addr string) (net.Conn, func()) {
	t.Helper()
	ln, err := tp.server.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	conn, err := tp.client.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	return conn, func() {
		conn.Close()
		ln.Close()
		wg.Wait()
	}
}

// A reader that cannot block (its doorbell is not in the netpoller) only
// polls; it still tells its Sleeper, once per quiet spell, that records
// stopped coming.
func TestPollingReaderTellsSleep(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	rd, err := tee.NewReader(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rd.conn = nil // as if the descriptor could not be registered
	col := &collector{}
	done := make(chan error, 1)
	go func() { done <- rd.Run(col) }()
	defer func() {
		rd.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// It starts as if quiet: told once before any record.
	if !waitUntil(5*time.Second, func() bool { s, _ := col.sleepState(); return s == 1 }) {
		t.Fatal("no Sleep at the start")
	}
	for i := range 2 {
		runOne(t, tee.objs.TeeEth, packet{src: client4, dst: server4, seq: uint32(i), flags: 0x18, payload: get}.frame())
		if !waitUntil(5*time.Second, func() bool {
			sleeps, flushed := col.sleepState()
			return col.len() == i+1 && sleeps == i+2 && !flushed
		}) {
			sleeps, flushed := col.sleepState()
			t.Fatalf("record %d: %d delivered, %d Sleep calls, flushed since: %v", i, col.len(), sleeps, flushed)
		}
		// Still polling, and told only once.
		polls := rd.Stats().Polls
		if !waitUntil(5*time.Second, func() bool { return rd.Stats().Polls > polls+5 }) {
			t.Fatal("the reader stopped polling")
		}
		if sleeps, _ := col.sleepState(); sleeps != i+2 {
			t.Fatalf("record %d: %d Sleep calls while quiet, want %d", i, sleeps, i+2)
		}
	}
}
