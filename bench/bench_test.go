package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"io"
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
	m, err := readProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("own memory = %+v", m)
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
	m, err := parseProcStatus([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	if err != nil || m.RSS != 1<<20 || m.HWM != 2<<20 {
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
		wire := append(g.appendRequest(nil, 77, now), g.body...)
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
			shadow.reset(cfg.total(), 0)
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
		c.Duration != 10*time.Second || c.Conns != 16 || c.shadowWorkers() != 4 {
		t.Errorf("defaults %+v", c)
	}
	names := []string{}
	for _, sc := range c.scenarios() {
		names = append(names, sc.Name)
	}
	if !slices.Equal(names, []string{"get-1000", "get-5000", "get-10000", "post-2000", "newconn-2000", "saturation"}) {
		t.Errorf("scenarios %v", names)
	}
	c, err = parseFlags([]string{"--quick", "--duration", "3s", "--scenarios", "get", "--rates", "100, 200",
		"--agent-args", "--shadow-workers 8 --percent 50", "--peer", "gor {iface}:{port} http://{shadow}", "--peer", "x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 3*time.Second || c.Warmup != 500*time.Millisecond || c.shadowWorkers() != 8 || len(c.Rates) != 2 {
		t.Errorf("quick %+v", c)
	}
	tools := c.tools()
	if len(tools) != 4 || tools[2].Name != "peer 1 (gor)" || tools[2].Command != "gor g0:8080 http://198.18.1.3:8000" {
		t.Errorf("tools %+v", tools)
	}
	for _, bad := range [][]string{{"--scenarios", "nope"}, {"--rates", "-1"}, {"--conns", "0"}, {"extra"}, {"--sat-factor", "1"}} {
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
		sc.Targets = evaluate(sc, 4)
		return sc
	}
	return []*Scenario{mk(scGet, 1000, 60, 100, 0.3), mk(scGet, 5000, 20, 100, 0.9), mk(scGet, 10000, 14, 99.5, 1.5),
		mk(scPost, 2000, 40, 100, 0.4), mk(scNewConn, 2000, 50, 98, 0.5), mk(scSaturation, 40000, 5, 90, 3)}
}

func TestEvaluate(t *testing.T) {
	scs := sampleScenarios()
	find := func(sc *Scenario, what string) Target {
		for _, x := range sc.Targets {
			if x.What == what {
				return x
			}
		}
		t.Fatalf("%s: no target %q in %+v", sc.Name, what, sc.Targets)
		return Target{}
	}
	if x := find(scs[1], "agent CPU per request"); !x.Met || x.Value != "20.0 µs" {
		t.Errorf("5k cpu %+v", x)
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
		"| shadowtee | 990 | ", "dropped/queue_full=4", "| peer 1 (gor) |", "**missed**", "load side", "99.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// Every table row of a scenario has as many cells as its header.
	for _, block := range strings.Split(out, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if !strings.HasPrefix(lines[0], "| ") {
			continue
		}
		n := strings.Count(lines[0], " | ")
		for _, l := range lines[1:] {
			if strings.Count(l, " | ") != n && !strings.HasPrefix(l, "| ---") {
				t.Errorf("row %q has a different cell count than %q", l, lines[0])
			}
		}
	}
}

func TestPlotSVG(t *testing.T) {
	svg := plotSVG(sampleScenarios(), "2 vCPUs & <test>")
	d := xml.NewDecoder(bytes.NewReader(svg))
	elems := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elems[se.Name.Local]++
		}
	}
	// Two tools with a GET line each, in two panels.
	if elems["svg"] != 1 || elems["polyline"] != 4 || elems["rect"] < 5 || elems["polygon"] < 4 {
		t.Errorf("elements %v", elems)
	}
	if !bytes.Contains(svg, []byte("&lt;test&gt;")) || !bytes.Contains(svg, []byte("target 25 µs")) {
		t.Error("subtitle or targets missing")
	}
	if s := plotSVG(nil, ""); !bytes.HasSuffix(s, []byte("</svg>\n")) {
		t.Error("empty plot")
	}
}

func TestNiceCeil(t *testing.T) {
	for _, c := range []struct{ in, top, step float64 }{
		{0, 1, 0.2}, {7, 8, 2}, {10, 10, 2}, {11, 12, 2}, {23, 25, 5}, {42, 50, 10}, {10500, 12000, 2000}, {63000, 80000, 20000},
	} {
		top, step := niceCeil(c.in)
		if top != c.top || step != c.step {
			t.Errorf("niceCeil(%v) = %v, %v; want %v, %v", c.in, top, step, c.top, c.step)
		}
	}
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
		run(kindBaseline, 1, 0.2, 0), run(kindShadowtee, 1, 0.5, 30),
		run(kindBaseline, 2, 1.0, 0), run(kindShadowtee, 2, 1.2, 20),
		run(kindBaseline, 3, 0.3, 0), run(kindShadowtee, 3, 0.4, 24),
	}}
	sc.compare()
	for i, want := range []float64{0.3, 0.2, 0.1} {
		if d := *sc.Runs[2*i+1].DeltaP99; d < want-1e-9 || d > want+1e-9 {
			t.Errorf("pass %d: Δp99 %v, want %v against its own baseline", i+1, d, want)
		}
	}
	ts := evaluate(sc, 4)
	if ts[0].What != "agent CPU per request" || !ts[0].Met || ts[0].Value != "24.0 µs (median of 30.0 µs, 20.0 µs, 24.0 µs)" {
		t.Errorf("target %+v", ts[0])
	}
	if sc.Runs[3].label() != "shadowtee #2" || (&RunResult{Tool: "x"}).label() != "x" {
		t.Error("labels")
	}
	pts := plotSeries([]*Scenario{sc})
	if len(pts) != 1 || len(pts[0].Points) != 1 || pts[0].Points[0].CPU != 24 {
		t.Errorf("plot series %+v", pts)
	}
	if m, n := median([]*float64{nil, ptr(3), ptr(1)}); m != 2 || n != 2 {
		t.Errorf("median = %v of %d", m, n)
	}
}
