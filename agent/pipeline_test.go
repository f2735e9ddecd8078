package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/reassembly"
)

// segmentsOf cuts a client byte stream into segments of at most size bytes,
// starting with a SYN and ending with a FIN.
func segmentsOf(flow reassembly.Flow, isn uint32, data string, size int, t0 time.Time) []reassembly.Segment {
	segs := []reassembly.Segment{{Flow: flow, Seq: isn, Flags: reassembly.SYN, Time: t0}}
	seq := isn + 1
	for len(data) > 0 {
		n := min(size, len(data))
		segs = append(segs, reassembly.Segment{Flow: flow, Seq: seq, Flags: reassembly.ACK | reassembly.PSH, Payload: []byte(data[:n]), Time: t0})
		seq += uint32(n)
		data = data[n:]
	}
	return append(segs, reassembly.Segment{Flow: flow, Seq: seq, Flags: reassembly.FIN | reassembly.ACK, Time: t0})
}

func flowOf(src, dst string) reassembly.Flow {
	return reassembly.Flow{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
}

// From segments to the shadow, without a kernel: the same path the live
// capture and capture files take.
func TestPipelineMirrorsSegments(t *testing.T) {
	rec := recorder.New(nil)
	srv := httptest.NewServer(rec)
	defer srv.Close()

	m := newMirror(slog.Default(), time.Second)
	rule := config.Rule{Name: "default", Percentage: 100, HostSuffix: true, Headers: config.Headers{XForwardedFor: true},
		Shadow: config.Shadow{URL: srv.URL, Timeout: 5 * time.Second}}
	if err := m.apply(&config.File{Rules: []config.Rule{rule}}); err != nil {
		t.Fatal(err)
	}
	st := &stats{start: time.Now(), mirror: m}
	p := NewPipeline(PipelineConfig{
		Shards:     3,
		Block:      true,
		Reassembly: reassembly.Config{Stats: &st.reassembly},
		Framing:    m.framingConfig(Limits{}),
		Stats:      &st.capture,
	})

	t0 := time.Now()
	v4 := segmentsOf(flowOf("198.18.0.1:40000", "198.18.0.2:8080"), 1000,
		"GET /a HTTP/1.1\r\nHost: shadowing.example\r\n\r\n"+
			"POST /b HTTP/1.1\r\nHost: shadowing.example:8080\r\nContent-Length: 11\r\n\r\nhello world", 7, t0)
	v6 := segmentsOf(flowOf("[fd00::1]:40001", "[fd00::2]:8080"), 0xFFFFFFF0,
		"PUT /c HTTP/1.1\r\nHost: [fd00::2]:8080\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 10, t0)
	// The IPv6 stream arrives out of order: swap two of its segments.
	v6[2], v6[3] = v6[3], v6[2]
	for i := range max(len(v4), len(v6)) {
		if i < len(v4) {
			p.Segment(&v4[i], 0)
		}
		if i < len(v6) {
			p.Segment(&v6[i], 0)
		}
		if i%3 == 0 {
			p.Flush()
		}
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.close(ctx); err != nil {
		t.Fatal(err)
	}

	got := map[string]recorder.Request{}
	for _, r := range rec.Requests() {
		got[r.Method+" "+r.Target] = r
	}
	for key, host := range map[string]string{
		"GET /a":  "shadowing.example-shadow",
		"POST /b": "shadowing.example-shadow:8080",
		"PUT /c":  "[fd00::2]-shadow:8080",
	} {
		r, ok := got[key]
		if !ok {
			t.Errorf("%s not mirrored; got %v", key, rec.Requests())
			continue
		}
		if r.Host != host {
			t.Errorf("%s: Host %q, want %q", key, r.Host, host)
		}
	}
	if len(got) != 3 || rec.Len() != 3 {
		t.Errorf("shadow received %d requests, want 3", rec.Len())
	}
	sum := st.summary()
	if sum.Requests.Framed != 3 || sum.Requests.Mirrored != 3 || sum.Segments.Received != uint64(len(v4)+len(v6)) {
		t.Errorf("summary %+v", sum)
	}
	if sum.Segments.OutOfOrder == 0 {
		t.Error("the swapped segments were not counted out of order")
	}
}

// A live capture never waits for a slow shard: what does not fit in the
// backlog is dropped, and every segment is either processed or counted as
// dropped.
func TestPipelineDropsWhenBehind(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	emitted := 0
	framing := &httpframe.Config{
		Stats: &httpframe.Stats{},
		Emit: func(r *httpframe.Request, _ any) {
			<-release // the shard stalls on its first request
			mu.Lock()
			emitted++
			mu.Unlock()
			r.Release()
		},
	}
	st := &CaptureStats{}
	p := NewPipeline(PipelineConfig{Shards: 1, Backlog: 256 << 10, Framing: framing, Stats: st,
		Reassembly: reassembly.Config{Stats: &reassembly.Stats{}}})

	// One request of about 1 KiB per connection.
	req := []byte("GET /x HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("x", 1000) + "\r\n\r\n")
	const n = 2000
	for i := range n {
		flow := flowOf("198.18.0.1:1", "198.18.0.2:80")
		flow.Src = netip.AddrPortFrom(flow.Src.Addr(), uint16(1000+i))
		seg := reassembly.Segment{Flow: flow, Seq: 1, Flags: reassembly.PSH | reassembly.ACK, Payload: req, Time: time.Now()}
		p.Segment(&seg, 0)
		p.Flush()
	}
	if st.BacklogDrops.Load() == 0 {
		t.Fatal("nothing dropped although the shard was stalled")
	}
	close(release)
	p.Close()
	if got := st.Segments.Load(); got != n {
		t.Fatalf("segments %d, want %d", got, n)
	}
	processed := n - int(st.BacklogDrops.Load())
	mu.Lock()
	defer mu.Unlock()
	if emitted != processed {
		t.Errorf("%d requests emitted, %d segments processed, %d dropped", emitted, processed, st.BacklogDrops.Load())
	}
	if st.BacklogBytes.Load() != 0 {
		t.Errorf("backlog bytes %d after close", st.BacklogBytes.Load())
	}
}

// emitCounter is a framing config whose Emit counts and releases, and can
// hold the shard's goroutine until released.
type emitCounter struct {
	mu      sync.Mutex
	targets []string
	hold    chan struct{} // when not nil, Emit waits on it
	held    chan struct{} // signalled when an Emit is waiting on hold
}

func (e *emitCounter) config() *httpframe.Config {
	return &httpframe.Config{Stats: &httpframe.Stats{}, Emit: func(r *httpframe.Request, _ any) {
		if e.hold != nil {
			e.held <- struct{}{}
			<-e.hold
		}
		e.mu.Lock()
		e.targets = append(e.targets, string(r.Target()))
		e.mu.Unlock()
		r.Release()
	}}
}

func (e *emitCounter) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.targets...)
}

// At a low rate, a live pipeline reassembles and frames each segment on the
// capture goroutine itself: no copy, no hand-off, no shard wake-up.
func TestPipelineInlineWhenQuiet(t *testing.T) {
	e := &emitCounter{}
	st := &CaptureStats{}
	p := NewPipeline(PipelineConfig{Shards: 2, Live: true, Framing: e.config(), Stats: st,
		Reassembly: reassembly.Config{Stats: &reassembly.Stats{}}})
	t0 := time.Now()
	for i := range 20 {
		flow := flowOf(fmt.Sprintf("198.18.0.1:%d", 40000+i), "198.18.0.2:80")
		for _, seg := range segmentsOf(flow, 1000, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i), 1500, t0) {
			p.Segment(&seg, 0)
			p.Flush() // one record per read of the ring: a quiet capture
		}
	}
	// Inline work is done when Segment returns: no waiting for shards.
	if n := len(e.got()); n != 20 {
		t.Errorf("%d requests framed before Close, want 20", n)
	}
	p.Close()
	if st.Inline.Load() != st.Segments.Load() || st.Batches.Load() != 0 {
		t.Errorf("inline %d of %d segments, %d batches; want all inline, none batched",
			st.Inline.Load(), st.Segments.Load(), st.Batches.Load())
	}
}

// A busy pass goes to the shards after a few segments, and a segment never
// overtakes one of its shard that is still queued: the bytes of every
// connection arrive in order however they were split between the capture
// goroutine and the shards.
func TestPipelineInlineKeepsOrder(t *testing.T) {
	e := &emitCounter{hold: make(chan struct{}), held: make(chan struct{})}
	st := &CaptureStats{}
	p := NewPipeline(PipelineConfig{Shards: 1, Live: true, Framing: e.config(), Stats: st,
		Reassembly: reassembly.Config{Stats: &reassembly.Stats{}}})
	flow := flowOf("198.18.0.1:40000", "198.18.0.2:80")
	var stream strings.Builder
	for i := range 100 {
		fmt.Fprintf(&stream, "GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
	}
	segs := segmentsOf(flow, 1000, stream.String(), 9, time.Now())
	// The first segments of the pass run inline, until the budget of the
	// pass; the Emit of the first request holds the capture goroutine, so
	// let it go as the requests come.
	go func() {
		for range 100 {
			<-e.held
			e.hold <- struct{}{}
		}
	}()
	for i := range segs {
		p.Segment(&segs[i], 0)
	}
	p.Flush()
	p.Close()
	got := e.got()
	if len(got) != 100 {
		t.Fatalf("%d requests framed, want 100", len(got))
	}
	for i, target := range got {
		if target != fmt.Sprintf("/%d", i) {
			t.Fatalf("request %d is %s: out of order", i, target)
		}
	}
	if st.Inline.Load() != inlineSegments || st.Batches.Load() == 0 {
		t.Errorf("inline %d, batches %d; want %d inline, the rest batched", st.Inline.Load(), st.Batches.Load(), inlineSegments)
	}
}

// While a batch of a shard is queued, the next pass's segments of that shard
// are batched too, even though the pass has just begun.
func TestPipelineNoInlineBehindQueue(t *testing.T) {
	gate := make(chan struct{})
	blocked := make(chan struct{})
	var mu sync.Mutex
	framed := 0
	framing := &httpframe.Config{Stats: &httpframe.Stats{}, Emit: func(r *httpframe.Request, _ any) {
		if string(r.Target()) == "/block" {
			close(blocked)
			<-gate // the shard's goroutine stops here, with its batch unfinished
		}
		mu.Lock()
		framed++
		mu.Unlock()
		r.Release()
	}}
	st := &CaptureStats{}
	p := NewPipeline(PipelineConfig{Shards: 1, Live: true, Framing: framing, Stats: st,
		Reassembly: reassembly.Config{Stats: &reassembly.Stats{}}})
	t0 := time.Now()
	var all []reassembly.Segment
	for i := range 40 {
		target := fmt.Sprintf("/%d", i)
		if i == inlineSegments/3+1 {
			target = "/block" // the first request past the inline budget
		}
		flow := flowOf(fmt.Sprintf("198.18.0.1:%d", 40000+i), "198.18.0.2:80")
		all = append(all, segmentsOf(flow, 1000, "GET "+target+" HTTP/1.1\r\nHost: a\r\n\r\n", 1500, t0)...)
	}
	// Pass one: inline up to the budget; the rest goes to the shard, which
	// stops at /block.
	first := 3 * (inlineSegments/3 + 2)
	for i := range all[:first] {
		p.Segment(&all[i], 0)
	}
	p.Flush()
	<-blocked
	if got := st.Inline.Load(); got != inlineSegments {
		t.Fatalf("pass one: %d segments inline, want %d", got, inlineSegments)
	}
	// Pass two starts with a fresh budget, but the shard's batch is
	// unfinished: everything must queue behind it.
	for i := first; i < len(all); i++ {
		p.Segment(&all[i], 0)
	}
	p.Flush()
	if got := st.Inline.Load(); got != inlineSegments {
		t.Errorf("pass two: %d segments inline in all, want still %d", got, inlineSegments)
	}
	close(gate)
	p.Close()
	if framed != 40 {
		t.Errorf("%d requests framed, want 40", framed)
	}
}

// Nothing held, nothing armed: an idle shard has no timer to wake it. A
// hole arms the timer for its gap timeout, which the shard then gives up
// on by itself, without any further segment.
func TestPipelineDeadlines(t *testing.T) {
	e := &emitCounter{}
	st := &CaptureStats{}
	rs := &reassembly.Stats{}
	p := NewPipeline(PipelineConfig{Shards: 1, Live: true, Framing: e.config(), Stats: st,
		Reassembly: reassembly.Config{Stats: rs, GapTimeout: 20 * time.Millisecond}})
	s := p.shards[0]
	armed := func() time.Time {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.armed
	}
	if !armed().IsZero() {
		t.Fatal("a new shard has its timer armed")
	}
	flow := flowOf("198.18.0.1:40000", "198.18.0.2:80")
	segs := segmentsOf(flow, 1000, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 10, time.Now())
	// Lose the second data segment: the third waits for it.
	for i, seg := range segs {
		if i != 2 {
			p.Segment(&seg, 0)
		}
	}
	p.Flush()
	if armed().IsZero() {
		t.Fatal("a hole did not arm the timer")
	}
	deadline := time.Now().Add(5 * time.Second)
	for rs.Gaps.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rs.Gaps.Load() != 1 || st.Ticks.Load() == 0 {
		t.Fatalf("gaps %d after %d ticks: the timer did not give the hole up", rs.Gaps.Load(), st.Ticks.Load())
	}
	p.Close()
}
