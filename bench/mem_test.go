package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/agent"
)

// startShadow runs the bench's shadow on a local port with the given
// server and returns it, up.
func startShadow(t *testing.T, server string, n int) *shadowServer {
	t.Helper()
	s := &shadowServer{addr: "127.0.0.1:0", server: server}
	s.reset(n, delayRange{})
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.down)
	return s
}

// TestSinkRecordsLikeNetHTTP sends the same pipelined requests to both
// shadow servers: GETs with ids, a POST with a body, a chunked POST, a
// probe and a request without an id, in one write.
func TestSinkRecordsLikeNetHTTP(t *testing.T) {
	sent := time.Now().Add(-time.Millisecond).UnixNano()
	var req bytes.Buffer
	for _, id := range []int{0, 2, 2} {
		fmt.Fprintf(&req, "GET /x HTTP/1.1\r\nHost: a\r\nX-Bench-Id: %d\r\nX-Bench-Sent: %d\r\n\r\n", id, sent)
	}
	fmt.Fprintf(&req, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Bench-Id: 1\r\n\r\nhello")
	fmt.Fprintf(&req, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Bench-Id: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	fmt.Fprintf(&req, "GET /probe HTTP/1.1\r\nHost: a\r\nX-Bench-Probe: 1\r\n\r\n")
	fmt.Fprintf(&req, "GET /none HTTP/1.1\r\nHost: a\r\n\r\n")
	fmt.Fprintf(&req, "GET /big HTTP/1.1\r\nHost: a\r\nX-Bench-Id: 99\r\n\r\n")
	const answers = 8
	for _, server := range []string{serverHTTP, serverSink} {
		t.Run(server, func(t *testing.T) {
			s := startShadow(t, server, 4)
			c, err := net.Dial("tcp", s.bound)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(req.Bytes()); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for i := range answers {
				if status, err := readAnswer(br); err != nil || status != 200 {
					t.Fatalf("answer %d: %d, %v", i, status, err)
				}
			}
			res := s.results()
			if !slices.Equal(res.Counts, []uint32{1, 1, 2, 1}) || res.Unknown != 1 || res.NoID != 1 || res.Probes != 1 ||
				res.Conns != 1 || res.BodyErr != 0 || res.Arrived != 5 {
				t.Errorf("results %+v", res)
			}
			if res.LagNS[0] < int64(time.Millisecond) || res.LagNS[0] > int64(time.Minute) {
				t.Errorf("lag %v", res.LagNS)
			}
		})
	}
}

// TestShadowDown closes the port and every connection, and opens it again.
func TestShadowDown(t *testing.T) {
	for _, server := range []string{serverHTTP, serverSink} {
		t.Run(server, func(t *testing.T) {
			s := startShadow(t, server, 1)
			srv := httptest.NewServer(s.control())
			defer srv.Close()
			addr := s.bound
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Bench-Id: 0\r\n\r\n")
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			if _, err := readAnswer(br); err != nil {
				t.Fatal(err)
			}
			post := func(state string) int {
				resp, err := http.Post(srv.URL+"/listen?state="+state, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if post("down") != 200 {
				t.Fatal("down")
			}
			if _, err := br.ReadByte(); err == nil {
				t.Error("connection still open after down")
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Error("port still open after down")
			}
			s.addr = addr // listen again where it was
			if post("up") != 200 || post("sideways") != http.StatusBadRequest {
				t.Fatal("up")
			}
			c2, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("after up: %v", err)
			}
			c2.Close()
		})
	}
}

// TestGeneratorAgainstSink runs the load generator against the sink, as
// TestGenerator does against net/http.
func TestGeneratorAgainstSink(t *testing.T) {
	cfg := loadConfig{Mode: modePost, Rate: 400, Conns: 4, BodyKiB: 4, Pipeline: true,
		Start: time.Now().Add(50 * time.Millisecond), Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
		Grace: 2 * time.Second}
	s := startShadow(t, serverSink, cfg.total())
	cfg.Addr = s.bound
	g := newGenerator(cfg)
	if err := g.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := g.result(0)
	var rr RunResult
	rr.addMirror(r, s.results())
	if r.Completed != 200 || rr.Once != 200 || rr.Lag.N != 200 {
		t.Errorf("completed %d, mirrored once %d, lags %d", r.Completed, rr.Once, rr.Lag.N)
	}
}

// TestIdleGenerator opens connections at a rate, keeps them idle and
// checks that they stayed open; against a server that closes idle
// connections, it sees them closed.
func TestIdleGenerator(t *testing.T) {
	for _, c := range []struct {
		name        string
		idleTimeout time.Duration
		alive       int
	}{{"kept", time.Minute, 200}, {"closed by the server", 50 * time.Millisecond, 0}} {
		t.Run(c.name, func(t *testing.T) {
			shadow := &shadowServer{}
			shadow.reset(200, delayRange{})
			srv := httptest.NewUnstartedServer(shadow)
			srv.Config.IdleTimeout = c.idleTimeout
			srv.Start()
			defer srv.Close()
			cfg := idleConfig{Addr: strings.TrimPrefix(srv.URL, "http://"), Conns: 200, Rate: 2000,
				Start: time.Now().Add(20 * time.Millisecond), Gap: time.Second, Idle: 300 * time.Millisecond,
				Tail: 50 * time.Millisecond}
			g := newIdleGenerator(cfg)
			g.run(t.Context())
			r := g.result(0)
			if r.Scheduled != 200 || r.Sent != 200 || r.Completed != 200 || r.Open != 200 || len(r.Errors) != 0 {
				t.Fatalf("result %+v", r)
			}
			if r.Alive != c.alive || r.ClosedEarly != 200-c.alive {
				t.Errorf("alive %d, closed early %d; want %d alive", r.Alive, r.ClosedEarly, c.alive)
			}
			if r.Latency.N != 200 {
				t.Errorf("latency %+v", r.Latency)
			}
			var rr RunResult
			rr.addMirror(r.LoadResult, shadow.results())
			if rr.Once != 200 {
				t.Errorf("shadow saw %d of 200 once", rr.Once)
			}
			if !cfg.IdleTo().After(cfg.IdleFrom()) || cfg.IdleFrom().Sub(cfg.Start) != 1100*time.Millisecond {
				t.Errorf("idle period %v to %v", cfg.IdleFrom(), cfg.IdleTo())
			}
		})
	}
}

func TestRaiseNoFile(t *testing.T) {
	if err := raiseNoFile(64); err != nil {
		t.Error(err)
	}
	if err := raiseNoFile(math.MaxUint32 << 8); err == nil {
		t.Error("an impossible limit was granted")
	}
}

const smapsText = `55d0c0000000-55d0c0400000 r-xp 00000000 fd:01 123 /usr/bin/shadowtee
Size:               4096 kB
Rss:                3072 kB
Anonymous:             0 kB
7f0000000000-7f0000800000 rw-p 00000000 00:00 0
Rss:                2048 kB
Anonymous:          2048 kB
7f1000000000-7f1001000000 rw-s 00000000 00:0e 77 anon_inode:bpf-ringbuf
Rss:                1024 kB
Anonymous:           512 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                 128 kB
Anonymous:           128 kB
VmFlags: rd wr mr mw me gd ac
`

func TestParseSmaps(t *testing.T) {
	st, err := parseSmaps(strings.NewReader(smapsText))
	if err != nil {
		t.Fatal(err)
	}
	want := smapsTotals{RSS: 6272 << 10, Anon: 2176 << 10, BPF: 1024 << 10, File: 3072 << 10}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	m := &MemBreakdown{RSSMiB: 6.125, AnonMiB: 2.125, BPFMiB: 1, FileMiB: 3, Streams: ptr(10000), HeapInuseMiB: ptr(5)}
	if s := m.String(); !strings.Contains(s, "RSS 6.1 MiB = anonymous 2.1 + BPF ring 1.0 + files 3.0") ||
		!strings.Contains(s, "streams followed 10000") || !strings.Contains(s, "Go heap in use 5.0 MiB") {
		t.Error(s)
	}
	if (*MemBreakdown)(nil).String() != dash {
		t.Error("nil breakdown")
	}
}

func TestSoakSeries(t *testing.T) {
	start := time.Unix(1000, 0)
	var samples rssSamples
	// 60 s at 10 readings a second: flat at 30 MiB for 30 s, then
	// growing by 1 MiB every 10 s.
	for i := range 601 {
		at := start.Add(time.Duration(i) * 100 * time.Millisecond)
		mib := 30.0
		if s := float64(i) / 10; s > 30 {
			mib += (s - 30) / 10
		}
		samples = append(samples, rssSample{At: at, RSS: int64(mib * (1 << 20))})
	}
	var r SoakResult
	soakSeries(&r, samples, start, start.Add(60*time.Second))
	if len(r.Series) != 61 || r.StartMiB != 30 || r.SlopeWindow != 30 {
		t.Fatalf("%d points, start %v, window %v", len(r.Series), r.StartMiB, r.SlopeWindow)
	}
	if math.Abs(r.Slope-6) > 0.01 || r.Bounded || math.Abs(r.EndMiB-33) > 0.01 || math.Abs(r.MaxMiB-33) > 0.01 {
		t.Errorf("slope %v MiB/min, end %v, max %v, bounded %v", r.Slope, r.EndMiB, r.MaxMiB, r.Bounded)
	}
	soakSeries(&r, samples[:300], start, start.Add(29*time.Second))
	if r.Slope != 0 || !r.Bounded || r.SlopeWindow != 14.5 {
		t.Errorf("flat: slope %v, bounded %v, window %v", r.Slope, r.Bounded, r.SlopeWindow)
	}
	if got := rssSeries(r.Series[:12], 5); got != "30.0 30.0 30.0 30.0" {
		t.Errorf("series %q", got)
	}
	if samples.at(start.Add(-time.Second)) != samples[0].RSS || samples.at(start.Add(time.Hour)) != samples[600].RSS {
		t.Error("at")
	}
}

func TestLedger(t *testing.T) {
	before := promSample{
		`shadowtee_requests_total{result="framed"}`:                            5,
		`shadowtee_requests_total{result="mirrored"}`:                          5,
		`shadowtee_requests_failed_total{reason="connect",rule="default"}`:     1,
		`shadowtee_requests_dropped_total{reason="queue_full",rule="default"}`: 0,
	}
	after := promSample{
		`shadowtee_requests_total{result="queued"}`:                        800,
		`shadowtee_requests_total{result="mirrored"}`:                      105,
		`shadowtee_requests_failed_total{reason="connect",rule="default"}`: 95,
	}
	final := &agent.Summary{Requests: agent.RequestSummary{Framed: 1005, Mirrored: 105,
		Failed:  map[string]uint64{"connect": 96, "shutdown": 600},
		Dropped: map[string]uint64{"queue_full": 200}, Skipped: map[string]uint64{"http2": 0}}}
	l := newLedger(1000, before, after, final)
	if l.Framed != 1000 || l.Mirrored != 100 || l.Failed["connect"] != 95 || l.Failed["shutdown"] != 600 ||
		l.Dropped["queue_full"] != 200 || len(l.Skipped) != 0 || l.HeldAtEnd != 600 || l.Unaccounted != 5 || l.Exact() {
		t.Errorf("ledger %+v", l)
	}
	final.Requests.Failed["shutdown"] = 605
	if l = newLedger(1000, before, after, final); l.Unaccounted != 0 || !l.Exact() {
		t.Errorf("ledger %+v", l)
	}
	if l = newLedger(1000, before, nil, nil); l.Framed != 0 || l.Exact() {
		t.Errorf("without a summary %+v", l)
	}
}

func TestParseSummary(t *testing.T) {
	out := `{"time":"x","level":"INFO","msg":"attached"}
{"time":"x","level":"INFO","msg":"stopping"}
{
  "duration_ns": 1000,
  "requests": {
    "framed": 7,
    "mirrored": 6,
    "failed": {"timeout": 1}
  }
}
`
	sum, err := parseSummary(out)
	if err != nil || sum.Requests.Framed != 7 || sum.Requests.Failed["timeout"] != 1 {
		t.Errorf("%+v, %v", sum, err)
	}
	if _, err := parseSummary(`{"level":"INFO"}` + "\n"); err == nil {
		t.Error("a log line taken for the summary")
	}
}

// TestPinProcess pins a child process, all its threads, to one CPU and
// back.
func TestPinProcess(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	mine, err := threadCPUs(0)
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := pinProcess(pid, mine[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := threadCPUs(pid); !slices.Equal(got, mine[:1]) {
		t.Errorf("pinned to %v, want %v", got, mine[:1])
	}
	if err := pinTree(pid, mine...); err != nil {
		t.Fatal(err)
	}
	if got, _ := threadCPUs(pid); !slices.Equal(got, mine) {
		t.Errorf("unpinned to %v, want %v", got, mine)
	}
	if len(mine) >= 2 {
		p, err := newCPUPlan()
		if err != nil || p.Primary != mine[0] || p.Others != mine[1] {
			t.Errorf("plan %+v, %v", p, err)
		}
	}
}

func TestSpin(t *testing.T) {
	start := threadCPU()
	spin(3 * time.Millisecond)
	if used := threadCPU() - start; used < 3*time.Millisecond {
		t.Errorf("spun %v", used)
	}
}

func TestParsePerCPU(t *testing.T) {
	h, err := parseHostCPU([]byte("cpu  100 10 50 800 40 0 0 0 5 0\ncpu0 50 5 25 400 20 0 0 0 0 0\ncpu1 50 5 25 400 20 0 0 0 0 0\nintr 5\n"))
	if err != nil || len(h.PerCPU) != 2 || h.PerCPU[1].Idle != 420*clockTick {
		t.Fatalf("%+v, %v", h, err)
	}
	a, b := h, h
	b.PerCPU = []hostCPU{{Idle: h.PerCPU[0].Idle + time.Second/4, At: h.At.Add(time.Second)},
		{Idle: h.PerCPU[1].Idle + time.Second, At: h.At.Add(time.Second)}}
	if got := busyPerCPU(a, b); len(got) != 2 || got[0] != 0.75 || got[1] != 0 {
		t.Errorf("busy %v", got)
	}
}

func TestParseFlagsMemory(t *testing.T) {
	c, err := parseFlags([]string{"--scenarios", "idle-conns,soak", "--soak-faults", "down, slow", "--soak-duration", "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.IdleConns != 10000 || c.IdleRate != 2000 || c.IdleTime != 20*time.Second || c.SoakRate != 2000 ||
		!slices.Equal(c.SoakFaults, []string{"down", "slow"}) || c.ShadowServer != serverHTTP || c.Pin {
		t.Errorf("config %+v", c)
	}
	scs := c.scenarios()
	if len(scs) != 2 || scs[0].Name != "idle-conns-10000" || scs[0].Conns != 10000 || scs[1].Name != "soak-2000" ||
		scs[1].Duration != 30*time.Second || scs[1].Warmup != 0 || !strings.Contains(scs[1].Title, "down or answering in 5s") {
		t.Errorf("scenarios %+v %+v", scs[0], scs[1])
	}
	if c, _ := parseFlags([]string{"--pin"}); c == nil || c.ShadowServer != serverSink {
		t.Error("--pin should default to the sink")
	}
	if c, _ := parseFlags([]string{"--pin", "--shadow-server", "http"}); c == nil || c.ShadowServer != serverHTTP {
		t.Error("--shadow-server should win")
	}
	if c, _ := parseFlags([]string{"--quick"}); c == nil || c.SoakDuration != 6*time.Second || c.IdleTime != 3*time.Second {
		t.Error("--quick durations")
	}
	for _, bad := range [][]string{{"--soak-faults", "flood"}, {"--idle-conns", "0"}, {"--idle-conns", "30000"},
		{"--soak-duration", "1s"}, {"--shadow-server", "nginx"}, {"--scenarios", "soak", "--soak-faults", ""},
		{"--primary-work", "-1s"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// memoryScenarios are an idle and a soak scenario's worth of results.
func memoryScenarios() []*Scenario {
	idle := &Scenario{Name: "idle-conns-10000", Title: "idle title", Kind: scIdleConns, Mode: modeIdle, Rate: 2000, Conns: 10000,
		Duration: 20 * time.Second}
	ir := &RunResult{Tool: kindShadowtee, Kind: kindShadowtee, Load: LoadResult{Scheduled: 10000, Sent: 10000, Completed: 10000},
		MaxRSSMiB: ptr(44), CompletePct: ptr(100), StartupS: ptr(0.05), Counters: map[string]float64{}, CPUCorePct: ptr(2.2), WakeupsPerS: ptr(251),
		Idle: &IdleResult{Conns: 10000, Open: 10000, Alive: 10000, IdleSeconds: 20, RSSIdleStartMiB: 39,
			RSSIdleEndMiB: 39.2, Memory: &MemBreakdown{RSSMiB: 39.2, AnonMiB: 9.8, BPFMiB: 16, FileMiB: 13.4}}}
	ir.Shadow.Conns = 4
	idle.Runs = []*RunResult{ir}
	idle.Targets = evaluate(idle)

	soak := &Scenario{Name: "soak-2000", Title: "soak title", Kind: scSoak, Mode: modeGet, Rate: 2000, Conns: 16,
		Duration: 60 * time.Second, Faults: []string{faultDown, faultBlackhole}}
	base := &RunResult{Tool: kindBaseline, Kind: kindBaseline, Load: LoadResult{Scheduled: 120000, Sent: 120000, Completed: 120000,
		Achieved: 2000, Latency: Quantiles{P99: 0.3}}}
	run := func(fault string, slope float64, unaccounted float64) *RunResult {
		return &RunResult{Tool: kindShadowtee, Kind: kindShadowtee, Fault: fault, StartupS: ptr(0.05), CPUCorePct: ptr(3),
			Load: LoadResult{Scheduled: 120000, Sent: 120000, Completed: 120000, Achieved: 2000, Latency: Quantiles{P99: 0.4}},
			Soak: &SoakResult{Fault: fault, StartMiB: 34, MaxMiB: 39, EndMiB: 38.5, Slope: slope, SlopeWindow: 30,
				Series: []SoakPoint{{0, 34}, {1, 35}, {2, 36}}},
			Ledger: &Ledger{Sent: 120000, Framed: 120000, Mirrored: 0, Failed: map[string]float64{"backoff": 119000 - unaccounted},
				Dropped: map[string]float64{"queue_full": 1000}, Unaccounted: unaccounted}}
	}
	soak.Runs = []*RunResult{base, run(faultDown, 0.1, 0), run(faultBlackhole, 3, 2)}
	soak.compare()
	soak.Targets = evaluate(soak)
	return []*Scenario{idle, soak}
}

func TestMemoryReports(t *testing.T) {
	scs := memoryScenarios()
	find := func(sc *Scenario, what string) Target { return findTarget(t, sc, what) }
	if x := find(scs[0], "max RSS with 10,000 idle keep-alive connections"); !x.Met || x.Value != "44.0 MiB" {
		t.Errorf("idle rss %+v", x)
	}
	if x := find(scs[1], "shadow down: RSS slope over the last 30 s"); !x.Met {
		t.Errorf("down slope %+v", x)
	}
	if x := find(scs[1], "shadow blackholed: RSS slope over the last 30 s"); x.Met || x.Value != "+3.00 MiB/min" {
		t.Errorf("blackholed slope %+v", x)
	}
	if x := find(scs[1], "shadow blackholed: every request sent mirrored or counted as lost"); x.Met {
		t.Errorf("blackholed ledger %+v", x)
	}
	if x := find(scs[1], "shadow down: primary requests answered"); !x.Met {
		t.Errorf("down primary %+v", x)
	}
	var b bytes.Buffer
	writeMarkdown(&b, &Report{Command: "shadowtee-bench --scenarios idle,soak", Machine: describeMachine(), Scenarios: scs,
		Config: &Config{ShadowServer: serverSink, PrimaryWork: 40 * time.Microsecond}})
	out := b.String()
	for _, want := range []string{"| shadowtee | 10,000 of 10,000 | 10,000 | 100.00% |", "| 2.20 | 251 |",
		"Memory of shadowtee at the end of the idle period: RSS 39.2 MiB", "| shadowtee, shadow blackholed | 2,000 |",
		"| +0.100 |", "| 34.0 | 39.0 | 38.5 | +3.00 |", "failed backoff=118998; dropped queue_full=1000",
		"RSS every 5 s (MiB): 34.0 36.0", "own sink", "40µs of CPU", "**missed**"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	checkTables(t, out)
}

// checkTables checks that every row of every table has as many cells as
// its header.
func checkTables(t *testing.T, md string) {
	t.Helper()
	for _, block := range strings.Split(md, "\n\n") {
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

// TestPinnedMarkdown renders a pinned saturation scenario: the ramp and
// the load side show both CPUs.
func TestPinnedMarkdown(t *testing.T) {
	sc := sampleScenarios()[5]
	sc.Pinned = &cpuPlan{Primary: 0, Others: 1}
	sc.Ramp = []RampStep{{Offered: 10000, Achieved: 10000, Pass: true, CPUBusy: []float64{0.5, 0.25}}}
	for _, r := range sc.Runs {
		r.CPUBusy = []float64{0.9, 0.8}
		r.PrimaryCores = 0.5
	}
	var b bytes.Buffer
	writeScenario(&b, sc)
	out := b.String()
	for _, want := range []string{"Pinned: the primary alone on CPU 0", "| 50% | 25% |", "| 90% | 80% |", " CPU 1 busy |",
		"| 12.5 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	checkTables(t, out)
}
