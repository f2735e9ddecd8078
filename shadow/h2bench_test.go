package shadow

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// h2BenchRequests are captured HTTP/2 requests, browser-sized like
// benchRequest, one per client connection.
func h2BenchRequests() []httpmsg.Request {
	reqs := make([]httpmsg.Request, 256)
	for i := range reqs {
		f := benchFake()
		f.client = clientAddr(i)
		reqs[i] = f
	}
	return reqs
}

func newHTTP2Sender(cfg SenderConfig) (Sender, error) { return NewHTTP2(cfg) }

// BenchmarkHTTP2Sink: the HTTP/2 sender against a fast h2c shadow, as fast
// as it goes (waiting for room rather than dropping).
func BenchmarkHTTP2Sink(b *testing.B) {
	benchSenderWith(b, "h2sink", 0, SenderConfig{}, newHTTP2Sender, h2BenchRequests())
}

// BenchmarkHTTP2Delay20ms: a shadow answering after 20ms, up to
// MaxRequests streams in flight on few connections.
func BenchmarkHTTP2Delay20ms(b *testing.B) {
	benchSenderWith(b, "h2delay=20ms", 0, SenderConfig{}, newHTTP2Sender, h2BenchRequests())
}

// BenchmarkHTTP2Paced is the live case: 1,000 and 5,000 requests a second
// to a fast shadow and to one answering after 20ms.
func BenchmarkHTTP2Paced(b *testing.B) {
	for _, mode := range []string{"h2sink", "h2delay=20ms"} {
		for _, iv := range []time.Duration{time.Millisecond, 200 * time.Microsecond} {
			b.Run(mode+"/every="+iv.String(), func(b *testing.B) {
				benchSenderWith(b, mode, iv, SenderConfig{}, newHTTP2Sender, h2BenchRequests())
			})
		}
	}
}

// BenchmarkXNetClientConn is the alternative this sender was measured
// against: x/net's http2.Transport.NewClientConn on a connection to the
// same sink, one RoundTrip per request in its own goroutine (fire and
// forget), the request rebuilt as an http.Request from the same fields.
// It cannot send the fields in order, and adds its own; it is here for the
// cost only.
func BenchmarkXNetClientConn(b *testing.B) {
	addr := strings.TrimPrefix(startBenchShadow(b, "h2sink"), "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	tr := &http2.Transport{AllowHTTP: true}
	cc, err := tr.NewClientConn(nc)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	w, _ := NewRewriter(RewriteConfig{})
	fake := benchFake()
	var done, inFlight atomic.Int64
	sem := make(chan struct{}, 200)
	send := func() {
		fields := w.Fields(nil, fake)
		req, _ := http.NewRequestWithContext(context.Background(), string(fields[0].Value), "http://"+string(fields[2].Value)+string(fields[3].Value), nil)
		for _, f := range fields[4:] {
			req.Header.Add(string(f.Name), string(f.Value))
		}
		sem <- struct{}{}
		inFlight.Add(1)
		go func() {
			defer func() { <-sem; inFlight.Add(-1); done.Add(1) }()
			res, err := cc.RoundTrip(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}()
	}
	for range 200 {
		send()
	}
	for done.Load() < 200 {
		time.Sleep(100 * time.Microsecond)
	}
	done.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	u0 := readUsage()
	for i := 0; i < b.N; i++ {
		send()
	}
	for done.Load() < int64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	u1 := readUsage()
	b.StopTimer()
	b.ReportMetric(float64(u1.cpu-u0.cpu)/float64(b.N)/1000, "cpu-µs/op")
	b.ReportMetric(float64(u1.switches-u0.switches)/float64(b.N), "switches/op")
	b.ReportMetric(1, "conns-opened")
}
