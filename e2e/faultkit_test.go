package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// The helpers of the fault tests: shadows that misbehave in one precise
// way, a bounded burst of primary requests, and the ledger that must
// account for every one of them.

// faultShadow is a raw TCP server in place of the shadow, on the shadow's
// address, whose behaviour per connection is handle. It counts the requests
// its handlers report and closes every connection it accepted when the test
// ends.
type faultShadow struct {
	ln       net.Listener
	requests atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

// replaceShadow stops the recording shadow of e and, when handle is not
// nil, listens on the shadow's address with handle instead.
func replaceShadow(t *testing.T, e *env, handle func(fs *faultShadow, c net.Conn)) *faultShadow {
	t.Helper()
	e.shadowServer.Close()
	fs := &faultShadow{}
	if handle == nil {
		return fs // nothing listens: connections are refused
	}
	// The recording shadow's Serve closes its listener on its own
	// goroutine: the address may take a moment to be free.
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if ln, err = e.topo.Shadow.Listen("tcp", sandbox.ShadowIPv4+":8000"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	fs.ln = ln
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		fs.mu.Lock()
		for _, c := range fs.conns {
			c.Close()
		}
		fs.mu.Unlock()
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
			fs.mu.Lock()
			fs.conns = append(fs.conns, c)
			fs.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(fs, c)
			}()
		}
	}()
	return fs
}

// readRequests reads requests (bodies included) from c and calls fn for
// each, until c fails.
func (fs *faultShadow) readRequests(c net.Conn, fn func(*http.Request)) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		fs.requests.Add(1)
		fn(req)
	}
}

// silentShadow accepts, reads whatever comes, and never answers.
func silentShadow(fs *faultShadow, c net.Conn) {
	fs.readRequests(c, func(*http.Request) {})
}

// slowShadow answers every request d after it arrived. It reads pipelined
// requests as they come, so that each answer takes d and not d times the
// requests ahead of it, and writes the answers in order.
func slowShadow(d time.Duration) func(*faultShadow, net.Conn) {
	return func(fs *faultShadow, c net.Conn) {
		due := make(chan time.Time, 4096)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for at := range due {
				select {
				case <-time.After(time.Until(at)):
				case <-stop: // the connection is gone
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
					return
				}
			}
		}()
		fs.readRequests(c, func(*http.Request) {
			select {
			case due <- time.Now().Add(d):
			default: // more than 4096 waiting: not answered, as a stuck server
			}
		})
		close(stop)
		close(due)
		c.Close()
		<-done
	}
}

// resettingShadow reads one request, writes part of a response, then
// resets the connection (SO_LINGER 0).
func resettingShadow(fs *faultShadow, c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	io.Copy(io.Discard, req.Body)
	fs.requests.Add(1)
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\nonly the first bytes of")
	time.Sleep(20 * time.Millisecond) // let the partial answer arrive first
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// burst sends n requests to the primary from workers concurrent clients,
// each with its own keep-alive connection (or a new connection per request
// with keepAlive false), and requires a 200 for every one. body(i) gives
// the POST body of request i, or nil for a GET. It returns how long the
// burst took.
func burst(t *testing.T, e *env, tag string, n, workers int, keepAlive bool, body func(i int) []byte) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: e.topo.Client.DialContext, MaxIdleConnsPerHost: 1, DisableKeepAlives: !keepAlive}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				url := fmt.Sprintf("http://%s:8080/anything/%s/%d", sandbox.GatewayIPv4, tag, i)
				var req *http.Request
				if b := body(i); b != nil {
					req, _ = http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
				} else {
					req, _ = http.NewRequestWithContext(ctx, "GET", url, nil)
				}
				req.Host = "shadowing.example"
				resp, err := c.Do(req)
				if err != nil {
					errs <- fmt.Errorf("primary request %s/%d: %w", tag, i, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("primary request %s/%d: status %d", tag, i, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return time.Since(start)
}

func noBody(int) []byte { return nil }

// ledger is where the requests the agent saw ended, read from /metrics.
type ledger struct {
	framed, mirrored, dropped, failed, skipped float64
	reasons                                    map[string]float64 // "failed/timeout", "skipped/incomplete", ...
}

// accounted is the number of requests with a known end.
func (l ledger) accounted() float64 { return l.mirrored + l.dropped + l.failed + l.skipped }

func (l ledger) String() string {
	keys := slices.Sorted(maps.Keys(l.reasons))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, l.reasons[k]))
	}
	return fmt.Sprintf("framed=%v mirrored=%v dropped=%v failed=%v skipped=%v [%s]",
		l.framed, l.mirrored, l.dropped, l.failed, l.skipped, strings.Join(parts, " "))
}

