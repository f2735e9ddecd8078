package agent

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/compare"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/h2frame"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
)

// The endpoints answer as the probes and Prometheus expect; the profiler
// only when asked for.
func TestMetricsEndpoints(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		st := &stats{start: time.Now(), mirror: newMirror(slog.Default(), time.Second),
			interfaces: func() []capture.Interface { return []capture.Interface{{Name: "g0", Mode: "tcx"}} }}
		st.reassembly.ActiveStreams.Store(3)
		c := newCollector(st.summary)
		m, err := startMetrics("127.0.0.1:0", c, pprof, nil)
		if err != nil {
			t.Fatal(err)
		}
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + m.addr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := get("/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
		if code, _ := get("/readyz"); code != 503 {
			t.Errorf("/readyz before ready: %d, want 503", code)
		}
		m.ready.Store(true)
		if code, _ := get("/readyz"); code != 200 {
			t.Errorf("/readyz when ready: %d", code)
		}
		code, body := get("/metrics")
		if code != 200 || !strings.Contains(body, `shadowtee_attached{iface="g0",mode="tcx"} 1`) || !strings.Contains(body, "shadowtee_streams_active 3") {
			t.Errorf("/metrics: %d\n%s", code, body)
		}
		want := 404
		if pprof {
			want = 200
		}
		if code, _ := get("/debug/pprof/"); code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", pprof, code, want)
		}
		m.close()
	}
}

// Every family of the list is exported, with the values of the summary it
// is made from, and README names every one of them.
func TestMetricsEveryFamily(t *testing.T) {
	// The shadow speaks h2c, so that the answer's grpc-status is counted.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Grpc-Status", "0")
		w.WriteHeader(201)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	secondary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer secondary.Close()
	m := newMirror(slog.Default(), time.Second)
	if _, err := setupCompare(m, &CompareConfig{Secondary: secondary.URL}, true, nil, true); err != nil {
		t.Fatal(err)
	}
	defer m.closeCompare()
	m.cmp.engine.Add(&compare.Exchange{Rule: "web", Method: "GET", Path: "/x", Primary: &httpmsg.Answer{Status: 200}, Shadow: &httpmsg.Answer{Status: 500}})
	m.cmp.overflow.Add(2)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - {name: web, match: {ports: [80]}, shadow: {url: '"+srv.URL+"', protocol: http2}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reloads := config.NewReloader(rules, m.apply, slog.Default())
	if _, err := reloads.Load(); err != nil {
		t.Fatal(err)
	}
	defer m.close(closedContext())
	// One request mirrored for real, so that a status code is counted.
	p := httpframe.NewParser(m.framingConfig(Limits{}), netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), time.Now())
	p.End()
	rs := m.byName["web"]
	for deadline := time.Now().Add(5 * time.Second); rs.shadow2.Mirrored.Load() == 0 || rs.secondary.Mirrored.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the request was not mirrored: shadow %d, secondary %d", rs.shadow2.Mirrored.Load(), rs.secondary.Mirrored.Load())
		}
	}
	st := &stats{start: time.Now(), mirror: m, reloads: reloads,
		interfaces: func() []capture.Interface { return []capture.Interface{{Name: "g0", Mode: "tc"}} },
		live: func() (capture.Stats, error) {
			return capture.Stats{
				Kernel: bpf.Counters{Seen: 10, Matched: 9, Copied: 8, CopiedBytes: 700, DropRingFull: 1, Truncated: 2, Fragments: 3, OtherDest: 4, Wakeups: 2, WakeupsLost: 1},
				Reader: bpf.ReaderStats{Records: 8, Malformed: 1, Polls: 5, Sleeps: 2, Wakeups: 2},
				Ifaces: capture.IfaceCounts{Attached: 1, Detached: 1},
			}, nil
		}}
	st.capture.Segments.Store(8)
	st.capture.Inline.Store(6)
	st.capture.Ticks.Store(7)
	st.reassembly.StreamsOpened.Store(4)
	st.reassembly.Gaps.Store(1)
	m.framing.Requests.Store(5)
	m.http2.Aborted[h2frame.ReasonReset].Store(3)
	m.skipped[skipSampled].Store(2)
	rs.matched.Store(5)

	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(st.summary))
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*dto.MetricFamily{}
	for _, f := range got {
		seen[strings.TrimPrefix(f.GetName(), "shadowtee_")] = f
	}
	for _, name := range MetricNames() {
		if seen[name] == nil {
			t.Errorf("family %s not exported", name)
		}
	}
	value := func(name string, labels ...string) float64 {
		f := seen[name]
		if f == nil {
			return -1
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, l := range m.GetLabel() {
					ok = ok || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !ok {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		return -1
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"packets_total", []string{"result", "matched"}, 9},
		{"packet_drops_total", []string{"reason", "truncated"}, 2},
		{"packet_drops_total", []string{"reason", "malformed"}, 1},
		{"packets_other_server_total", nil, 4},
		{"ip_fragments_total", nil, 3},
		{"copied_bytes_total", nil, 700},
		{"ring_reader_total", []string{"event", "sleeps"}, 2},
		{"ring_reader_total", []string{"event", "rung"}, 2},
		{"ring_reader_total", []string{"event", "ring_retried"}, 1},
		{"segments_total", []string{"path", "inline"}, 6},
		{"segments_total", []string{"path", "batched"}, 2},
		{"shard_wakeups_total", nil, 7},
		{"streams_total", []string{"event", "opened"}, 4},
		{"stream_gaps_total", nil, 1},
		{"requests_total", []string{"result", "framed"}, 5},
		{"requests_skipped_total", []string{"reason", "sampled"}, 2},
		{"requests_aborted_total", []string{"reason", "h2_reset"}, 3},
		{"rule_requests_total", []string{"rule", "web", "result", "matched"}, 5},
		{"rule_shadow_requests_total", []string{"rule", "web", "proto", "http2", "result", "mirrored"}, 1},
		{"rule_shadow_requests_total", []string{"rule", "web", "proto", "http1", "result", "queued"}, 0},
		{"requests_dropped_total", []string{"rule", "web", "reason", "overflow"}, 0},
		{"shadow_latency_seconds", []string{"rule", "web"}, 1},
		{"shadow_responses_total", []string{"rule", "web", "code", "201"}, 1},
		{"shadow_grpc_status_total", []string{"rule", "web", "code", "0"}, 1},
		{"shadow_connections_opened_total", []string{"rule", "web"}, 1},
		{"config_reloads_total", []string{"result", "failed"}, 0},
		{"compare_total", []string{"rule", "web", "endpoint", "GET /x", "verdict", "different"}, 1},
		{"compare_skipped_total", []string{"reason", "overflow"}, 2},
		{"compare_secondary_requests_total", []string{"rule", "web", "result", "mirrored"}, 1},
		{"attached", []string{"iface", "g0", "mode", "tc"}, 1},
		{"interface_events_total", []string{"event", "detached"}, 1},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range MetricNames() {
		if !strings.Contains(string(readme), name) {
			t.Errorf("README does not name the metric %s", name)
		}
	}
}
