package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// RunResult is one row of a scenario: one tool under one load.
type RunResult struct {
	Tool    string     `json:"tool"`
	Kind    string     `json:"kind"`
	Pass    int        `json:"pass,omitempty"` // with --passes above 1
	Command string     `json:"command,omitempty"`
	Load    LoadResult `json:"load"`

	// DeltaP99 is the primary's p99 minus the baseline's, in ms.
	DeltaP99 *float64 `json:"delta_p99_ms,omitempty"`
	// Throughput is the achieved rate over the baseline's.
	Throughput *float64 `json:"throughput_vs_baseline,omitempty"`

	// Mirror completeness over the requests the generator wrote.
	Expected    int       `json:"expected,omitempty"`
	Once        int       `json:"mirrored_once,omitempty"`
	Missing     int       `json:"missing,omitempty"`
	Duplicated  int       `json:"duplicated,omitempty"`
	CompletePct *float64  `json:"complete_pct,omitempty"`
	Lag         Quantiles `json:"lag"` // shadow arrival minus client send
	Shadow      struct {
		Conns      int64 `json:"conns"`
		Unknown    int64 `json:"unknown_ids"`
		NoID       int64 `json:"no_id"`
		BodyErrors int64 `json:"body_errors"`
	} `json:"shadow"`

	// The tee's cost over the measured window.
	CPUSeconds  *float64 `json:"cpu_seconds,omitempty"`
	CPUPerReqUS *float64 `json:"cpu_us_per_request,omitempty"`
	CPUCorePct  *float64 `json:"cpu_pct_of_core,omitempty"`
	// BPFPerReqUS is the kernel program's run time per request, which the
	// process's own CPU time does not include.
	BPFPerReqUS *float64 `json:"bpf_us_per_request,omitempty"`
	BPFPerPktNS *float64 `json:"bpf_ns_per_packet,omitempty"`
	MaxRSSMiB   *float64 `json:"max_rss_mib,omitempty"`
	StartupS    *float64 `json:"startup_s,omitempty"` // launch to first mirrored probe
	ReadyS      *float64 `json:"ready_s,omitempty"`   // launch to ready file
	HostBusy    float64  `json:"host_busy_cores"`     // whole machine, measured window
	// HostBusyBefore is the machine's load just before the run, when
	// nothing of the bench was running: other work on the host.
	HostBusyBefore float64 `json:"host_busy_before_cores"`
	LoadgenCores   float64 `json:"loadgen_cores"` // the generator's own CPU
	// PrimaryCores and ShadowCores are the CPU of the bench's own services
	// over the measured window: on this one machine, the shadow's work
	// competes with the primary's, which it would not in production.
	PrimaryCores float64 `json:"primary_cores"`
	ShadowCores  float64 `json:"shadow_cores"`

	// Fault is the shadow's fault during a soak run; Soak and Idle are
	// what the soak and idle scenarios measure besides.
	Fault string      `json:"fault,omitempty"`
	Soak  *SoakResult `json:"soak,omitempty"`
	Idle  *IdleResult `json:"idle,omitempty"`
	// CPUBusy is the busy share of each CPU over the measured window, for
	// pinned runs.
	CPUBusy []float64 `json:"cpu_busy,omitempty"`

	Drops    map[string]float64 `json:"drops,omitempty"`
	Counters map[string]float64 `json:"counters,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
}

func ptr(v float64) *float64 { return &v }

// label names the run in tables: the tool, and its pass if there are
// several.
func (r *RunResult) label() string {
	l := r.Tool
	if r.Fault != "" {
		l += ", shadow " + faultName(r.Fault)
	}
	if r.Pass > 0 {
		l += fmt.Sprintf(" #%d", r.Pass)
	}
	return l
}

// runOne runs one tool under one load: start the tee and wait for its
// first mirror, run the load, wait for the mirrors to arrive, collect.
func (e *env) runOne(ctx context.Context, sc *Scenario, t tool, warmup, duration time.Duration) (*RunResult, error) {
	return e.runOneWith(ctx, sc, t, warmup, duration, "")
}

// runOneWith is runOne with a shadow fault (see applyFault) in force from
// the tee's start-up, which the healthy shadow lets it prove, until it has
// stopped; with a fault, it also follows the tee's memory second by second
// and accounts for every request sent.
func (e *env) runOneWith(ctx context.Context, sc *Scenario, t tool, warmup, duration time.Duration, fault string) (*RunResult, error) {
	cfg := e.cfg
	load := loadConfig{Addr: primaryAddr, Mode: sc.Mode, Rate: sc.Rate, Conns: sc.Conns, BodyKiB: sc.BodyKiB,
		Warmup: warmup, Duration: duration, Grace: cfg.Grace, Pipeline: cfg.Pipeline}
	res := &RunResult{Tool: t.Name, Kind: t.Kind, Command: t.Command, Fault: fault}
	res.HostBusyBefore = waitQuiet(ctx, cfg.QuietWait)
	if res.HostBusyBefore >= quietBelow {
		res.Notes = append(res.Notes, fmt.Sprintf("other work kept %.2f cores busy just before this run: its numbers are not reliable",
			res.HostBusyBefore))
	}
	if err := e.resetShadow(ctx, load.total(), cfg.ShadowDelay); err != nil {
		return nil, err
	}

	var tp tee
	var rss *rssSampler
	if t.Kind != kindBaseline {
		var err error
		tp, rss, err = e.launch(ctx, t, res)
		if err != nil {
			return nil, err
		}
		defer func() {
			if tp != nil {
				tp.stop()
				rss.stop()
			}
		}()
	}

	var before promSample
	if tp != nil {
		before = settledMetrics(ctx, tp)
	}
	var mend func() error
	if fault != "" && tp != nil {
		var err error
		if mend, err = e.applyFault(ctx, fault, load.total()); err != nil {
			return nil, fmt.Errorf("fault %s: %w", fault, err)
		}
		defer mend()
	}
	// Connections are opened before the first slot.
	load.Start = time.Now().Add(300 * time.Millisecond)
	var win window
	var wg sync.WaitGroup
	wg.Go(func() { win = e.measureWindow(ctx, tp, load, sc, t) })
	lr, err := e.runLoad(ctx, load)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	var mem *MemBreakdown
	if mend != nil {
		// Where the memory is, once the load is over: a scrape of the
		// agent's metrics allocates about a MiB, which would show in the
		// RSS series if it were taken during the load.
		mem = memBreakdown(ctx, tp)
	}
	res.Load = lr
	res.HostBusy = win.hostBusy
	if e.pin != nil {
		res.CPUBusy = win.perCPU
	}
	res.PrimaryCores = win.primary.Seconds() / load.Duration.Seconds()
	res.ShadowCores = win.shadow.Seconds() / load.Duration.Seconds()
	res.LoadgenCores = lr.CPUSeconds / (load.Warmup + load.Duration).Seconds()
	if win.note != "" {
		res.Notes = append(res.Notes, win.note)
	}
	if tp == nil {
		return res, nil
	}

	if err := e.settle(ctx, int64(lr.Sent), cfg.Settle, 10*cfg.Settle+5*time.Second); err != nil {
		return nil, err
	}
	after, err := tp.metrics(ctx)
	if err != nil && t.Kind == kindShadowtee {
		res.Notes = append(res.Notes, err.Error())
	}
	res.setCounters(before, after)
	if win.cpu > 0 && lr.WindowSent > 0 {
		res.CPUSeconds = ptr(win.cpu.Seconds())
		res.CPUPerReqUS = ptr(float64(win.cpu.Microseconds()) / float64(lr.WindowSent))
		res.CPUCorePct = ptr(100 * win.cpu.Seconds() / load.Duration.Seconds())
	}
	if win.bpfRuns > 0 && lr.WindowSent > 0 {
		res.BPFPerReqUS = ptr(float64(win.bpf.Nanoseconds()) / 1e3 / float64(lr.WindowSent))
		res.BPFPerPktNS = ptr(float64(win.bpf.Nanoseconds()) / float64(win.bpfRuns))
	}
	stopped := tp
	err = tp.stop()
	tp = nil
	samples := rss.stop()
	res.MaxRSSMiB = ptr(float64(samples.max()) / (1 << 20))
	if err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	if mend != nil {
		sk := &SoakResult{Fault: fault, Memory: mem}
		soakSeries(sk, samples, load.Start, load.Start.Add(load.Warmup+load.Duration))
		if at, ok := stopped.(*agentTee); ok {
			final, err := at.summary()
			if err != nil {
				res.Notes = append(res.Notes, err.Error())
			}
			if before != nil {
				sk.Ledger = newLedger(lr.Sent, before, after, final)
			}
		}
		res.Soak = sk
		if err := mend(); err != nil {
			return nil, fmt.Errorf("mend the shadow after %s: %w", fault, err)
		}
	}
	sr, err := e.shadowResults(ctx)
	if err != nil {
		return nil, err
	}
	res.addMirror(lr, sr)
	if res.Soak != nil {
		res.Soak.ShadowArrived = sr.Arrived
	}
	return res, nil
}

// setCounters records the growth of the agent's drop counters and of a
// few others between two scrapes; nothing without the second.
func (r *RunResult) setCounters(before, after promSample) {
	if after == nil {
		return
	}
	r.Drops = drops(before, after)
	r.Counters = map[string]float64{}
	for _, k := range []string{`shadowtee_requests_total{result="framed"}`, `shadowtee_requests_total{result="mirrored"}`,
		`shadowtee_segments_total`, `shadowtee_packets_total{result="copied"}`, `shadowtee_shadow_connections_opened_total`} {
		r.Counters[k] = after.delta(before, k)
	}
}

// launch starts the tee while probes run, and measures its start-up.
func (e *env) launch(ctx context.Context, t tool, res *RunResult) (tee, *rssSampler, error) {
	pr := e.startProbes(ctx, 10*time.Millisecond)
	defer pr.stop()
	// Let the probes run before the launch, so one is on the wire within
	// 10 ms of any moment the tee may start copying.
	time.Sleep(30 * time.Millisecond)
	launched := time.Now()
	var tp tee
	switch t.Kind {
	case kindShadowtee:
		at, err := startShadowtee(e.topo.Gateway, e.cfg.Binary, e.cfg.AgentArgs)
		if err != nil {
			return nil, nil, err
		}
		if err := at.waitReady(ctx, e.cfg.StartupTimeout); err != nil {
			at.p.Kill()
			return nil, nil, fmt.Errorf("shadowtee: %w\n%s", err, tail(at.output(), 20))
		}
		res.ReadyS = ptr(time.Since(launched).Seconds())
		tp = at
	case kindPeer:
		pt, err := startPeer(e.topo.Gateway, t.Command)
		if err != nil {
			return nil, nil, err
		}
		tp = pt
	}
	if e.pin != nil {
		if err := pinTree(tp.pid(), e.pin.Others); err != nil {
			tp.stop()
			return nil, nil, err
		}
	}
	rss := sampleRSS(tp.pid(), t.Kind == kindPeer)
	first, err := e.waitFirstProbe(ctx, e.cfg.StartupTimeout-time.Since(launched))
	select {
	case <-tp.exited():
		rss.stop()
		return nil, nil, fmt.Errorf("%s exited: %s", t.Name, tail(tp.output(), 20))
	default:
	}
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("start-up: %v within %v", err, e.cfg.StartupTimeout))
	} else {
		res.StartupS = ptr(first.Sub(launched).Seconds())
	}
	return tp, rss, nil
}

// settledMetrics scrapes the tee's counters once the start-up probes have
// been framed and settled: the last probes may still be on their way
// through the agent when launch returns, and a ledger that took them for
// the load's requests would be off by one. It waits until two scrapes
// 50 ms apart frame the same count and nothing is held for the shadow, at
// most 2 s.
func settledMetrics(ctx context.Context, tp tee) promSample {
	const framed, queued, mirrored = `shadowtee_requests_total{result="framed"}`, `shadowtee_requests_total{result="queued"}`,
		`shadowtee_requests_total{result="mirrored"}`
	prev, err := tp.metrics(ctx)
	if err != nil || prev == nil {
		return prev
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		cur, err := tp.metrics(ctx)
		if err != nil {
			return prev
		}
		var failed float64
		for _, v := range byReason(cur, "shadowtee_requests_failed_total") {
			failed += v
		}
		settled := cur[framed] == prev[framed] && cur[queued]-cur[mirrored]-failed == 0
		prev = cur
		if settled {
			break
		}
	}
	return prev
}

// window is what the bench measures around the generator's measured window.
type window struct {
	cpu      time.Duration // the tee's CPU time
	bpf      time.Duration // run time of the BPF programs on the gateway
	bpfRuns  uint64
	hostBusy float64
	perCPU   []float64     // busy share of each CPU
	primary  time.Duration // the primary's CPU time
	shadow   time.Duration // the shadow's CPU time
	note     string
}

func (e *env) measureWindow(ctx context.Context, tp tee, load loadConfig, sc *Scenario, t tool) window {
	var w window
	from, to := load.Start.Add(load.Warmup), load.Start.Add(load.Warmup+load.Duration)
	sleepUntil(from)
	var pids []int
	var cpu0 time.Duration
	var bpf0 time.Duration
	var runs0 uint64
	if tp != nil {
		pids = processTree(tp.pid())
		cpu0 = treeCPU(pids)
		bpf0, runs0, _, _ = bpfRuntime(e.topo.Gateway, sandbox.GatewayIface)
	}
	h0, _ := readHostCPU()
	services := []int{e.primary.Process.Pid, e.shadow.Process.Pid}
	p0, s0 := treeCPU(services[:1]), treeCPU(services[1:])
	var perf *exec.Cmd
	if tp != nil && e.cfg.Perf != "" {
		perf = startPerf(e.cfg.Perf, sc.Name+"-"+t.Name, tp.pid(), load.Duration)
	}
	sleepUntil(to)
	h1, _ := readHostCPU()
	w.primary, w.shadow = treeCPU(services[:1])-p0, treeCPU(services[1:])-s0
	w.hostBusy = busyCores(h0, h1, runtime.NumCPU())
	w.perCPU = busyPerCPU(h0, h1)
	if tp != nil {
		// A peer's shell may have forked since the start of the window.
		w.cpu = treeCPU(processTree(tp.pid())) - cpu0
		if bpf1, runs1, progs, err := bpfRuntime(e.topo.Gateway, sandbox.GatewayIface); err == nil && progs > 0 {
			w.bpf, w.bpfRuns = bpf1-bpf0, runs1-runs0
		}
	}
	if perf != nil {
		if err := perf.Wait(); err != nil {
			w.note = "perf record: " + err.Error()
		}
	}
	return w
}

// startPerf records the tee's stacks for d with perf, if perf is there.
func startPerf(dir, name string, pid int, d time.Duration) *exec.Cmd {
	name = strings.NewReplacer(" ", "-", "(", "", ")", "", "/", "-").Replace(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil
	}
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", fmt.Sprint(pid),
		"-o", out, "--", "sleep", fmt.Sprintf("%.3f", d.Seconds()))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil
	}
	return cmd
}

// addMirror computes completeness and lag from what the shadow saw.
func (r *RunResult) addMirror(lr LoadResult, sr ShadowResults) {
	unsent := map[int]bool{}
	for _, i := range lr.Unsent {
		unsent[i] = true
	}
	var lags []int64
	for i, n := range sr.Counts {
		if i >= lr.Scheduled || unsent[i] {
			continue
		}
		r.Expected++
		switch {
		case n == 0:
			r.Missing++
		case n == 1:
			r.Once++
		default:
			r.Duplicated++
		}
		if n > 0 {
			lags = append(lags, sr.LagNS[i])
		}
	}
	if r.Expected > 0 {
		r.CompletePct = ptr(100 * float64(r.Once) / float64(r.Expected))
	}
	r.Lag = quantiles(lags)
	r.Shadow.Conns = sr.Conns
	r.Shadow.Unknown = sr.Unknown
	r.Shadow.NoID = sr.NoID
	r.Shadow.BodyErrors = sr.BodyErr
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var errNoRoot = errors.New("the bench needs root: it builds network namespaces and attaches BPF programs")