// readLedger reads the request counters of the agent's /metrics.
func readLedger(m map[string]float64) ledger {
	l := ledger{reasons: map[string]float64{}}
	l.framed = m[`shadowtee_requests_total{result="framed"}`]
	l.mirrored = m[`shadowtee_requests_total{result="mirrored"}`]
	for k, v := range m {
		var kind string
		switch {
		case strings.HasPrefix(k, "shadowtee_requests_dropped_total{"):
			kind, l.dropped = "dropped", l.dropped+v
		case strings.HasPrefix(k, "shadowtee_requests_failed_total{"):
			kind, l.failed = "failed", l.failed+v
		case strings.HasPrefix(k, "shadowtee_requests_skipped_total{"):
			kind, l.skipped = "skipped", l.skipped+v
		default:
			continue
		}
		if v > 0 {
			_, r, _ := strings.Cut(k, `reason="`)
			r, _, _ = strings.Cut(r, `"`)
			l.reasons[kind+"/"+r] += v
		}
	}
	return l
}

// waitAccounted waits until the agent's metrics give an end to want
// requests, and fails the test if they give more, or not all in time.
func waitAccounted(t *testing.T, e *env, want int, timeout time.Duration) ledger {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := readLedger(e.metrics())
		if l.accounted() > float64(want) || l.framed > float64(want) {
			t.Fatalf("metrics account for more requests than the %d sent: %v", want, l)
		}
		if l.accounted() == float64(want) && l.framed == float64(want) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the metrics account for %v of %d requests: %v", timeout, l.accounted(), want, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onlyReasons fails the test when the ledger names a reason outside allowed.
func onlyReasons(t *testing.T, l ledger, allowed ...string) {
	t.Helper()
	for r, v := range l.reasons {
		if v > 0 && !slices.Contains(allowed, r) {
			t.Errorf("unexpected %s = %v (allowed: %v)", r, v, allowed)
		}
	}
}

// stopWithSummary stops the agent with SIGTERM, requires exit status 0 and
// returns the JSON summary it printed (the agent must run with
// --summary json).
func stopWithSummary(t *testing.T, e *env) agent.Summary {
	t.Helper()
	select {
	case <-e.agent.Exited():
		t.Fatalf("the agent died before SIGTERM:\n%s", e.stderr.String())
	default:
	}
	if code := e.stopAgent(); code != 0 {
		t.Fatalf("agent exited with %d\n%s", code, e.stderr.String())
	}
	out := e.stdout.String()
	i := strings.IndexByte(out, '{')
	if i < 0 {
		t.Fatalf("no JSON summary on stdout: %q", out)
	}
	var sum agent.Summary
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	return sum
}

// checkSummary requires the exit summary to tell what the metrics told:
// every framed request has exactly one end.
func checkSummary(t *testing.T, sum agent.Summary, l ledger) {
	t.Helper()
	q := sum.Requests
	total := q.Mirrored + sum2(q.Dropped) + sum2(q.Failed) + sum2(q.Skipped)
	if float64(q.Framed) != l.framed || float64(total) != l.accounted() || float64(q.Mirrored) != l.mirrored {
		t.Errorf("summary %+v disagrees with the metrics %v", q, l)
	}
	if q.Failed["shutdown"] > 0 {
		t.Errorf("%d mirrors were still in flight at exit although all had ended", q.Failed["shutdown"])
	}
}

func sum2(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// checkRSS requires the agent's RSS to stay within generous bounds of
// before (KiB).
func checkRSS(t *testing.T, e *env, before int) {
	t.Helper()
	if rss := e.rssKiB(); rss > before+48<<10 || rss > 192<<10 {
		t.Errorf("agent RSS grew from %d KiB to %d KiB", before, rss)
	}
}

// timeoutCtx returns a context that ends after d or with the test.
func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
