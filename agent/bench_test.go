package agent

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/reassembly"
)

// BenchmarkPipeline measures the user-space path of one small request from
// a decoded segment to a framed request: batching by flow, hand-off to a
// shard, reassembly and framing. Sending is left out (see shadow's
// BenchmarkSender).
func BenchmarkPipeline(b *testing.B) {
	framing := &httpframe.Config{Stats: &httpframe.Stats{}, Emit: func(r *httpframe.Request, _ any) { r.Release() }}
	p := NewPipeline(PipelineConfig{Shards: 2, Block: true, Framing: framing,
		Reassembly: reassembly.Config{Stats: &reassembly.Stats{}}})
	const flows = 256
	req := []byte("GET /get?id=12345 HTTP/1.1\r\nHost: shadowing.example\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n")
	segs := make([]reassembly.Segment, flows)
	for i := range segs {
		segs[i] = reassembly.Segment{
			Flow: reassembly.Flow{
				Src: netip.MustParseAddrPort(fmt.Sprintf("198.18.0.1:%d", 10000+i)),
				Dst: netip.MustParseAddrPort("198.18.0.2:8080"),
			},
			Seq: 1, Flags: reassembly.ACK | reassembly.PSH, Payload: req, Time: time.Now(),
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	b.ResetTimer()
	for i := range b.N {
		s := &segs[i%flows]
		p.Segment(s, 0)
		s.Seq += uint32(len(req))
		if i%64 == 63 {
			p.Flush()
		}
	}
	p.Close()
	b.StopTimer()
	if got := framing.Stats.Emitted.Load(); got != uint64(b.N) {
		b.Fatalf("emitted %d of %d", got, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/req")
}
