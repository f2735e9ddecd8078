package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/reassembly"
)

// Adversarial input, fed to the real pipeline (flow sharding, reassembly,
// HTTP framing) without a kernel: whatever arrives, nothing panics, memory
// stays within the configured caps plus a fixed slack, and the counters
// explain every request that was not emitted.

// advRig is a pipeline whose Emit counts and remembers the requests.
type advRig struct {
	t      *testing.T
	p      *Pipeline
	shards int
	fs     httpframe.Stats
	rs     reassembly.Stats
	budget *httpframe.Budget
	cs     CaptureStats

	mu      sync.Mutex
	emitted []string // "METHOD target bodylen" of each request emitted
	raw     []byte   // the Raw bytes of every request emitted, in order
	keep    bool     // remember what was emitted (off for floods)
	count   int
}

// advConfig tunes a rig; zero fields take the agent's defaults.
type advConfig struct {
	shards     int
	reassembly reassembly.Config
	maxHeader  int
	maxBody    int64
	live       bool  // timers follow the held state, as for a live capture
	budget     int64 // bytes all partial requests may hold; 0: no cap
	forget     bool  // count emitted requests without remembering them
}

func newAdvRig(t *testing.T, cfg advConfig) *advRig {
	t.Helper()
	if cfg.shards == 0 {
		cfg.shards = 2
	}
	r := &advRig{t: t, keep: !cfg.forget}
	rc := cfg.reassembly
	rc.Stats = &r.rs
	if cfg.budget > 0 {
		r.budget = httpframe.NewBudget(cfg.budget)
	}
	framing := &httpframe.Config{
		Budget:         r.budget,
		MaxHeaderBytes: cfg.maxHeader,
		MaxBodyBytes:   cfg.maxBody,
		Stats:          &r.fs,
		Emit: func(req *httpframe.Request, _ any) {
			r.mu.Lock()
			r.count++
			if r.keep {
				r.emitted = append(r.emitted, fmt.Sprintf("%s %s %d", req.Bytes(req.MethodSpan), req.Bytes(req.TargetSpan), req.DecodedLen))
				r.raw = append(r.raw, req.Raw...)
			}
			r.mu.Unlock()
			req.Release()
		},
	}
	r.p = NewPipeline(PipelineConfig{
		Shards:     cfg.shards,
		Block:      true,
		Backlog:    4 << 20,
		Reassembly: rc,
		Framing:    framing,
		Live:       cfg.live,
		Stats:      &r.cs,
	})
	r.shards = cfg.shards
	t.Cleanup(func() {
		if r.p != nil {
			r.p.Close()
		}
	})
	return r
}

// push hands segments to the pipeline, as the capture does.
func (r *advRig) push(segs ...reassembly.Segment) {
	for i := range segs {
		r.p.Segment(&segs[i], 0)
	}
	r.p.Flush()
}

// close ends the pipeline and checks that nothing is left held.
func (r *advRig) close() {
	r.t.Helper()
	r.p.Close()
	r.p = nil
	if n := r.rs.ActiveStreams.Load(); n != 0 {
		r.t.Errorf("%d streams active after Close", n)
	}
	if n := r.rs.BufferedBytes.Load(); n != 0 {
		r.t.Errorf("%d out-of-order bytes held after Close", n)
	}
	if n := r.cs.BacklogBytes.Load(); n != 0 {
		r.t.Errorf("%d backlog bytes after Close", n)
	}
	if n := r.cs.BacklogDrops.Load(); n != 0 {
		r.t.Errorf("%d segments dropped although the pipeline blocks", n)
	}
	if r.budget != nil && r.budget.Used() != 0 {
		r.t.Errorf("%d bytes of the budget still reserved after Close", r.budget.Used())
	}
}

// settle waits until the shards have taken every segment pushed.
func (r *advRig) settle() {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.rs.Segments.Load() != r.cs.Segments.Load() || r.cs.BacklogBytes.Load() > 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("the shards took %d of %d segments", r.rs.Segments.Load(), r.cs.Segments.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// The last segment counted may still be in Add: a shard's lock is
	// held for the whole of it, so taking each lock waits it out.
	for _, s := range r.p.shards {
		for s.queued.Load() != 0 {
			time.Sleep(time.Millisecond)
		}
		s.mu.Lock()
		s.mu.Unlock()
	}
}

// streams returns the streams tracked over all shards.
func (r *advRig) streams() int { return int(r.rs.ActiveStreams.Load()) }

func (r *advRig) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.emitted...)
}

