package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/reassembly"
)

// fakeCapture stands in for the kernel: the test hands it segments, which
// it gives the agent's sink as the ring reader would.
type fakeCapture struct {
	sink   bpf.Sink
	failed chan struct{}

	mu      sync.Mutex
	filters [][]uint16
	stopped bool
	closed  bool
}

func (f *fakeCapture) Interfaces() []capture.Interface {
	return []capture.Interface{{Name: "fake0", Mode: "tcx"}}
}

func (f *fakeCapture) SetFilter(ports []uint16, _ []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, slices.Clone(ports))
	return nil
}

func (f *fakeCapture) Stats() (capture.Stats, error) { return capture.Stats{}, nil }
func (f *fakeCapture) Failed() <-chan struct{}       { return f.failed }
func (f *fakeCapture) Err() error                    { return nil }

func (f *fakeCapture) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
}

func (f *fakeCapture) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// push gives the sink one request's segments, then flushes, as one read of
// the ring does.
func (f *fakeCapture) push(client string, port uint16, raw string) {
	flow := reassembly.Flow{Src: netip.MustParseAddrPort(client), Dst: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), port)}
	for _, seg := range segmentsOf(flow, 1000, raw, 1400, time.Now()) {
		f.sink.Segment(&seg, 1)
	}
	f.sink.Flush()
}

func (f *fakeCapture) lastFilter() []uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.filters) == 0 {
		return nil
	}
	return f.filters[len(f.filters)-1]
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The agent's whole life without root: it becomes ready, mirrors, reloads
// its rules (the kernel filter follows), and on stop detaches, drains the
// mirrors in flight and removes its ready file.
func TestRunLifecycle(t *testing.T) {
	release := make(chan struct{})
	slow := recorder.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release // answered only once the agent is stopping
		}
	}))
	srv := httptest.NewServer(slow)
	defer srv.Close()

	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	write := func(port int) {
		t.Helper()
		tmp := rules + ".tmp"
		body := fmt.Sprintf("rules:\n  - {name: r%d, match: {ports: [%d]}, shadow: {url: '%s'}}\n", port, port, srv.URL)
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, rules); err != nil {
			t.Fatal(err)
		}
	}
	write(80)
	readyFile := filepath.Join(dir, "ready")

	fake := &fakeCapture{failed: make(chan struct{})}
	cfg := Config{
		RulesPath:    rules,
		ReadyFile:    readyFile,
		MetricsAddr:  "127.0.0.1:0",
		DrainTimeout: 10 * time.Second,
		Capture:      capture.Config{Interfaces: []string{"fake0"}},
		Logger:       slog.New(slog.DiscardHandler),
		StartCapture: func(_ capture.Config, sink bpf.Sink, _ *slog.Logger) (Capture, error) {
			fake.sink = sink
			return fake, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		sum *Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := Run(ctx, cfg)
		done <- result{sum, err}
	}()

	// Ready: the ready file names the interface and the metrics address,
	// and /readyz says so.
	waitUntil(t, "the ready file", func() bool { _, err := os.Stat(readyFile); return err == nil })
	var ready Ready
	b, err := os.ReadFile(readyFile)
	if err != nil || json.Unmarshal(b, &ready) != nil || len(ready.Interfaces) != 1 || ready.MetricsAddr == "" {
		t.Fatalf("ready file %s: %v", b, err)
	}
	resp, err := http.Get("http://" + ready.MetricsAddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// Mirrors: a request to port 80.
	fake.push("198.18.0.1:40000", 80, "GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\n")
	waitUntil(t, "the mirror of /a", func() bool { return slow.Len() == 1 })
	if got := slow.Requests()[0]; got.Target != "/a" || got.Host != "shop.example-shadow" {
		t.Errorf("mirrored %s with Host %s", got.Target, got.Host)
	}

	// Reload: the rule moves to port 81, and so does the kernel filter.
	write(81)
	waitUntil(t, "the reload", func() bool { return slices.Equal(fake.lastFilter(), []uint16{81}) })
	fake.push("198.18.0.1:40001", 80, "GET /no-rule-now HTTP/1.1\r\nHost: shop.example\r\n\r\n")
	fake.push("198.18.0.1:40002", 81, "GET /slow HTTP/1.1\r\nHost: shop.example\r\n\r\n")
	waitUntil(t, "the mirror of /slow to arrive", func() bool { return slow.Len() == 2 })

	// Stop while /slow is in flight: the drain waits for its answer.
	cancel()
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	s := res.sum
	if s.Requests.Framed != 3 || s.Requests.Mirrored != 2 || s.Requests.Skipped["no_rule"] != 1 {
		t.Errorf("summary: framed %d mirrored %d skipped %v", s.Requests.Framed, s.Requests.Mirrored, s.Requests.Skipped)
	}
	if s.Reloads == nil || s.Reloads.OK != 1 {
		t.Errorf("reloads %+v, want one", s.Reloads)
	}
	if !fake.stopped || !fake.closed {
		t.Error("the capture was not stopped and closed")
	}
	if _, err := os.Stat(readyFile); !os.IsNotExist(err) {
		t.Errorf("the ready file is still there: %v", err)
	}
}

// A capture that fails on its own ends Run with its error, and a summary.
func TestRunCaptureFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	fake := &fakeCapture{failed: make(chan struct{})}
	close(fake.failed)
	rules := &config.File{Rules: []config.Rule{{Name: "r", Percentage: 100, Match: config.Match{Ports: []uint16{80}},
		Shadow: config.Shadow{URL: srv.URL}}}}
	sum, err := Run(context.Background(), Config{
		Rules:   rules,
		Capture: capture.Config{Interfaces: []string{"fake0"}},
		Logger:  slog.New(slog.DiscardHandler),
		StartCapture: func(_ capture.Config, sink bpf.Sink, _ *slog.Logger) (Capture, error) {
			fake.sink = sink
			return fake, nil
		},
	})
	if err == nil || sum == nil {
		t.Fatalf("Run = %v, %v; want the capture's failure and a summary", sum, err)
	}
}
