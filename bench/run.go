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
	"slices"
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
		Conns int64 `json:"conns"` // connections accepted
		Peak  int64 `json:"peak"`  // the most open at once
		// HTTP1 and HTTP2 count the requests that arrived by protocol.
		HTTP1      int64 `json:"http1"`
		HTTP2      int64 `json:"http2"`
		Unknown    int64 `json:"unknown_ids"`
		NoID       int64 `json:"no_id"`
		BodyErrors int64 `json:"body_errors"`
	} `json:"shadow"`

	// The tee's cost over the measured window.
	CPUSeconds  *float64 `json:"cpu_seconds,omitempty"`
	CPUPerReqUS *float64 `json:"cpu_us_per_request,omitempty"`
	CPUCorePct  *float64 `json:"cpu_pct_of_core,omitempty"`
	// Switches are the tee's context switches over the window, summed
	// over its threads; a wake-up is either kind.
	Switches struct {
		Voluntary   uint64 `json:"voluntary"`
		Involuntary uint64 `json:"involuntary"`
	} `json:"context_switches"`
	WakeupsPerS   *float64 `json:"wakeups_per_s,omitempty"`
	WakeupsPerReq *float64 `json:"wakeups_per_request,omitempty"`
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
	// what the soak and idle-conns scenarios measure besides.
	Fault string      `json:"fault,omitempty"`
	Soak  *SoakResult `json:"soak,omitempty"`
	Idle  *IdleResult `json:"idle,omitempty"`
	// CPUBusy is the busy share of each CPU over the measured window, for
	// pinned runs.
	CPUBusy []float64 `json:"cpu_busy,omitempty"`

	// Ledger accounts for every request sent, from shadowtee's counters
	// and its exit summary.
	Ledger   *Ledger            `json:"ledger,omitempty"`
	Drops    map[string]float64 `json:"drops,omitempty"`
	Counters map[string]float64 `json:"counters,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
}

func ptr(v float64) *float64 { return &v }

func newResult(t tool, fault string) *RunResult {
	return &RunResult{Tool: t.Name, Kind: t.Kind, Command: t.Command, Fault: fault}
}

// label names the run in tables: the tool, its fault, and its pass if
// there are several.
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

// runOne runs one tool under one load, with a shadow fault (see
// applyFault, soak only) in force from the tee's start-up, which the
// healthy shadow lets it prove, until it has stopped.
func (e *env) runOne(ctx context.Context, sc *Scenario, t tool, fault string) (*RunResult, error) {
	switch sc.Kind {
	case scIdleConns:
		return e.runIdle(ctx, sc, t)
	case scQuiet:
		return e.runQuiet(ctx, sc, t)
	}
	cfg := e.cfg
	load := loadConfig{Addr: primaryAddr, Mode: sc.Mode, Rate: sc.Rate, Conns: sc.Conns, Streams: sc.Streams,
		BodyKiB: sc.BodyKiB, Answer: sc.Answer, Warmup: sc.Warmup, Duration: sc.Duration, Grace: cfg.Grace, Pipeline: cfg.Pipeline}
	res := newResult(t, fault)
	if fault == faultBlackhole {
		if _, err := exec.LookPath("iptables"); err != nil {
			res.Notes = []string{"skipped: iptables is not installed, so the shadow cannot be blackholed"}
			return res, nil
		}
	}
	if err := e.prepare(ctx, res, load.ids(), sc.Delay); err != nil {
		return nil, err
	}
	var a *attachment
	if t.Kind != kindBaseline {
		var err error
		if a, err = e.attach(ctx, t, res); err != nil {
			return nil, err
		}
		defer a.close()
	}
	var mend func() error
	if fault != "" && a != nil {
		var err error
		if mend, err = e.applyFault(ctx, fault, load.ids()); err != nil {
			return nil, fmt.Errorf("fault %s: %w", fault, err)
		}
		defer mend()
	}
	// Connections are opened before the first slot.
	load.Start = time.Now().Add(300 * time.Millisecond)
	from, to := load.Start.Add(load.Warmup), load.Start.Add(load.Warmup+load.Duration)
	var u0, u1 usage
	var wg sync.WaitGroup
	wg.Go(func() { u0, u1 = e.measure(a, from, to, sc.Name+"-"+t.Name) })
	lr, err := e.runLoad(ctx, load)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	res.Load = lr
	res.setUsage(u0, u1, lr.WindowSent, e.pin != nil)
	res.LoadgenCores = lr.CPUSeconds / (load.Warmup + load.Duration).Seconds()
	if a == nil {
		return res, nil
	}
	var mem *MemBreakdown
	if mend != nil {
		// Where the memory is, once the load is over: a scrape of the
		// agent's metrics allocates about a MiB, which would show in the
		// RSS series if it were taken during the load.
		mem = memBreakdown(ctx, a.tp)
	}
	if err := e.settle(ctx, int64(lr.Sent), cfg.Settle, 10*cfg.Settle+5*time.Second); err != nil {
		return nil, err
	}
	// The last mirrors to arrive are answered after the shadow's delay,
	// and counted as mirrored only then.
	time.Sleep(sc.Delay.Max)
	after, samples := a.detach(ctx, res)
	if at, ok := a.tp.(*agentTee); ok && a.before != nil {
		final, err := at.summary()
		if err != nil {
			res.Notes = append(res.Notes, err.Error())
		}
		res.Ledger = newLedger(lr.Sent, a.before, after, final)
		res.settleDrops()
	}
	if mend != nil {
		res.Soak = &SoakResult{Fault: fault, Memory: mem}
		soakSeries(res.Soak, samples, load.Start, to)
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

// prepare waits for the machine to idle, noting it if it did not, and
// resets the shadow to expect ids below n and answer after delay.
func (e *env) prepare(ctx context.Context, res *RunResult, n int, delay delayRange) error {
	res.HostBusyBefore = waitQuiet(ctx, e.cfg.QuietWait)
	if res.HostBusyBefore >= quietBelow {
		res.Notes = append(res.Notes, fmt.Sprintf("other work kept %.2f cores busy just before this run: its numbers are not reliable",
			res.HostBusyBefore))
	}
	return e.resetShadow(ctx, n, delay)
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

// settleDrops replaces the request drops scraped when the load ended with
// the ledger's, which the exit summary completes: requests still held for
// the shadow then were mirrored or failed by the agent's exit.
func (r *RunResult) settleDrops() {
	l := r.Ledger
	if l == nil || l.Framed == 0 {
		return
	}
	if r.Drops == nil {
		r.Drops = map[string]float64{}
	}
	for _, part := range []struct {
		name string
		m    map[string]float64
	}{{"failed", l.Failed}, {"dropped", l.Dropped}, {"skipped", l.Skipped}} {
		for k := range r.Drops {
			if strings.HasPrefix(k, part.name+"/") {
				delete(r.Drops, k)
			}
		}
		for reason, n := range part.m {
			if n > 0 {
				r.Drops[part.name+"/"+reason] = n
			}
		}
	}
}

// attachment is a tee running on the gateway for one run, its memory
// sampled throughout.
type attachment struct {
	tp  tee
	rss *rssSampler
	// before is the tee's counters once its start-up has settled.
	before promSample
	done   bool
}

// attach starts the tee while probes run, measures its start-up, and
// takes its counters once the start-up probes have settled.
func (e *env) attach(ctx context.Context, t tool, res *RunResult) (*attachment, error) {
	pr := e.startProbes(ctx, 10*time.Millisecond)
	defer pr.stop()
	// Let the probes run before the launch, so one is on the wire within
	// 10 ms of any moment the tee may start copying.
	time.Sleep(30 * time.Millisecond)
	launched := time.Now()
	var tp tee
	switch t.Kind {
	case kindShadowtee:
		at, err := startShadowtee(e.topo.Gateway, e.cfg.Binary, append(slices.Clone(e.cfg.AgentArgs), t.Args...))
		if err != nil {
			return nil, err
		}
		if err := at.waitReady(ctx, e.cfg.StartupTimeout); err != nil {
			at.p.Kill()
			return nil, fmt.Errorf("shadowtee: %w: %s", err, tail(at.output(), 2))
		}
		res.ReadyS = ptr(time.Since(launched).Seconds())
		tp = at
	case kindPeer:
		pt, err := startPeer(e.topo.Gateway, t.Command)
		if err != nil {
			return nil, err
		}
		tp = pt
	}
	if e.pin != nil {
		if err := pinTree(tp.pid(), e.pin.Others); err != nil {
			tp.stop()
			return nil, err
		}
	}
	a := &attachment{tp: tp, rss: sampleRSS(tp.pid(), t.Kind == kindPeer)}
	first, err := e.waitFirstProbe(ctx, e.cfg.StartupTimeout-time.Since(launched))
	select {
	case <-tp.exited():
		a.close()
		return nil, fmt.Errorf("%s exited: %s", t.Name, tail(tp.output(), 2))
	default:
	}
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("start-up: %v within %v", err, e.cfg.StartupTimeout))
	} else {
		res.StartupS = ptr(first.Sub(launched).Seconds())
	}
	pr.stop()
	a.before = settledMetrics(ctx, tp)
	return a, nil
}

// close stops the tee unless detach did; for the paths that fail.
func (a *attachment) close() {
	if !a.done {
		a.done = true
		a.tp.stop()
		a.rss.stop()
	}
}

// detach scrapes the tee's counters, stops it and records its largest
// RSS; it returns the counters and every RSS reading.
func (a *attachment) detach(ctx context.Context, res *RunResult) (promSample, rssSamples) {
	after, err := a.tp.metrics(ctx)
	if err != nil && res.Kind == kindShadowtee {
		res.Notes = append(res.Notes, err.Error())
	}
	res.setCounters(a.before, after)
	a.done = true
	err = a.tp.stop()
	samples := a.rss.stop()
	res.MaxRSSMiB = ptr(float64(samples.max()) / (1 << 20))
	if err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	return after, samples
}

// settledMetrics scrapes the tee's counters once the start-up probes have
// been framed and settled: the last probes may still be on their way
// through the agent when they stop, and a ledger that took them for the
// load's requests would be off by one. It waits until two scrapes 50 ms
// apart frame the same count and nothing is held for the shadow, at most
// 2 s.
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

// usage is one reading of what a run measures: the tee's CPU time and
// context switches, the BPF program's run time, the machine's CPU and the
// CPU of the bench's own services.
type usage struct {
	at                time.Time
	tee               bool
	cpu               time.Duration
	vol, invol        uint64
	bpf               time.Duration
	bpfRuns           uint64
	bpfOK             bool
	host              hostCPU
	primary, shadowNS time.Duration
}

func (e *env) readUsage(a *attachment) usage {
	u := usage{at: time.Now()}
	u.host, _ = readHostCPU()
	u.primary, u.shadowNS = treeCPU([]int{e.primary.Process.Pid}), treeCPU([]int{e.shadow.Process.Pid})
	if a != nil {
		// A peer's shell may have forked since the last reading.
		pids := processTree(a.tp.pid())
		u.tee, u.cpu = true, treeCPU(pids)
		u.vol, u.invol = treeSwitches(pids)
		if bpf, runs, progs, err := bpfRuntime(e.topo.Gateway, sandbox.GatewayIface); err == nil && progs > 0 {
			u.bpf, u.bpfRuns, u.bpfOK = bpf, runs, true
		}
	}
	return u
}

// measure reads the usage at from and at to, and records the tee with
// perf in between if --perf asks.
func (e *env) measure(a *attachment, from, to time.Time, name string) (usage, usage) {
	sleepUntil(from)
	u0 := e.readUsage(a)
	var perf *exec.Cmd
	if a != nil && e.cfg.Perf != "" {
		perf = startPerf(e.cfg.Perf, name, a.tp.pid(), to.Sub(from))
	}
	sleepUntil(to)
	u1 := e.readUsage(a)
	if perf != nil {
		perf.Wait()
	}
	return u0, u1
}

// setUsage fills in what the window from a to b cost: per request over
// requests, if any.
func (r *RunResult) setUsage(a, b usage, requests int, perCPU bool) {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return
	}
	r.HostBusy = busyCores(a.host, b.host, runtime.NumCPU())
	if perCPU {
		r.CPUBusy = busyPerCPU(a.host, b.host)
	}
	r.PrimaryCores = (b.primary - a.primary).Seconds() / wall
	r.ShadowCores = (b.shadowNS - a.shadowNS).Seconds() / wall
	if !a.tee || !b.tee {
		return
	}
	cpu := b.cpu - a.cpu
	r.Switches.Voluntary, r.Switches.Involuntary = b.vol-a.vol, b.invol-a.invol
	wakeups := float64(r.Switches.Voluntary + r.Switches.Involuntary)
	r.CPUSeconds = ptr(cpu.Seconds())
	r.CPUCorePct = ptr(100 * cpu.Seconds() / wall)
	r.WakeupsPerS = ptr(wakeups / wall)
	if requests > 0 {
		r.CPUPerReqUS = ptr(float64(cpu.Microseconds()) / float64(requests))
		r.WakeupsPerReq = ptr(wakeups / float64(requests))
		if a.bpfOK && b.bpfOK {
			r.BPFPerReqUS = ptr(float64((b.bpf - a.bpf).Nanoseconds()) / 1e3 / float64(requests))
			if runs := b.bpfRuns - a.bpfRuns; runs > 0 {
				r.BPFPerPktNS = ptr(float64((b.bpf - a.bpf).Nanoseconds()) / float64(runs))
			}
		}
	}
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

// addMirror computes completeness and lag from what the shadow saw. Each
// id is expected lr.Repeat times: once, unless the load reuses ids (h2load
// requests the same paths from each client).
func (r *RunResult) addMirror(lr LoadResult, sr ShadowResults) {
	unsent := map[int]bool{}
	for _, i := range lr.Unsent {
		unsent[i] = true
	}
	want := uint32(max(1, lr.Repeat))
	var lags []int64
	for i, n := range sr.Counts {
		if i >= lr.Scheduled || unsent[i] {
			continue
		}
		// An id that arrived more often than expected is duplicated
		// whole: which of its arrivals were the extra ones is unknown.
		r.Expected += int(want)
		if n > want {
			r.Duplicated += int(want)
		} else {
			r.Once += int(n)
			r.Missing += int(want - n)
		}
		if n > 0 && sr.LagNS[i] > 0 {
			lags = append(lags, sr.LagNS[i])
		}
	}
	if r.Expected > 0 {
		r.CompletePct = ptr(100 * float64(r.Once) / float64(r.Expected))
	}
	r.Lag = quantiles(lags)
	s := &r.Shadow
	s.Conns, s.Peak, s.HTTP1, s.HTTP2 = sr.Conns, sr.Peak, sr.HTTP1, sr.HTTP2
	s.Unknown, s.NoID, s.BodyErrors = sr.Unknown, sr.NoID, sr.BodyErr
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

var errNoRoot = errors.New("the bench needs root: it builds network namespaces and attaches BPF programs")