func (r *advRig) emittedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// skips returns the non-zero skip counts by reason.
func (r *advRig) skips() map[string]uint64 {
	m := map[string]uint64{}
	for i := range httpframe.NumReasons {
		if n := r.fs.Skipped[i].Load(); n > 0 {
			m[i.String()] = n
		}
	}
	return m
}

// heap returns the bytes of heap in use after a collection: what is live.
func advHeap() int64 {
	runtime.GC()
	runtime.GC() // a second cycle empties the pools' victim caches
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// advPeak samples the live heap while input is fed.
type advPeak struct {
	base, peak int64
}

func newAdvPeak() *advPeak {
	b := advHeap()
	return &advPeak{base: b, peak: b}
}

func (p *advPeak) sample() {
	if h := advHeap(); h > p.peak {
		p.peak = h
	}
}

// growth is how far the peak rose above the start.
func (p *advPeak) growth() int64 { return p.peak - p.base }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// advFlow returns the n-th client flow towards the service.
func advFlow(n int) reassembly.Flow {
	ip := netip.AddrFrom4([4]byte{198, 18, byte(n >> 16), byte(n >> 8)})
	return reassembly.Flow{
		Src: netip.AddrPortFrom(ip, uint16(1024+n&0xff)),
		Dst: netip.MustParseAddrPort("198.18.255.2:8080"),
	}
}

// advStream cuts data into segments of size bytes from isn+1 on, after a
// SYN; fin adds a FIN.
func advStream(flow reassembly.Flow, isn uint32, data []byte, size int, t time.Time, fin bool) []reassembly.Segment {
	segs := []reassembly.Segment{{Flow: flow, Seq: isn, Flags: reassembly.SYN, Time: t}}
	seq := isn + 1
	for len(data) > 0 {
		n := min(size, len(data))
		segs = append(segs, reassembly.Segment{Flow: flow, Seq: seq, Flags: reassembly.ACK | reassembly.PSH, Payload: data[:n], Time: t})
		seq += uint32(n)
		data = data[n:]
	}
	if fin {
		segs = append(segs, reassembly.Segment{Flow: flow, Seq: seq, Flags: reassembly.FIN | reassembly.ACK, Time: t})
	}
	return segs
}

const advGet = "GET /after HTTP/1.1\r\nHost: shadowing.example\r\n\r\n"

// TestAdversarialMalformed frames one kind of malformed input per flow,
// each followed on the same connection by a valid request: each must be
// counted by its reason, the valid request after it emitted (framing
// recovers), and nothing else emitted.
func TestAdversarialMalformed(t *testing.T) {
	cases := []struct {
		name  string
		input string
		skips map[string]uint64
		// emitted lists the requests emitted, "METHOD target bodylen".
		emitted []string
	}{
		{"chunk size not hex", "POST /c1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + "zz\r\nhello\r\n0\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"chunk size overflows", "POST /c2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"negative chunk size", "POST /c3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + "-5\r\nhello\r\n0\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"chunk data longer than its size", "POST /c4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + "3\r\nhello\r\n0\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"chunk size with junk extension", "POST /c5 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + "5 ;\x00\r\nhello\r\n0\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"two different Content-Lengths", "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"Content-Length not a number", "POST /cl2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"Content-Length 1 GiB announced, connection ends", "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\nabc",
			map[string]uint64{"body_too_large": 1}, nil},
		{"binary garbage before a request", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\xff\x00", 500) + "\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"request line without version", "GET /novers\r\nHost: a\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"NUL in a header", "GET /nul HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"HTTP/1.1 without Host", "GET /nohost HTTP/1.1\r\nX-A: b\r\n\r\n" + advGet,
			map[string]uint64{"malformed": 1}, []string{"GET /after 0"}},
		{"CONNECT then anything", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n" + advGet,
			map[string]uint64{"connect": 1}, nil},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + advGet,
			map[string]uint64{"http2": 1}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newAdvRig(t, advConfig{maxBody: 1 << 20})
			t0 := time.Unix(1700000000, 0)
			// Cut in odd sizes, so that every boundary is met split.
			r.push(advStream(advFlow(1), 1000, []byte(tc.input), 7, t0, true)...)
			r.close()
			if got := r.skips(); fmt.Sprint(got) != fmt.Sprint(tc.skips) {
				t.Errorf("skipped %v, want %v", got, tc.skips)
			}
			if got := r.requests(); fmt.Sprint(got) != fmt.Sprint(tc.emitted) {
				t.Errorf("emitted %q, want %q", got, tc.emitted)
			}
		})
	}
}

