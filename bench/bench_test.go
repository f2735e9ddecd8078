package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the roles the bench re-executes
// itself for.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(context.Background(), role, os.Args[1:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want int64
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}, {0.001, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty set")
	}
	q := quantiles([]int64{3e6, 1e6, 2e6})
	if q.N != 3 || q.P50 != 2 || q.Max != 3 || q.P99 != 3 {
		t.Errorf("quantiles = %+v", q)
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with a space and a parenthesis, as a process may have.
	line := "42 (a (b) c) S 7 42 42 0 -1 4194304 100 0 0 0 150 50 3 2 20 0 1 0 1000 1 1\n"
	st, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != 7 || st.CPU != 205*clockTick {
		t.Errorf("got %+v, want ppid 7 and cpu %v", st, 205*clockTick)
	}
	if _, err := parseProcStat([]byte("42 (x) S 1 2")); err == nil {
		t.Error("short line accepted")
	}
}

func TestOwnProcess(t *testing.T) {
	// Burn some CPU so the tick counters move.
	deadline := time.Now().Add(60 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = strconv.Itoa(x)
	}
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() || st.CPU <= 0 {
		t.Errorf("own stat = %+v", st)
	}
	m, err := readProcStatus(fmt.Sprintf("/proc/%d/status", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("own memory = %+v", m)
	}
	// This process has slept (its threads waited on each other), and
	// every thread's switches are counted.
	if vol, _ := treeSwitches([]int{os.Getpid()}); vol < m.Voluntary || vol == 0 {
		t.Errorf("own context switches %d, main thread %d", vol, m.Voluntary)
	}
	if tree := processTree(os.Getppid()); !slices.Contains(tree, os.Getpid()) {
		t.Errorf("tree of the parent %v misses this process", tree)
	}
	if treeCPU([]int{os.Getpid()}) < st.CPU || treeRSS([]int{os.Getpid()}) <= 0 {
		t.Error("tree sums")
	}
	h, err := readHostCPU()
	if err != nil || h.Idle <= 0 || h.Busy <= 0 {
		t.Errorf("host cpu = %+v, %v", h, err)
	}
	if describeMachine().CPUs <= 0 {
		t.Error("machine")
	}
}

func TestParseHostCPU(t *testing.T) {
	h, err := parseHostCPU([]byte("cpu  100 10 50 800 40 0 0 0 5 0\ncpu0 1 2 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Idle != 840*clockTick || h.Busy != 160*clockTick || h.At.IsZero() {
		t.Errorf("got %+v", h)
	}
	a := hostCPU{At: time.Unix(10, 0)}
	b := hostCPU{Idle: 3 * time.Second, At: time.Unix(12, 0)}
	if got := busyCores(a, b, 2); got != 0.5 {
		t.Errorf("busy cores = %v, want 0.5 of 2", got)
	}
	if _, err := parseHostCPU([]byte("intr 1 2\n")); err == nil {
		t.Error("no cpu line accepted")
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseProcStatus([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t7\n"))
	if err != nil || m.RSS != 1<<20 || m.HWM != 2<<20 || m.Voluntary != 42 || m.Involuntary != 7 {
		t.Errorf("got %+v, %v", m, err)
	}
	if _, err := parseProcStatus([]byte("Name:\tkthread\n")); err == nil {
		t.Error("status without memory accepted")
	}
}

const metricsPage = `# HELP shadowtee_packet_drops_total x
# TYPE shadowtee_packet_drops_total counter
shadowtee_packet_drops_total{reason="ring_full"} 5
shadowtee_packet_drops_total{reason="truncated"} 0
shadowtee_requests_dropped_total{reason="queue_full"} 12
shadowtee_requests_failed_total{reason="timeout"} 3
shadowtee_requests_total{result="framed"} 1000
shadowtee_segment_drops_total{reason="backlog_full"} 1
shadowtee_shadow_latency_seconds_bucket{le="0.001"} 7
`

func TestPromAndDrops(t *testing.T) {
	before, err := parseProm(strings.NewReader(`shadowtee_requests_failed_total{reason="timeout"} 1` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseProm(strings.NewReader(metricsPage))
	if err != nil {
		t.Fatal(err)
	}
	if after[`shadowtee_requests_total{result="framed"}`] != 1000 {
		t.Errorf("parsed %v", after)
	}
	d := drops(before, after)
	want := map[string]float64{"packet/ring_full": 5, "dropped/queue_full": 12, "failed/timeout": 2, "segment/backlog_full": 1}
	if len(d) != len(want) {
		t.Errorf("drops = %v, want %v", d, want)
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("drops[%s] = %v, want %v", k, d[k], v)
		}
	}
	if got := formatDrops(d); got != "dropped/queue_full=12 failed/timeout=2 packet/ring_full=5 segment/backlog_full=1" {
		t.Errorf("formatDrops = %q", got)
	}
	if formatDrops(nil) != "none" {
		t.Error("no drops")
	}
	if v := labelValue(`myreason="a",reason="b"}`, "reason"); v != "b" {
		t.Errorf("labelValue = %q", v)
	}
	if _, err := parseProm(strings.NewReader("novalue\n")); err == nil {
		t.Error("bad line accepted")
	}
}

func TestReadAnswer(t *testing.T) {
	two := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-type: text/plain\r\n\r\nok\n" +
		"HTTP/1.1 503 Service Unavailable\r\ncontent-length:0\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(two))
	for _, want := range []int{200, 503} {
		code, err := readAnswer(br)
		if err != nil || code != want {
			t.Fatalf("readAnswer = %d, %v; want %d", code, err, want)
		}
	}
	if _, err := readAnswer(br); err != io.EOF {
		t.Errorf("after the answers: %v", err)
	}
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
		"SMTP ready\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
	} {
		if _, err := readAnswer(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestRequestsParse(t *testing.T) {
	for _, mode := range []string{modeGet, modePost, modeNewConn} {
		g := newGenerator(loadConfig{Addr: "198.18.0.2:8080", Mode: mode, Rate: 10, Conns: 1, BodyKiB: 2, Duration: time.Second})
		now := time.Unix(0, 1234567890)
		wire := append(appendBenchRequest(nil, g.reqHead, 77, now), g.body...)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		body, _ := io.ReadAll(req.Body)
		if req.Header.Get("X-Bench-Id") != "77" || req.Header.Get("X-Bench-Sent") != "1234567890" || req.Host != "198.18.0.2:8080" {
			t.Errorf("%s: headers %v", mode, req.Header)
		}
		if mode == modePost && len(body) != 2048 || mode != modePost && len(body) != 0 {
			t.Errorf("%s: body of %d bytes", mode, len(body))
		}
		if req.Close != (mode == modeNewConn) {
			t.Errorf("%s: Connection: close = %v", mode, req.Close)
		}
	}
}

// TestGenerator runs the load generator and the shadow's recorder against
// local servers: the schedule is kept, each request arrives once.
func TestGenerator(t *testing.T) {
	for _, c := range []struct {
		mode     string
		pipeline bool
	}{{modeGet, false}, {modeGet, true}, {modePost, false}, {modeNewConn, false}} {
		t.Run(c.mode+map[bool]string{true: "-pipelined"}[c.pipeline], func(t *testing.T) {
			shadow := &shadowServer{}
			cfg := loadConfig{Mode: c.mode, Rate: 400, Conns: 4, BodyKiB: 4, Pipeline: c.pipeline,
				Start: time.Now().Add(50 * time.Millisecond), Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
				Grace: 2 * time.Second}
			shadow.reset(cfg.total(), delayRange{})
			srv := httptest.NewServer(shadow)
			defer srv.Close()
			cfg.Addr = strings.TrimPrefix(srv.URL, "http://")
			g := newGenerator(cfg)
			if err := g.run(t.Context()); err != nil {
				t.Fatal(err)
			}
			r := g.result(0)
			if r.Scheduled != 200 || r.Sent != 200 || r.Completed != 200 || len(r.Errors) != 0 || len(r.Unsent) != 0 {
				t.Fatalf("result %+v", r)
			}
			// Wide bounds: a busy machine shifts answers across the window's edges.
			if r.WindowSent != 160 || r.Achieved < 200 || r.Achieved > 600 {
				t.Errorf("window sent %d, achieved %.0f req/s (offered 400)", r.WindowSent, r.Achieved)
			}
			if r.Latency.N != 160 || r.Latency.P50 <= 0 || r.FromSlot.P50 < r.Latency.P50 {
				t.Errorf("latency %+v, from slot %+v", r.Latency, r.FromSlot)
			}
			res := shadow.results()
			var rr RunResult
			rr.addMirror(r, res)
			if rr.Expected != 200 || rr.Once != 200 || *rr.CompletePct != 100 || rr.Lag.N != 200 {
				t.Errorf("mirror %+v", rr)
			}
			if res.BodyErr != 0 || res.NoID != 0 {
				t.Errorf("shadow %+v", res.ShadowSummary)
			}
		})
	}
}

func TestShadowRecorder(t *testing.T) {
	s := &shadowServer{}
	srv := httptest.NewServer(s.control())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/reset?n=4&delay=0s", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reset: %v %v", resp, err)
	}
	send := func(h map[string]string) {
		req := httptest.NewRequest("GET", "/", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		s.ServeHTTP(httptest.NewRecorder(), req)
	}
	sent := strconv.FormatInt(time.Now().Add(-time.Millisecond).UnixNano(), 10)
	send(map[string]string{"X-Bench-Id": "0", "X-Bench-Sent": sent})
	send(map[string]string{"X-Bench-Id": "2", "X-Bench-Sent": sent})
	send(map[string]string{"X-Bench-Id": "2", "X-Bench-Sent": sent})
	send(map[string]string{"X-Bench-Id": "9"})
	send(map[string]string{"X-Bench-Probe": "1"})
	send(nil)
	res := s.results()
	if !slices.Equal(res.Counts, []uint32{1, 0, 2, 0}) || res.Unknown != 1 || res.NoID != 1 || res.Probes != 1 || res.FirstProbe == 0 {
		t.Errorf("results %+v", res)
	}
	if res.LagNS[0] < int64(time.Millisecond) || res.Arrived != 3 {
		t.Errorf("lag %v, arrived %d", res.LagNS, res.Arrived)
	}
	var rr RunResult
	rr.addMirror(LoadResult{Scheduled: 4, Unsent: []int{3}}, res)
	if rr.Expected != 3 || rr.Once != 1 || rr.Missing != 1 || rr.Duplicated != 1 {
		t.Errorf("completeness %+v", rr)
	}
	for _, bad := range []string{"/reset?n=x&delay=0s", "/reset?n=1&delay=x"} {
		resp, _ := http.Post(srv.URL+bad, "", nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s", bad, resp.Status)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Scenarios, []string{"get", "post", "newconn", "saturation"}) || !slices.Equal(c.Rates, []float64{1000, 5000, 10000}) ||
		c.Duration != 10*time.Second || c.Conns != 16 {
		t.Errorf("defaults %+v", c)
	}
	var names []string
	for _, sc := range c.scenarios() {
		names = append(names, sc.Name)
	}
	if !slices.Equal(names, []string{"get-1000", "get-5000", "get-10000", "post-2000", "newconn-2000", "saturation"}) {
		t.Errorf("scenarios %v", names)
	}
	c, err = parseFlags([]string{"--quick", "--duration", "3s", "--scenarios", "get", "--rates", "100, 200",
		"--agent-args", "--shadow-max-connections 8 --percent 50", "--variant", " --compare  --x 1", "--peer", "gor {iface}:{port} http://{shadow}", "--peer", "x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 3*time.Second || c.Warmup != 500*time.Millisecond || c.QuietTime != 3*time.Second || len(c.Rates) != 2 {
		t.Errorf("quick %+v", c)
	}
	tools := c.tools()
	if len(tools) != 5 || tools[2].Name != "shadowtee --compare --x 1" || !slices.Equal(tools[2].Args, []string{"--compare", "--x", "1"}) ||
		tools[3].Name != "peer 1 (gor)" || tools[3].Command != "gor g0:8080 http://198.18.1.3:8000" {
		t.Errorf("tools %+v", tools)
	}
	c, err = parseFlags([]string{"--scenarios", "slow,compare,h2,quiet,idle", "--shadow-delay", "5ms", "--slow-delay", "50ms"})
	if err != nil {
		t.Fatal(err)
	}
	names = names[:0]
	for _, sc := range c.scenarios() {
		names = append(names, sc.Name+" "+sc.Delay.String())
	}
	if !slices.Equal(names, []string{"slow-get-1000 50ms", "slow-get-5000 50ms", "slow-post-2000 50ms", "compare-1k 5ms", "compare-16k 5ms",
		"h2-2000 5ms", "quiet 5ms", "idle-conns-10000 0s"}) {
		t.Errorf("scenarios %v", names)
	}
	if scs := c.scenarios(); scs[2].BodyKiB != 16 || scs[4].Answer != 16<<10 || scs[5].Conns != 8 || scs[5].Streams != 16 ||
		scs[6].Duration != 20*time.Second || !strings.HasSuffix(scs[0].Title, "the shadow answering after 50ms") {
		t.Errorf("scenarios %+v", scs)
	}
	for _, bad := range [][]string{{"--scenarios", "nope"}, {"--rates", "-1"}, {"--conns", "0"}, {"extra"}, {"--sat-factor", "1"},
		{"--shadow-delay", "200ms-20ms"}, {"--compare-kib", "0"}, {"--h2-clients", "0"}, {"--quiet-time", "0s"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestExpandPeer(t *testing.T) {
	got := expandPeer("tee -i {iface} -p {port} --to {shadow_url} {shadow_host}:{shadow_port} {primary}")
	if got != "tee -i g0 -p 8080 --to http://198.18.1.3:8000 198.18.1.3:8000 198.18.0.2:8080" {
		t.Errorf("expandPeer = %q", got)
	}
	if peerName(1, "/usr/bin/gor --input-raw") != "peer 2 (gor)" {
		t.Error(peerName(1, "/usr/bin/gor --input-raw"))
	}
}

// sampleScenarios is a small suite's worth of results for the report and
// the plot.
func sampleScenarios() []*Scenario {
	mk := func(kind string, rate, cpu, complete, p99 float64) *Scenario {
		sc := &Scenario{Name: kind, Title: kind + " title", Kind: kind, Rate: rate, Warmup: time.Second, Duration: 10 * time.Second}
		base := &RunResult{Tool: kindBaseline, Kind: kindBaseline, Load: LoadResult{Scheduled: 10, Achieved: rate, Latency: Quantiles{P99: 0.2}}}
		tee := &RunResult{Tool: kindShadowtee, Kind: kindShadowtee, Load: LoadResult{Scheduled: 10, Achieved: rate * 0.99, Latency: Quantiles{P99: p99}},
			CPUPerReqUS: ptr(cpu), CPUCorePct: ptr(cpu * rate / 1e4), CompletePct: ptr(complete), StartupS: ptr(0.05), MaxRSSMiB: ptr(30),
			Lag: Quantiles{N: 10, P50: 1, P99: 3}, Drops: map[string]float64{"dropped/queue_full": 4},
			Counters: map[string]float64{`shadowtee_requests_total{result="mirrored"}`: 6}}
		tee.Shadow.Conns = 4
		peer := &RunResult{Tool: "peer 1 (gor)", Kind: kindPeer, Load: LoadResult{Scheduled: 10, Achieved: rate, Latency: Quantiles{P99: 5}},
			CPUPerReqUS: ptr(cpu * 8), CompletePct: ptr(complete - 5)}
		sc.Runs = []*RunResult{base, tee, peer}
		sc.compare()
		sc.Targets = evaluate(sc)
		return sc
	}
	quiet := &Scenario{Name: scQuiet, Title: "quiet title", Kind: scQuiet, Duration: 20 * time.Second}
	q := &RunResult{Tool: kindShadowtee, Kind: kindShadowtee, CPUCorePct: ptr(1.25), CPUSeconds: ptr(0.25), WakeupsPerS: ptr(260),
		MaxRSSMiB: ptr(30), StartupS: ptr(0.05)}
	q.Switches.Voluntary = 5000
	quiet.Runs = []*RunResult{q, {Tool: "peer 1 (gor)", Kind: kindPeer, Notes: []string{"failed: x"}}}
	h2 := mk(scH2, 2000, 3, 0, 0.3)
	h2.Runs[1].Shadow.HTTP2 = 0
	h2.Runs[1].Shadow.HTTP1 = 5
	return []*Scenario{mk(scGet, 1000, 60, 100, 0.3), mk(scGet, 5000, 20, 100, 0.9), mk(scGet, 10000, 14, 99.5, 1.5),
		mk(scPost, 2000, 40, 100, 0.4), mk(scNewConn, 2000, 50, 98, 0.5), mk(scSaturation, 40000, 5, 90, 3),
		mk(scSlow, 1000, 80, 12.5, 0.3), h2, quiet}
}

// findTarget returns the scenario's target named what.
func findTarget(t *testing.T, sc *Scenario, what string) Target {
	t.Helper()
	for _, x := range sc.Targets {
		if x.What == what {
			return x
		}
	}
	t.Fatalf("%s: no target %q in %+v", sc.Name, what, sc.Targets)
	return Target{}
}

func TestEvaluate(t *testing.T) {
	scs := sampleScenarios()
	find := func(sc *Scenario, what string) Target { return findTarget(t, sc, what) }
	if x := find(scs[1], "agent CPU per request"); x.Met || x.Value != "20.0 µs" || x.Goal != "≤ 12 µs" {
		t.Errorf("5k cpu %+v: 20 µs misses the 12 µs goal", x)
	}
	if x := find(scs[2], "completeness"); x.Met {
		t.Errorf("10k completeness %+v", x)
	}
	if x := find(scs[0], "primary p99"); !x.Met || x.Value != "+0.10 ms" {
		t.Errorf("1k p99 %+v", x)
	}
	if x := find(scs[5], "throughput with the tee"); !x.Met || x.Value != "99.0%" {
		t.Errorf("saturation %+v", x)
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	writeMarkdown(&b, &Report{Command: "shadowtee-bench --quick", Machine: describeMachine(), Binary: "bin/shadowtee", Scenarios: sampleScenarios()})
	out := b.String()
	for _, want := range []string{"Command: `shadowtee-bench --quick`", "### get title", "| baseline | 1,000 |",
		"| shadowtee | 990 | ", "dropped/queue_full=4", "| peer 1 (gor) |", "**missed**", "load side", "99.0%",
		"the shadow received 0 requests over HTTP/2 and 5 over HTTP/1.x", "| shadowtee | 1.25 | 0.25 | 260 | 5000 | 0 | 30.0 |",
		"| peer 1 (gor) | failed |", "### Summary", "| quiet | shadowtee | – | – | – | 1.25 | 260 |", "| slow | shadowtee | +0.100 | 12.50% |",
		"| 4 | 0 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	checkTables(t, out)
}

func TestThousands(t *testing.T) {
	if thousands(1234567) != "1,234,567" || thousands(999) != "999" {
		t.Error("thousands")
	}
}

func TestPasses(t *testing.T) {
	run := func(kind string, pass int, p99, cpu float64) *RunResult {
		return &RunResult{Tool: kind, Kind: kind, Pass: pass, CPUPerReqUS: ptr(cpu), CPUCorePct: ptr(cpu / 10), CompletePct: ptr(100),
			Load: LoadResult{Scheduled: 1, Achieved: 1000, Latency: Quantiles{P99: p99}}}
	}
	sc := &Scenario{Kind: scGet, Rate: 5000, Runs: []*RunResult{
		run(kindBaseline, 1, 0.2, 0), run(kindShadowtee, 1, 0.5, 15),
		run(kindBaseline, 2, 1.0, 0), run(kindShadowtee, 2, 1.2, 10),
		run(kindBaseline, 3, 0.3, 0), run(kindShadowtee, 3, 0.4, 12),
	}}
	sc.compare()
	for i, want := range []float64{0.3, 0.2, 0.1} {
		if d := *sc.Runs[2*i+1].DeltaP99; d < want-1e-9 || d > want+1e-9 {
			t.Errorf("pass %d: Δp99 %v, want %v against its own baseline", i+1, d, want)
		}
	}
	ts := evaluate(sc)
	if ts[0].What != "agent CPU per request" || !ts[0].Met || ts[0].Value != "12.0 µs (median of 15.0 µs, 10.0 µs, 12.0 µs)" {
		t.Errorf("target %+v", ts[0])
	}
	if sc.Runs[3].label() != "shadowtee #2" || (&RunResult{Tool: "x"}).label() != "x" {
		t.Error("labels")
	}
	if m, n := median([]*float64{nil, ptr(3), ptr(1)}); m != 2 || n != 2 {
		t.Errorf("median = %v of %d", m, n)
	}
}

func TestDelayRange(t *testing.T) {
	for _, c := range []struct {
		in       string
		min, max time.Duration
		text     string
	}{{"0", 0, 0, "0s"}, {"50ms", 50 * time.Millisecond, 50 * time.Millisecond, "50ms"},
		{" 20ms-200ms", 20 * time.Millisecond, 200 * time.Millisecond, "20ms-200ms"}, {"5s-5s", 5 * time.Second, 5 * time.Second, "5s"}} {
		d, err := parseDelay(c.in)
		if err != nil || d.Min != c.min || d.Max != c.max || d.String() != c.text {
			t.Errorf("parseDelay(%q) = %+v %q, %v", c.in, d, d.String(), err)
		}
		for range 100 {
			if p := d.pick(); p < c.min || p > c.max {
				t.Fatalf("%q: picked %v", c.in, p)
			}
		}
	}
	for _, bad := range []string{"", "x", "-1ms", "200ms-20ms", "1ms-", "1ms-x"} {
		if _, err := parseDelay(bad); err == nil {
			t.Errorf("parseDelay(%q) accepted", bad)
		}
	}
	if b, _ := json.Marshal(struct{ D delayRange }{delayRange{time.Millisecond, time.Second}}); string(b) != `{"D":"1ms-1s"}` {
		t.Errorf("JSON %s", b)
	}
}

func TestJSONBody(t *testing.T) {
	for _, n := range []int{21, 100, 1 << 10, 16 << 10, 100_000} {
		b := jsonBody(n)
		var v struct {
			Items []map[string]any
			Pad   string
		}
		if len(b) != n || json.Unmarshal(b, &v) != nil || (n >= 1<<10 && len(v.Items) < 5) {
			t.Errorf("jsonBody(%d): %d bytes, %d items: %.80s", n, len(b), len(v.Items), b)
		}
	}
	rec := httptest.NewRecorder()
	writeAnswer(rec, httptest.NewRequest("GET", "/json/1024", nil))
	if rec.Body.Len() != 1024 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("answer %d bytes, %v", rec.Body.Len(), rec.Header())
	}
	for _, path := range []string{"/bench", "/json/x", "/json/0", "/json/99999999"} {
		rec := httptest.NewRecorder()
		writeAnswer(rec, httptest.NewRequest("GET", path, nil))
		if rec.Body.String() != "ok\n" {
			t.Errorf("%s: %q", path, rec.Body.String())
		}
	}
}

// TestShadowConnsAndProtocols checks what the shadow counts: connections
// opened and the most open at once, over HTTP/1.1 and h2c, with ids in
// a header or in the path, and JSON answers like the primary's.
func TestShadowConnsAndProtocols(t *testing.T) {
	s := startShadow(t, serverHTTP, 8)
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", s.bound)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: a\r\nX-Bench-Id: %d\r\n\r\n", i)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := readAnswer(bufio.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/bench/5", "/bench/5", "/json/2048"} {
		resp, err := hc.Get("http://" + s.bound + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || (path == "/json/2048" && len(body) != 2048) {
			t.Errorf("%s: %s, %d bytes", path, resp.Proto, len(body))
		}
	}
	res := s.results()
	if res.Conns != 4 || res.Peak != 4 || res.HTTP1 != 3 || res.HTTP2 != 3 || !slices.Equal(res.Counts, []uint32{1, 1, 1, 0, 0, 2, 0, 0}) ||
		res.NoID != 1 {
		t.Errorf("results %+v", res)
	}
	for _, c := range conns {
		c.Close()
	}
	// A new tally starts from the connections still open: at most the one
	// of the HTTP/2 client, however soon the server sees the others close.
	s.reset(1, delayRange{})
	if p := s.results().Peak; p > 4 {
		t.Errorf("peak after reset %d", p)
	}
	var rr RunResult
	rr.addMirror(LoadResult{Scheduled: 16, Repeat: 2}, ShadowResults{Counts: []uint32{2, 1, 0, 3}, LagNS: make([]int64, 4)})
	if rr.Expected != 8 || rr.Once != 3 || rr.Missing != 3 || rr.Duplicated != 2 || *rr.CompletePct != 37.5 || rr.Lag.N != 0 {
		t.Errorf("repeated ids %+v", rr)
	}
}

func TestParseH2Log(t *testing.T) {
	start := time.Unix(1000, 0)
	cfg := loadConfig{Mode: modeH2, Rate: 4, Conns: 2, Start: start, Warmup: time.Second, Duration: 2 * time.Second}
	us := func(d time.Duration) int64 { return start.Add(d).UnixMicro() }
	log := fmt.Sprintf("%d\t200\t500\n%d\t200\t1500\n%d\t503\t100\n%d\t200\t2000\n%d\t200\t900\n", us(100*time.Millisecond),
		us(1100*time.Millisecond), us(1200*time.Millisecond), us(2*time.Second), us(3100*time.Millisecond))
	r, err := parseH2Log(strings.NewReader(log), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.total() != 12 || cfg.ids() != 6 || r.Scheduled != 12 || r.Repeat != 2 || r.Sent != 5 || r.Completed != 4 ||
		r.Errors["status"] != 1 || r.Errors["unsent"] != 7 || r.WindowSent != 3 || r.WindowDone != 2 || r.Achieved != 1 ||
		r.Latency.N != 2 || r.Latency.P50 != 1.5 || r.Latency.Max != 2 {
		t.Errorf("result %+v", r)
	}
	if _, err := parseH2Log(strings.NewReader("x\t200\t5\n"), cfg); err == nil {
		t.Error("bad line accepted")
	}
}
