package httpframe

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// smallGET is a typical API request of about 200 bytes.
var smallGET = "GET /api/v1/orders/12345?expand=items HTTP/1.1\r\nHost: orders.internal:8080\r\n" +
	"User-Agent: svc-client/2.3\r\nAccept: application/json\r\nX-Request-Id: 3f2a9c1e-77b0-4a53\r\n\r\n"

func post16K() string {
	return "POST /upload HTTP/1.1\r\nHost: files.internal\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Length: 16384\r\n\r\n" + strings.Repeat("0123456789abcdef", 1024)
}

func chunkedPOST() string {
	var sb strings.Builder
	sb.WriteString("POST /stream HTTP/1.1\r\nHost: files.internal\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 16 {
		fmt.Fprintf(&sb, "%x\r\n%s\r\n", 1000, strings.Repeat("x", 1000))
	}
	sb.WriteString("0\r\n\r\n")
	return sb.String()
}

// segments cuts s as TCP would with an MSS of 1448 bytes.
func segments(s string) [][]byte {
	var out [][]byte
	for len(s) > 0 {
		n := min(len(s), 1448)
		out = append(out, []byte(s[:n]))
		s = s[n:]
	}
	return out
}

func benchParser(b *testing.B) (*Parser, *Stats) {
	st := &Stats{}
	cfg := &Config{Stats: st, Emit: release, Budget: NewBudget(64 << 20)}
	return NewParser(cfg, testClient, testServer, false), st
}

func benchSegments(b *testing.B, segs [][]byte, perOp uint64) {
	p, st := benchParser(b)
	total := 0
	for _, s := range segs {
		total += len(s)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	now := time.Now()
	for b.Loop() {
		for _, s := range segs {
			p.Data(s, now)
		}
	}
	b.StopTimer()
	if got, want := st.Emitted.Load(), uint64(b.N)*perOp; got != want {
		b.Fatalf("emitted %d requests, want %d", got, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(uint64(b.N)*perOp), "ns/req")
}

// BenchmarkSmallGET frames one ~200-byte GET per Data call, as on a
// keep-alive connection where each request is its own segment.
func BenchmarkSmallGET(b *testing.B) {
	benchSegments(b, [][]byte{[]byte(smallGET)}, 1)
}

// BenchmarkPipelinedGETs frames 16 GETs that arrive in one Data call.
func BenchmarkPipelinedGETs(b *testing.B) {
	benchSegments(b, [][]byte{[]byte(strings.Repeat(smallGET, 16))}, 16)
}

// BenchmarkPOST16KiB frames a 16 KiB POST arriving in 1448-byte segments.
func BenchmarkPOST16KiB(b *testing.B) {
	benchSegments(b, segments(post16K()), 1)
}

// BenchmarkChunkedPOST frames a chunked POST of 16 chunks of 1000 bytes
// arriving in 1448-byte segments.
func BenchmarkChunkedPOST(b *testing.B) {
	benchSegments(b, segments(chunkedPOST()), 1)
}

// BenchmarkResyncBinary scans binary data (as after a WebSocket upgrade)
// for a request line.
func BenchmarkResyncBinary(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1448)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	st := &Stats{}
	p := NewParser(&Config{Stats: st}, testClient, testServer, true)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	now := time.Now()
	for b.Loop() {
		p.Data(buf, now)
	}
}

// TestSteadyStateAllocs holds the framing of common requests to at most
// one allocation per request once the pools are warm.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	for name, segs := range map[string][][]byte{
		"small GET":        {[]byte(smallGET)},
		"pipelined GETs":   {[]byte(strings.Repeat(smallGET, 16))},
		"16 KiB POST":      segments(post16K()),
		"chunked POST":     segments(chunkedPOST()),
		"split small GET":  {[]byte(smallGET[:100]), []byte(smallGET[100:])},
		"sampled out POST": segments(post16K()),
	} {
		st := &Stats{}
		cfg := &Config{Stats: st, Emit: release}
		if name == "sampled out POST" {
			cfg.Keep = func(*Request) (any, bool) { return nil, false }
		}
		p := NewParser(cfg, testClient, testServer, false)
		now := time.Now()
		allocs := testing.AllocsPerRun(200, func() {
			for _, s := range segs {
				p.Data(s, now)
			}
		})
		if allocs > 1 {
			t.Errorf("%s: %.2f allocations per run", name, allocs)
		}
	}
}

// TestIdleParserSize keeps idle parsers small: there may be tens of
// thousands of idle keep-alive connections.
func TestIdleParserSize(t *testing.T) {
	size := unsafe.Sizeof(Parser{})
	t.Logf("Parser is %d bytes", size)
	if size > 320 {
		t.Errorf("Parser is %d bytes", size)
	}
	p := NewParser(&Config{}, testClient, testServer, false)
	p.Data([]byte(getA+postCL), time.Now())
	if p.blk != nil || p.req != nil {
		t.Errorf("a parser between requests holds a buffer")
	}
}