// TestAdversarialHugeHeader sends 1 MiB of header fields, then a valid
// request, on one connection: the head is refused as too large once it
// passes the cap, only the cap is ever held, and the next request is framed.
func TestAdversarialHugeHeader(t *testing.T) {
	r := newAdvRig(t, advConfig{maxHeader: 64 << 10})
	var b strings.Builder
	b.WriteString("GET /huge HTTP/1.1\r\nHost: a\r\n")
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "X-Field-%d: %s\r\n", i, strings.Repeat("v", 100))
	}
	b.WriteString("\r\n" + advGet)
	peak := newAdvPeak()
	segs := advStream(advFlow(1), 1, []byte(b.String()), 1448, time.Unix(1700000000, 0), true)
	for i := 0; i < len(segs); i += 64 {
		r.push(segs[i:min(i+64, len(segs))]...)
		r.settle()
		peak.sample()
	}
	r.close()
	if got := r.skips(); fmt.Sprint(got) != "map[header_too_large:1]" {
		t.Errorf("skipped %v, want header_too_large 1", got)
	}
	if got := r.requests(); fmt.Sprint(got) != "[GET /after 0]" {
		t.Errorf("emitted %q, want the request after the huge head", got)
	}
	if g := peak.growth(); g > 8<<20 {
		t.Errorf("the heap grew by %s for a head capped at 64 KiB", mib(g))
	}
}

// TestAdversarialHugeBody announces a body of 1 GiB and streams it whole in
// 64 KiB segments, then a valid request: the request is skipped as too
// large without holding its body (memory does not grow with it), and the
// framing lands exactly on the request after it.
func TestAdversarialHugeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 1 GiB")
	}
	const size = 1 << 30
	r := newAdvRig(t, advConfig{maxBody: 8 << 20})
	flow := advFlow(1)
	t0 := time.Unix(1700000000, 0)
	head := "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\n"
	r.push(advStream(flow, 0, []byte(head), 1448, t0, false)...)
	seq := uint32(1 + len(head))
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	peak := newAdvPeak()
	batch := make([]reassembly.Segment, 0, 64)
	for sent, pushes := 0, 0; sent < size; sent += len(chunk) {
		batch = append(batch, reassembly.Segment{Flow: flow, Seq: seq, Flags: reassembly.ACK, Payload: chunk, Time: t0})
		seq += uint32(len(chunk))
		if len(batch) == cap(batch) {
			r.push(batch...)
			batch = batch[:0]
			if pushes++; pushes%32 == 0 { // every 128 MiB
				r.settle()
				peak.sample()
			}
		}
	}
	r.push(batch...)
	r.push(advStream(flow, seq-1, []byte(advGet), 1448, t0, true)[1:]...)
	r.settle()
	peak.sample()
	r.close()
	if got := r.skips(); fmt.Sprint(got) != "map[body_too_large:1]" {
		t.Errorf("skipped %v, want body_too_large 1", got)
	}
	if got := r.requests(); fmt.Sprint(got) != "[GET /after 0]" {
		t.Errorf("emitted %q, want only the request after the body", got)
	}
	if got := r.rs.Delivered.Load(); got != uint64(len(head)+size+len(advGet)) {
		t.Errorf("%d bytes delivered, want %d", got, len(head)+size+len(advGet))
	}
	// The backlog (4 MiB) and the batch pool are the only buffers in play.
	if g := peak.growth(); g > 16<<20 {
		t.Errorf("the heap grew by %s while a skipped 1 GiB body streamed", mib(g))
	}
}

// TestAdversarialAnnouncedBodies opens many connections whose heads each
// announce a body of the largest allowed size and send one byte of it:
// what is held must follow what arrived, not what was announced.
func TestAdversarialAnnouncedBodies(t *testing.T) {
	const conns, maxBody = 16, 8 << 20
	r := newAdvRig(t, advConfig{maxBody: maxBody})
	t0 := time.Unix(1700000000, 0)
	peak := newAdvPeak()
	for i := range conns {
		head := fmt.Sprintf("POST /up/%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\nx", i, maxBody)
		r.push(advStream(advFlow(i), uint32(i)<<20, []byte(head), 1448, t0, false)...)
	}
	r.settle()
	peak.sample()
	r.close()
	if got := r.skips(); got["incomplete"] != conns {
		t.Errorf("skipped %v, want %d incomplete", got, conns)
	}
	// 16 heads and 16 bytes of body arrived; allow 64 KiB per connection.
	if g := peak.growth(); g > conns*64<<10+4<<20 {
		t.Errorf("the heap grew by %s for %d heads announcing %d bytes each: buffers follow the announced length",
			mib(g), conns, maxBody)
	}
}

