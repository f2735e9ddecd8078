package shadow

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// benchRequest is a browser-sized GET with an existing X-Forwarded-For and
// hop-by-hop fields, so that every rewrite rule runs.
const benchRequest = "GET /api/v1/products/12345?currency=EUR&lang=en HTTP/1.1\r\n" +
	"Host: shop.example.com:8080\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"X-Request-Id: 0ae53bc3-2644-44f2-8603-158d2ccf9f78\r\n" +
	"X-Forwarded-For: 203.0.113.7\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n" +
	"\r\n"

func BenchmarkAppendHTTP1(b *testing.B) {
	r := parseRequest(b, benchRequest)
	w, _ := NewRewriter(RewriteConfig{})
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(r.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		buf = w.AppendHTTP1(buf[:0], r)
	}
}

func benchFake() *fakeReq {
	return newFake("GET", "shop.example.com:8080", "/api/v1/products/12345?currency=EUR&lang=en",
		[2]string{"user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
		[2]string{"accept", "application/json, text/plain, */*"},
		[2]string{"x-request-id", "0ae53bc3-2644-44f2-8603-158d2ccf9f78"},
		[2]string{"x-forwarded-for", "203.0.113.7"},
		[2]string{"cookie", "session=8f14e45fceea167a5a36dedd4bea2543"}, [2]string{"cookie", "theme=dark"})
}

func BenchmarkEncodeHTTP1(b *testing.B) {
	r := benchFake()
	w, _ := NewRewriter(RewriteConfig{})
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = w.EncodeHTTP1(buf[:0], r)
	}
}

func BenchmarkFields(b *testing.B) {
	w, _ := NewRewriter(RewriteConfig{})
	for name, r := range map[string]httpmsg.Request{"http1": parseRequest(b, benchRequest), "http2": benchFake()} {
		b.Run(name, func(b *testing.B) {
			dst := make([]httpmsg.Field, 0, 32)
			b.ReportAllocs()
			for b.Loop() {
				dst = w.Fields(dst[:0], r)
			}
		})
	}
}

func BenchmarkSamplerKeep(b *testing.B) {
	r := parseRequest(b, benchRequest)
	for _, key := range []string{"", "header:x-request-id"} {
		s, _ := NewSampler(12.5, key)
		b.Run("key="+key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Keep(r)
			}
		})
	}
}

// TestMain runs a benchmark shadow instead of the tests when asked to by
// the benchmarks below, so that the shadow's CPU is not the sender's.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SHADOWTEE_BENCH_SHADOW"); mode != "" {
		benchShadow(mode)
		return
	}
	os.Exit(m.Run())
}

// benchShadow serves on loopback until its standard input closes: "sink"
// answers every request head at once, batching the answers to one read
// into one write; "delay=D" answers each after D, one at a time per
// connection (the sender does not pipeline).
//
// "h2sink" and "h2delay=D" are the same over h2c, served by net/http's own
// HTTP/2 server (250 streams per connection).
func benchShadow(mode string) {
	var delay time.Duration
	h2 := strings.HasPrefix(mode, "h2")
	if d, ok := strings.CutPrefix(strings.TrimPrefix(mode, "h2"), "delay="); ok {
		delay, _ = time.ParseDuration(d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if delay > 0 {
				time.Sleep(delay)
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok")
		})}
		srv.Serve(ln)
		return
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sink(c, delay)
		}()
	}
}

