package agent

import (
	"context"
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