// TestAdversarialBudget has many connections each hold a request whose
// body is still arriving, more in all than the budget for partial
// requests: the budget is never passed, memory stays within it, the
// requests refused room are skipped as memory, and the others, cut by the
// end, as incomplete.
func TestAdversarialBudget(t *testing.T) {
	const conns, budget, body = 64, 2 << 20, 256 << 10
	r := newAdvRig(t, advConfig{budget: budget, maxBody: 1 << 20})
	t0 := time.Unix(1700000000, 0)
	peak := newAdvPeak()
	most := int64(0)
	for i := range conns {
		data := fmt.Sprintf("POST /partial/%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", i, body, strings.Repeat("p", body-1))
		r.push(advStream(advFlow(i), uint32(i)<<24, []byte(data), 1448, t0, false)...)
		r.settle()
		most = max(most, r.budget.Used())
		if i%16 == 15 {
			peak.sample()
		}
	}
	r.close()
	skips := r.skips()
	t.Logf("skipped %v; most reserved %d of %d; heap +%s", skips, most, budget, mib(peak.growth()))
	if most > budget {
		t.Errorf("%d bytes reserved, budget %d", most, budget)
	}
	if skips["memory"] == 0 || skips["memory"]+skips["incomplete"] != conns || len(skips) != 2 {
		t.Errorf("skipped %v, want memory and incomplete adding up to %d", skips, conns)
	}
	if n := r.emittedCount(); n != 0 {
		t.Errorf("%d requests emitted, none was complete", n)
	}
	if g := peak.growth(); g > budget+8<<20 {
		t.Errorf("the heap grew by %s with a budget of %s", mib(g), mib(budget))
	}
}

