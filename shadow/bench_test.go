package shadow

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
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

func BenchmarkAppendRequest(b *testing.B) {
	r := parseRequest(b, benchRequest)
	w, _ := NewRewriter(RewriteConfig{})
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(r.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		buf = w.AppendRequest(buf[:0], r)
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

// sink is a raw HTTP server for the end-to-end benchmark: it answers every
// request head (the benchmark sends GETs without bodies) with a fixed 200,
// batching the answers to one read into one write.
func sink(c net.Conn) {
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

func BenchmarkSender(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			srv := newRawServer(b, func(c net.Conn) { sink(c); io.Copy(io.Discard, c) })
			s, err := NewSender(SenderConfig{URL: srv.URL(), Workers: workers})
			if err != nil {
				b.Fatal(err)
			}
			// One request per captured connection, reused: the Sender only
			// reads it, and releasing a hand-made request does nothing.
			reqs := make([]*httpframe.Request, 64)
			for i := range reqs {
				reqs[i] = parseRequest(b, benchRequest)
				reqs[i].ClientAddr = clientAddr(i)
			}
			s.Start()
			st := s.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				// The benchmark wants throughput, not drops: when a queue
				// is full, yield and try again.
				for !s.Send(reqs[i%len(reqs)]) {
					runtime.Gosched()
				}
			}
			for st.Mirrored.Load()+failures(st) < st.Queued.Load() {
				runtime.Gosched()
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(st.Dropped[DropQueueFull].Load())/float64(b.N), "retries/op")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				b.Fatal(err)
			}
			if f := failures(st); f != 0 {
				b.Fatalf("%d failures: %v", f, st.Snapshot())
			}
		})
	}
}
