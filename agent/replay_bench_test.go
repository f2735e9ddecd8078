package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/internal/sink"
	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/reassembly"
)

// Shape of the benchmark capture: benchConns keep-alive connections, each
// sending benchRequests small GETs, interleaved as concurrent clients make
// them, every request answered by a small response.
const (
	benchConns    = 256
	benchRequests = 40
)

// writeBenchCapture writes the benchmark capture (both directions, with
// handshakes and FINs, as a capture on the server's host holds them) and
// returns its size and its number of requests.
func writeBenchCapture(b *testing.B, path string) (size int64, requests int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := pcapfile.NewWriter(bw)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.AddInterface("eth0"); err != nil {
		b.Fatal(err)
	}
	server := netip.MustParseAddrPort("198.18.0.2:8080")
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	type conn struct {
		cs         reassembly.Flow
		cseq, sseq uint32
	}
	conns := make([]conn, benchConns)
	put := func(flow reassembly.Flow, seq, ack uint32, flags reassembly.Flags, p []byte) {
		now = now.Add(10 * time.Microsecond)
		seg := reassembly.Segment{Flow: flow, Seq: seq, Ack: ack, Flags: flags, Payload: p, Time: now}
		if err := w.WriteSegment(0, &seg); err != nil {
			b.Fatal(err)
		}
	}
	for i := range conns {
		c := &conns[i]
		c.cs = reassembly.Flow{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), uint16(40000+i)), Dst: server}
		c.cseq, c.sseq = uint32(i)*1_000_003, uint32(i)*7_000_001
		put(c.cs, c.cseq, 0, reassembly.SYN, nil)
		put(c.cs.Reverse(), c.sseq, c.cseq+1, reassembly.SYN|reassembly.ACK, nil)
		c.cseq, c.sseq = c.cseq+1, c.sseq+1
		put(c.cs, c.cseq, c.sseq, reassembly.ACK, nil)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"ok\"}\n")
	for n := range benchRequests {
		for i := range conns {
			c := &conns[i]
			req := fmt.Appendf(nil, "GET /api/v1/items/%d?conn=%d HTTP/1.1\r\nHost: shadowing.example\r\nUser-Agent: bench/1.0\r\n"+
				"Accept: application/json\r\nX-Request-Id: %08x%08x\r\n\r\n", n, i, i, n)
			put(c.cs, c.cseq, c.sseq, reassembly.ACK|reassembly.PSH, req)
			c.cseq += uint32(len(req))
			put(c.cs.Reverse(), c.sseq, c.cseq, reassembly.ACK|reassembly.PSH, resp)
			c.sseq += uint32(len(resp))
			requests++
		}
	}
	for i := range conns {
		c := &conns[i]
		put(c.cs, c.cseq, c.sseq, reassembly.FIN|reassembly.ACK, nil)
		put(c.cs.Reverse(), c.sseq, c.cseq+1, reassembly.FIN|reassembly.ACK, nil)
		put(c.cs, c.cseq+1, c.sseq+1, reassembly.ACK, nil)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	return w.BytesWritten(), requests
}

// benchRules is one rule that mirrors everything to url.
func benchRules(url string) *config.File {
	return &config.File{Rules: []config.Rule{{Name: "default", Percentage: 100, HostSuffix: true,
		Shadow:  config.Shadow{URL: url, Timeout: 15 * time.Second, Queue: 64 << 20},
		Headers: config.Headers{XForwardedFor: true}}}}
}

// BenchmarkReplayDryRun measures `replay --dry-run`: reading the capture,
// keeping the client side, reassembly, framing, and one JSON line with a
// SHA-256 per request. One pass over the file is one iteration; MB/s is of
// the capture file.
func BenchmarkReplayDryRun(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.pcapng")
	size, requests := writeBenchCapture(b, path)
	cfg := ReplayConfig{Path: path, DryRun: io.Discard, Rules: benchRules("http://shadow.invalid"),
		Limits: cliLimits(), Logger: slog.New(slog.DiscardHandler)}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sum, err := Replay(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if sum.Requests.Framed != uint64(requests) {
			b.Fatalf("framed %d of %d", sum.Requests.Framed, requests)
		}
	}
	b.ReportMetric(float64(requests)*float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkReplayMax measures `replay --speed max` to a local shadow that
// answers every request at once: the whole path from the file to the
// shadow's answers. The shadow runs in the same process, on the same CPUs.
func BenchmarkReplayMax(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.pcapng")
	size, requests := writeBenchCapture(b, path)
	addr := startBenchSink(b)
	cfg := ReplayConfig{Path: path, Rules: benchRules("http://" + addr), Limits: cliLimits(),
		Logger: slog.New(slog.DiscardHandler)}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sum, err := Replay(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if sum.Requests.Mirrored != uint64(requests) {
			b.Fatalf("mirrored %d of %d: %+v", sum.Requests.Mirrored, requests, sum.Requests)
		}
	}
	b.ReportMetric(float64(requests)*float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkReplayFile replays the capture named by SHADOWTEE_BENCH_PCAP
// (it is skipped without), in dry-run and at --speed max to a local sink,
// to find what a large capture costs. With SHADOWTEE_BENCH_HEAP=PREFIX it
// writes PREFIX-MODE.pprof, a heap profile of what is in use once 90 % of
// the file has been read (after two collections, so that pooled buffers
// that nothing uses are not counted): the profile that the end of a
// benchmark, when everything has been let go, cannot give.
func BenchmarkReplayFile(b *testing.B) {
	path := os.Getenv("SHADOWTEE_BENCH_PCAP")
	if path == "" {
		b.Skip("set SHADOWTEE_BENCH_PCAP to a capture file")
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"dry-run", "max"} {
		b.Run(mode, func(b *testing.B) {
			cfg := ReplayConfig{Path: path, Limits: cliLimits(), Logger: slog.New(slog.DiscardHandler)}
			if mode == "dry-run" {
				cfg.DryRun, cfg.Rules = io.Discard, benchRules("http://shadow.invalid")
			} else {
				cfg.Rules = benchRules("http://" + startBenchSink(b))
			}
			if prefix := os.Getenv("SHADOWTEE_BENCH_HEAP"); prefix != "" {
				cfg.Progress, cfg.ProgressEvery = heapProfileAt(b, prefix+"-"+mode+".pprof", 0.9), 20*time.Millisecond
			}
			b.SetBytes(fi.Size())
			b.ReportAllocs()
			b.ResetTimer()
			var requests uint64
			for range b.N {
				sum, err := Replay(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				requests += sum.Requests.Framed
			}
			b.ReportMetric(float64(requests)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// heapProfileAt returns a Progress function that writes a heap profile to
// path, once, when the share done of the file has been read.
func heapProfileAt(b *testing.B, path string, done float64) func(Progress) {
	var once sync.Once
	return func(p Progress) {
		if p.Size <= 0 || float64(p.Bytes) < done*float64(p.Size) {
			return
		}
		once.Do(func() {
			runtime.GC()
			runtime.GC()
			f, err := os.Create(path)
			if err != nil {
				b.Error(err)
				return
			}
			defer f.Close()
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Error(err)
			}
		})
	}
}

// startBenchSink serves HTTP/1.1 on a loopback port until the benchmark
// ends, answering "200 OK, no body" to every request. It frames requests
// itself (Content-Length and chunked bodies) and answers pipelined requests
// in order, flushing once per read, so that it costs little next to what
// is measured.
func startBenchSink(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sink.Answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}