// TestAdversarialOverlaps sends overlapping segments whose bytes differ,
// out of order, across the sequence number wraparound: each byte delivered
// is the first copy of it that arrived, whatever came later, and the
// requests framed from those bytes are emitted whole.
func TestAdversarialOverlaps(t *testing.T) {
	r := newAdvRig(t, advConfig{})
	flow := advFlow(1)
	t0 := time.Unix(1700000000, 0)
	first := []byte("GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	other := []byte("GET /xxxxx HTTP/1.1\r\nHost: b\r\n\r\nGET /yyyyyy HTTP/1.1\r\nHost: b\r\n\r\n")
	type piece struct {
		src        []byte
		start, end int
	}
	// In order of arrival: the middle first, then rivals that overlap it
	// and each other, then the start, then everything again, different.
	pieces := []piece{
		{first, 20, 50}, {other, 15, 45}, {other, 40, 60}, {other, 20, 50},
		{first, 0, 25}, {other, 0, len(other)}, {first, 45, len(first)}, {first, 0, len(first)},
	}
	want := make([]byte, len(first))
	seen := make([]bool, len(first))
	const isn = 0xFFFFFFF0
	base := uint32(isn + 1)
	r.push(reassembly.Segment{Flow: flow, Seq: isn, Flags: reassembly.SYN, Time: t0})
	for _, pc := range pieces {
		for k := pc.start; k < pc.end; k++ {
			if !seen[k] {
				seen[k], want[k] = true, pc.src[k]
			}
		}
		r.push(reassembly.Segment{Flow: flow, Seq: base + uint32(pc.start), Flags: reassembly.ACK, Payload: pc.src[pc.start:pc.end], Time: t0})
	}
	r.push(reassembly.Segment{Flow: flow, Seq: base + uint32(len(first)), Flags: reassembly.FIN, Time: t0})
	r.close()
	if !bytes.Equal(r.raw, want) {
		t.Errorf("emitted\n%q\nwant the first copy of each byte\n%q", r.raw, want)
	}
	if n := len(r.requests()); n != 2 {
		t.Errorf("emitted %q, want 2 requests", r.requests())
	}
	if len(r.skips()) != 0 {
		t.Errorf("skipped %v", r.skips())
	}
	if r.rs.OverlapBytes.Load() == 0 || r.rs.Duplicate.Load() == 0 {
		t.Errorf("overlaps %d bytes, duplicates %d: not counted", r.rs.OverlapBytes.Load(), r.rs.Duplicate.Load())
	}
	if got := r.rs.Delivered.Load(); got != uint64(len(first)) {
		t.Errorf("%d bytes delivered, want %d", got, len(first))
	}
}

// advNoise makes random segments on a few flows: random payloads (some
// starting like a request), random flags, and sequence numbers anywhere,
// behind (overlaps) or ahead (holes) of where each flow is.
type advNoise struct {
	rng     *rand.Rand
	seqs    []uint32
	payload []byte
}

var advFlags = []reassembly.Flags{0, reassembly.ACK, reassembly.PSH | reassembly.ACK, reassembly.SYN, reassembly.FIN,
	reassembly.RST, reassembly.SYN | reassembly.FIN | reassembly.RST, reassembly.FIN | reassembly.ACK}

func newAdvNoise(seed uint64, flows int) *advNoise {
	z := &advNoise{rng: rand.New(rand.NewPCG(seed, 2)), seqs: make([]uint32, flows), payload: make([]byte, 4096)}
	for i := range z.seqs {
		z.seqs[i] = z.rng.Uint32()
	}
	return z
}

// next returns a segment whose payload is valid until the next call.
func (z *advNoise) next(now time.Time) reassembly.Segment {
	rng := z.rng
	i := rng.IntN(len(z.seqs))
	var seq uint32
	switch rng.IntN(4) {
	case 0:
		seq = rng.Uint32() // anywhere
	case 1:
		seq = z.seqs[i] - uint32(rng.IntN(8192)) // behind: overlaps
	default:
		seq = z.seqs[i] + uint32(rng.IntN(8192)) // ahead: holes
	}
	n := rng.IntN(len(z.payload) + 1)
	if rng.IntN(3) == 0 {
		n = rng.IntN(16)
	}
	p := z.payload[:n]
	for k := range p {
		p[k] = byte(rng.Uint32())
	}
	if rng.IntN(10) == 0 {
		copy(p, "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n") // plausible starts
	}
	z.seqs[i] = seq + uint32(n)
	return reassembly.Segment{Flow: advFlow(1000 + i), Seq: seq, Flags: advFlags[rng.IntN(len(advFlags))], Payload: p, Time: now}
}

// cleanConn returns the segments of connection n: perConn POSTs, each
// /clean/n/k with the body "hello", then a FIN.
func (z *advNoise) cleanConn(n, perConn int, now time.Time) []reassembly.Segment {
	var b strings.Builder
	for k := range perConn {
		fmt.Fprintf(&b, "POST /clean/%d/%d HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", n, k)
	}
	return advStream(advFlow(n), z.rng.Uint32(), []byte(b.String()), 1+z.rng.IntN(100), now, true)
}

// TestAdversarialRandom feeds random payloads with random flags and
// sequence numbers on a few flows, interleaved with clean connections that
// each carry valid requests: nothing panics, memory stays within the
// caps, and the noise neither disturbs a single clean request nor makes
// one of its own.
func TestAdversarialRandom(t *testing.T) {
	const maxStreamBuf, maxBuf, noisy = 16 << 10, 64 << 10, 8
	r := newAdvRig(t, advConfig{reassembly: reassembly.Config{MaxStreamBuffer: maxStreamBuf, MaxBuffer: maxBuf, GapTimeout: 50 * time.Millisecond}})
	z := newAdvNoise(1, noisy)
	t0 := time.Unix(1700000000, 0)
	const clean, perClean = 50, 4
	peak := newAdvPeak()
	cleanSent := 0
	for step := range 60000 {
		now := t0.Add(time.Duration(step) * time.Millisecond)
		r.push(z.next(now))
		if step%1000 == 0 && cleanSent < clean {
			r.push(z.cleanConn(cleanSent, perClean, now)...)
			cleanSent++
		}
		if step%10000 == 0 {
			r.settle()
			peak.sample()
		}
	}
	r.close()
	got := 0
	for _, req := range r.requests() {
		if strings.HasPrefix(req, "POST /clean/") && strings.HasSuffix(req, " 5") {
			got++
		}
	}
	t.Logf("emitted %d (clean %d); framed %d, skipped %v; gaps %d, buffer-full drops %d, streams %d; heap +%s",
		r.emittedCount(), got, r.fs.Requests.Load(), r.skips(), r.rs.Gaps.Load(), r.rs.BufferFullDrops.Load(), r.rs.StreamsOpened.Load(), mib(peak.growth()))
	if want := cleanSent * perClean; got != want || r.emittedCount() != want {
		t.Errorf("%d clean requests emitted of %d, %d in all", got, want, r.emittedCount())
	}
	if r.rs.BufferFullDrops.Load() == 0 || r.rs.Gaps.Load() == 0 {
		t.Error("the noise never met the out-of-order caps")
	}
	// The caps: out-of-order bytes (maxBuf), one partial head per noisy
	// flow (64 KiB each), the backlog (4 MiB), plus slack.
	if g := peak.growth(); g > maxBuf+noisy*(64<<10)+16<<20 {
		t.Errorf("the heap grew by %s", mib(g))
	}
}

// TestAdversarialNoiseMirrored runs noise and clean connections through the
// real mirror to a shadow: the shadow receives the clean requests, each
// once and intact, and nothing else; and the summary gives every framed
// request one end.
func TestAdversarialNoiseMirrored(t *testing.T) {
	rec := recorder.New(nil)
	srv := httptest.NewServer(rec)
	defer srv.Close()
	m := newMirror(slog.New(slog.DiscardHandler), time.Second)
	rule := config.Rule{Name: "default", Percentage: 100, HostSuffix: true,
		Shadow: config.Shadow{URL: srv.URL, Timeout: 5 * time.Second}}
	if err := m.apply(&config.File{Rules: []config.Rule{rule}}); err != nil {
		t.Fatal(err)
	}
	st := &stats{start: time.Now(), mirror: m}
	lim := Limits{MaxBody: 1 << 20, MaxBuffered: 4 << 20}
	p := NewPipeline(PipelineConfig{Shards: 2, Block: true, Backlog: 4 << 20, Framing: m.framingConfig(lim), Stats: &st.capture,
		Reassembly: reassembly.Config{Stats: &st.reassembly, MaxStreamBuffer: 16 << 10, MaxBuffer: 64 << 10, GapTimeout: 50 * time.Millisecond}})
	z := newAdvNoise(7, 8)
	t0 := time.Unix(1700000000, 0)
	const clean, perClean = 20, 3
	for step := range 20000 {
		now := t0.Add(time.Duration(step) * time.Millisecond)
		seg := z.next(now)
		p.Segment(&seg, 0)
		if step%1000 == 0 && step/1000 < clean {
			for _, s := range z.cleanConn(step/1000, perClean, now) {
				p.Segment(&s, 0)
			}
		}
		p.Flush()
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.close(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rec.Requests() {
		seen[r.Method+" "+r.Target]++
		if r.BodyLen != 5 || r.Host != "a-shadow" {
			t.Errorf("%s %s: body %d bytes, Host %q", r.Method, r.Target, r.BodyLen, r.Host)
		}
	}
	for c := range clean {
		for k := range perClean {
			key := fmt.Sprintf("POST /clean/%d/%d", c, k)
			if seen[key] != 1 {
				t.Errorf("%s reached the shadow %d times", key, seen[key])
			}
			delete(seen, key)
		}
	}
	if len(seen) > 0 {
		t.Errorf("the shadow received requests nobody sent whole: %v", seen)
	}
	sum := st.summary()
	q := sum.Requests
	t.Logf("framed %d, skipped %v, mirrored %d, dropped %v, failed %v; gaps %d", q.Framed, q.Skipped, q.Mirrored, q.Dropped, q.Failed, sum.Segments.Gaps)
	if q.Mirrored != clean*perClean || len(q.Dropped) != 0 || len(q.Failed) != 0 {
		t.Errorf("mirrored %d of %d, dropped %v, failed %v", q.Mirrored, clean*perClean, q.Dropped, q.Failed)
	}
	if q.Queued != q.Mirrored {
		t.Errorf("queued %d, mirrored %d", q.Queued, q.Mirrored)
	}
}

// TestAdversarialOutOfOrder sends each connection's bytes in reverse, far
// beyond the out-of-order caps: on half of them the head comes first and
// only the body is reversed, on the other half the head comes last. The
// caps hold; the holes are given up on and counted as gaps with the bytes
// they skipped, so that every byte is delivered once or counted in a gap;
// a request whose body a gap cut is counted as incomplete, one whose head
// never arrived in time is never framed; none is emitted.
func TestAdversarialOutOfOrder(t *testing.T) {
	const maxStreamBuf, maxBuf, conns, body = 32 << 10, 128 << 10, 16, 256 << 10
	r := newAdvRig(t, advConfig{shards: 1, reassembly: reassembly.Config{MaxStreamBuffer: maxStreamBuf, MaxBuffer: maxBuf}})
	t0 := time.Unix(1700000000, 0)
	var all [][]reassembly.Segment
	var total int
	for i := range conns {
		head := fmt.Sprintf("POST /ooo/%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", i, body)
		data := head + strings.Repeat("z", body)
		total += len(data)
		segs := advStream(advFlow(i), uint32(i)*7919, []byte(data), 1024, t0, true)
		// Keep the SYN (and, on even connections, the head) first; the
		// rest, FIN included, from the last to the first.
		rest := segs[1:]
		if i%2 == 0 {
			rest = segs[2:]
		}
		for a, b := 0, len(rest)-1; a < b; a, b = a+1, b-1 {
			rest[a], rest[b] = rest[b], rest[a]
		}
		all = append(all, segs)
	}
	// Interleave the connections, so that they compete for MaxBuffer.
	maxHeld := int64(0)
	for k := 0; ; k++ {
		more := false
		for _, segs := range all {
			if k < len(segs) {
				r.push(segs[k])
				more = true
			}
		}
		if !more {
			break
		}
		if k%16 == 0 {
			r.settle()
			maxHeld = max(maxHeld, r.rs.BufferedBytes.Load())
		}
	}
	r.close()
	t.Logf("gaps %d (%d bytes), buffer-full drops %d, duplicates %d, delivered %d of %d; framed %d, skipped %v; most held %d",
		r.rs.Gaps.Load(), r.rs.GapBytes.Load(), r.rs.BufferFullDrops.Load(), r.rs.Duplicate.Load(), r.rs.Delivered.Load(), total,
		r.fs.Requests.Load(), r.skips(), maxHeld)
	if maxHeld > maxBuf {
		t.Errorf("held %d out-of-order bytes, cap %d", maxHeld, maxBuf)
	}
	if r.rs.Gaps.Load() < conns || r.rs.BufferFullDrops.Load() == 0 {
		t.Errorf("%d gaps and %d buffer-full drops for %d reversed connections", r.rs.Gaps.Load(), r.rs.BufferFullDrops.Load(), conns)
	}
	if d, g := r.rs.Delivered.Load(), r.rs.GapBytes.Load(); d+g != uint64(total) {
		t.Errorf("delivered %d + gap bytes %d = %d, sent %d", d, g, d+g, total)
	}
	if n := r.fs.Requests.Load(); n != conns/2 {
		t.Errorf("%d requests framed, want the %d whose head came first", n, conns/2)
	}
	if got := r.skips(); fmt.Sprint(got) != fmt.Sprintf("map[incomplete:%d]", conns/2) {
		t.Errorf("skipped %v, want %d incomplete", got, conns/2)
	}
	if n := r.emittedCount(); n != 0 {
		t.Errorf("%d requests emitted from streams with holes: %q", n, r.requests())
	}
}

// TestAdversarialSynFlood opens many half-open streams (a SYN each):
// memory per stream is small and bounded, MaxStreams caps the streams with
// evictions counted, and idle expiry frees them all.
func TestAdversarialSynFlood(t *testing.T) {
	const flows = 200_000
	t0 := time.Now()
	syns := func(r *advRig, from, n int) {
		batch := make([]reassembly.Segment, 0, 256)
		for i := from; i < from+n; i++ {
			batch = append(batch, reassembly.Segment{Flow: advFlow(i), Seq: uint32(i), Flags: reassembly.SYN, Time: t0})
			if len(batch) == cap(batch) {
				r.push(batch...)
				batch = batch[:0]
			}
		}
		r.push(batch...)
		r.settle()
	}

	t.Run("uncapped", func(t *testing.T) {
		r := newAdvRig(t, advConfig{forget: true})
		peak := newAdvPeak()
		syns(r, 0, flows)
		peak.sample()
		if n := r.streams(); n != flows {
			t.Errorf("%d streams tracked, want %d", n, flows)
		}
		per := peak.growth() / flows
		t.Logf("%d half-open streams: heap +%s, %d bytes each", flows, mib(peak.growth()), per)
		if per > 1024 {
			t.Errorf("a half-open stream costs %d bytes", per)
		}
		r.close()
	})

	t.Run("capped", func(t *testing.T) {
		const maxStreams = 5000
		r := newAdvRig(t, advConfig{forget: true, reassembly: reassembly.Config{MaxStreams: maxStreams}})
		peak := newAdvPeak()
		syns(r, 0, flows)
		peak.sample()
		opened, evicted := r.rs.StreamsOpened.Load(), r.rs.StreamsEvicted.Load()
		tracked := r.streams()
		t.Logf("%d SYNs, MaxStreams %d over %d shards: %d tracked, %d evicted, heap +%s", flows, maxStreams, r.shards, tracked, evicted, mib(peak.growth()))
		if opened != flows || evicted != uint64(flows-tracked) {
			t.Errorf("opened %d, evicted %d, tracked %d: evictions do not add up", opened, evicted, tracked)
		}
		if tracked > maxStreams*r.shards {
			t.Errorf("%d streams tracked, over %d per shard", tracked, maxStreams)
		}
		if g := peak.growth(); g > 16<<20 {
			t.Errorf("the heap grew by %s with at most %d streams", mib(g), maxStreams*r.shards)
		}
		r.close()
	})

	t.Run("idle expiry", func(t *testing.T) {
		r := newAdvRig(t, advConfig{forget: true, live: true,
			reassembly: reassembly.Config{IdleTimeout: 200 * time.Millisecond}})
		before := advHeap()
		t0 = time.Now()
		syns(r, 0, 50_000)
		flooded := advHeap()
		deadline := time.Now().Add(5 * time.Second)
		for r.streams() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := r.streams(); n != 0 {
			t.Fatalf("%d streams still tracked after the idle timeout", n)
		}
		if got := r.rs.StreamsExpired.Load(); got != 50_000 {
			t.Errorf("%d streams expired, want 50000", got)
		}
		after := advHeap()
		t.Logf("heap +%s with 50000 streams, +%s once they expired", mib(flooded-before), mib(after-before))
		if after > flooded {
			t.Errorf("the heap grew from %s to %s as the streams expired", mib(flooded), mib(after))
		}
		r.close()
	})
}

// TestAdversarialMaxStreamsIsPerAgent checks that --max-streams caps the
// connections followed by the whole agent, as its help says, not by each
// of its shards.
func TestAdversarialMaxStreamsIsPerAgent(t *testing.T) {
	const maxStreams = 5000
	r := newAdvRig(t, advConfig{shards: 2, forget: true, reassembly: reassembly.Config{MaxStreams: maxStreams}})
	for i := range 3 * maxStreams {
		r.push(reassembly.Segment{Flow: advFlow(i), Seq: 1, Flags: reassembly.SYN, Time: time.Unix(1700000000, 0)})
	}
	r.settle()
	if n := r.streams(); n > maxStreams {
		t.Errorf("%d streams followed with MaxStreams %d", n, maxStreams)
	}
	r.close()
}

// TestAdversarialTinyStreams opens 100,000 connections that each send one
// small request and never close: every request is emitted, and with
// MaxStreams low the streams are evicted (counted), memory bounded.
func TestAdversarialTinyStreams(t *testing.T) {
	const streams = 100_000
	for _, tc := range []struct {
		name       string
		maxStreams int
	}{{"uncapped", 0}, {"capped", 2000}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newAdvRig(t, advConfig{forget: true, reassembly: reassembly.Config{MaxStreams: tc.maxStreams}})
			t0 := time.Unix(1700000000, 0)
			peak := newAdvPeak()
			batch := make([]reassembly.Segment, 0, 512)
			for i := range streams {
				flow := advFlow(i)
				req := []byte(fmt.Sprintf("GET /t/%d HTTP/1.1\r\nHost: a\r\n\r\n", i))
				batch = append(batch,
					reassembly.Segment{Flow: flow, Seq: 100, Flags: reassembly.SYN, Time: t0},
					reassembly.Segment{Flow: flow, Seq: 101, Flags: reassembly.ACK | reassembly.PSH, Payload: req, Time: t0})
				if len(batch) == cap(batch) {
					r.push(batch...)
					batch = batch[:0]
				}
				if i%25000 == 0 {
					r.settle()
					peak.sample()
				}
			}
			r.push(batch...)
			r.settle()
			peak.sample()
			tracked := r.streams()
			if n := r.emittedCount(); n != streams {
				t.Errorf("%d of %d requests emitted", n, streams)
			}
			evicted := r.rs.StreamsEvicted.Load()
			t.Logf("%d streams: %d tracked, %d evicted, heap +%s", streams, tracked, evicted, mib(peak.growth()))
			if evicted != uint64(streams-tracked) {
				t.Errorf("%d evicted, %d tracked, of %d", evicted, tracked, streams)
			}
			limit := int64(streams) * 1024
			if tc.maxStreams > 0 {
				limit = 16 << 20
				if tracked > tc.maxStreams*r.shards {
					t.Errorf("%d tracked, cap %d per shard", tracked, tc.maxStreams)
				}
			}
			if g := peak.growth(); g > limit {
				t.Errorf("the heap grew by %s, limit %s", mib(g), mib(limit))
			}
			r.close()
			if got := r.skips(); len(got) != 0 {
				t.Errorf("skipped %v: complete requests cut by eviction or close", got)
			}
		})
	}
}