// sink answers every request head (the benchmarks send GETs without
// bodies) with a fixed 200.
func sink(c net.Conn, delay time.Duration) {
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
	const end = "\r\n\r\n"
	in := make([]byte, 64<<10)
	out := make([]byte, 0, 64<<10)
	matched := 0
	for {
		n, err := c.Read(in)
		out = out[:0]
		for _, ch := range in[:n] {
			switch {
			case ch == end[matched]:
				matched++
			case ch == '\r':
				matched = 1
			default:
				matched = 0
			}
			if matched == len(end) {
				if delay > 0 {
					time.Sleep(delay)
				}
				out = append(out, resp...)
				matched = 0
			}
		}
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// startBenchShadow runs benchShadow in a child process and returns its URL.
func startBenchShadow(b *testing.B, mode string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHADOWTEE_BENCH_SHADOW="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return "http://" + strings.TrimSpace(addr)
}

// usage is the CPU time and context switches of this process so far.
type usage struct {
	cpu      time.Duration
	switches int64
}

func readUsage() usage {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return usage{
		cpu:      time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		switches: ru.Nvcsw + ru.Nivcsw,
	}
}

// benchSender sends b.N requests to a shadow, every interval (0: as fast
// as the sender takes them, waiting for room rather than dropping), and
// reports the sender's CPU time and context switches per request, the
// throughput, the connections opened and the peak of requests in flight.
func benchSender(b *testing.B, mode string, interval time.Duration, cfg SenderConfig) {
	// One request per captured connection, reused: the sender only reads
	// it, and releasing a hand-made request does nothing.
	reqs := make([]httpmsg.Request, 256)
	for i := range reqs {
		r := parseRequest(b, benchRequest)
		r.ClientAddr = clientAddr(i)
		reqs[i] = r
	}
	benchSenderWith(b, mode, interval, cfg, func(cfg SenderConfig) (Sender, error) { return NewHTTP1(cfg) }, reqs)
}

// benchSenderWith is benchSender for any sender and requests.
func benchSenderWith(b *testing.B, mode string, interval time.Duration, cfg SenderConfig,
	newSender func(SenderConfig) (Sender, error), reqs []httpmsg.Request) {
	cfg.URL = startBenchShadow(b, mode)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if interval == 0 {
		cfg.Wait = ctx
	}
	s, err := newSender(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Warm up: connections, buffers, pools, at the pace of the run (so that
	// the pool has the size the run needs).
	st := s.Stats()
	for i := range 200 {
		if interval > 0 {
			time.Sleep(interval)
		}
		s.Send(reqs[i%len(reqs)], nil)
	}
	drain(b, st)
	opened0, mirrored0 := st.ConnectionsOpened.Load(), st.Mirrored.Load()
	st.PeakInFlight.Store(0) // the peak of the run, not of the warm-up burst
	b.ReportAllocs()
	b.ResetTimer()
	u0, start := readUsage(), time.Now()
	next := start
	for i := 0; i < b.N; i++ {
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
		if !s.Send(reqs[i%len(reqs)], nil) {
			b.Fatalf("dropped: %v", st.Snapshot())
		}
	}
	drain(b, st)
	elapsed, u1 := time.Since(start), readUsage()
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(u1.cpu-u0.cpu)/n/1000, "cpu-µs/op")
	b.ReportMetric(float64(u1.switches-u0.switches)/n, "switches/op")
	b.ReportMetric(n/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(st.ConnectionsOpened.Load()-opened0), "conns-opened")
	b.ReportMetric(float64(st.PeakInFlight.Load()), "peak-in-flight")
	b.ReportMetric(float64(st.Latency.Quantile(0.5))/1e6, "lat-p50-ms")
	b.ReportMetric(float64(st.Latency.Quantile(0.99))/1e6, "lat-p99-ms")
	b.ReportMetric(100*float64(st.Mirrored.Load()-mirrored0)/n, "mirrored-%")
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer closeCancel()
	if err := s.Close(closeCtx); err != nil {
		b.Fatal(err)
	}
	if f := failures(st); f != 0 || st.Mirrored.Load()-mirrored0 != uint64(b.N) {
		b.Fatalf("%d failures: %v", f, st.Snapshot())
	}
}

// drain waits, a minute at most, until every queued request has ended.
func drain(b *testing.B, st *Stats) {
	for deadline := time.Now().Add(time.Minute); st.Mirrored.Load()+failures(st) < st.Queued.Load(); {
		if time.Now().After(deadline) {
			b.Fatalf("not drained: %v", st.Snapshot())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkSenderSink: a fast shadow, as fast as the sender goes.
func BenchmarkSenderSink(b *testing.B) {
	benchSender(b, "sink", 0, SenderConfig{})
}

// BenchmarkSenderDelay20ms: a shadow answering after 20ms, as fast as the
// sender goes: up to MaxRequests in flight.
func BenchmarkSenderDelay20ms(b *testing.B) {
	benchSender(b, "delay=20ms", 0, SenderConfig{})
}

// BenchmarkSenderPaced is the live case: 1,000 requests a second, to a
// fast shadow and to ones answering after 20ms, 50ms and 200ms.
func BenchmarkSenderPaced(b *testing.B) {
	for _, mode := range []string{"sink", "delay=20ms", "delay=50ms", "delay=200ms"} {
		b.Run(mode, func(b *testing.B) {
			benchSender(b, mode, time.Millisecond, SenderConfig{})
		})
	}
}

// BenchmarkSenderPipelined: the old shape, four connections with requests
// pipelined on each, against the 20ms shadow, for comparison.
func BenchmarkSenderPipelined(b *testing.B) {
	benchSender(b, "delay=20ms", 0, SenderConfig{MaxConnections: 4, Pipeline: 64})
}

// BenchmarkPacingBaseline is the pacing loop of BenchmarkSenderPaced
// without the sender: what it costs itself, to subtract.
func BenchmarkPacingBaseline(b *testing.B) {
	u0, start := readUsage(), time.Now()
	next := start
	for i := 0; i < b.N; i++ {
		next = next.Add(time.Millisecond)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	u1 := readUsage()
	b.ReportMetric(float64(u1.cpu-u0.cpu)/float64(b.N)/1000, "cpu-µs/op")
	b.ReportMetric(float64(u1.switches-u0.switches)/float64(b.N), "switches/op")
}

// BenchmarkFloorPaced is the least any sender can do per request at 1,000
// a second: one write on an open connection and one reader goroutine woken
// by the answer, with the pacing of BenchmarkSenderPaced. The sender's
// cost per request is its cpu-µs/op above this one.
func BenchmarkFloorPaced(b *testing.B) {
	addr := strings.TrimPrefix(startBenchShadow(b, "sink"), "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w, _ := NewRewriter(RewriteConfig{})
	req := w.AppendHTTP1(nil, parseRequest(b, benchRequest))
	var answers atomic.Int64
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			answers.Add(int64(strings.Count(string(buf[:n]), "HTTP/1.1")))
			if err != nil {
				return
			}
		}
	}()
	b.ResetTimer()
	u0, start := readUsage(), time.Now()
	next := start
	for i := 0; i < b.N; i++ {
		next = next.Add(time.Millisecond)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		c.Write(req)
	}
	for deadline := time.Now().Add(time.Minute); answers.Load() < int64(b.N); {
		if time.Now().After(deadline) {
			b.Fatalf("%d answers of %d", answers.Load(), b.N)
		}
		time.Sleep(100 * time.Microsecond)
	}
	u1 := readUsage()
	b.ReportMetric(float64(u1.cpu-u0.cpu)/float64(b.N)/1000, "cpu-µs/op")
	b.ReportMetric(float64(u1.switches-u0.switches)/float64(b.N), "switches/op")
}
