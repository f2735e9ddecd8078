package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// idleMaxConns bounds --idle-conns: the client has one address and the
// default ephemeral port range (32768-60999) has 28,232 ports.
const idleMaxConns = 25000

// raiseNoFile raises this process's open file limit to at least n: the
// soft limit to the hard one, and the hard one too if it is lower (which
// needs CAP_SYS_RESOURCE).
func raiseNoFile(n uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= n {
		return nil
	}
	want := lim
	want.Cur = max(lim.Max, n)
	want.Max = max(lim.Max, n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		// Without the capability, take what the hard limit allows.
		want.Cur, want.Max = lim.Max, lim.Max
		if err2 := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err2 != nil || lim.Max < n {
			return fmt.Errorf("open file limit %d, %d needed: %w", lim.Max, n, err)
		}
	}
	return nil
}

// idleConfig is one run of the idle load: Conns connections opened at
// Rate per second from Start, one request on each, then all of them kept
// open and silent from IdleFrom to IdleTo, and closed Tail later.
type idleConfig struct {
	Addr  string
	Conns int
	Rate  float64 // connections opened per second
	Start time.Time
	// Gap is the time between the last connection's slot and the start
	// of the idle period, for the last answers and mirrors.
	Gap  time.Duration
	Idle time.Duration
	// Tail keeps the connections open after IdleTo, so that whoever
	// measures at IdleTo still sees them.
	Tail time.Duration
}

func (c idleConfig) slot(i int) time.Time {
	return c.Start.Add(time.Duration(float64(i) * 1e9 / c.Rate))
}

// IdleFrom is when every connection should be open, answered and silent.
func (c idleConfig) IdleFrom() time.Time { return c.slot(c.Conns).Add(c.Gap) }

// IdleTo ends the measured idle period.
func (c idleConfig) IdleTo() time.Time { return c.IdleFrom().Add(c.Idle) }

// IdleLoadResult is what the idle generator measured.
type IdleLoadResult struct {
	LoadResult
	// Open counts connections that were open and answered at IdleFrom;
	// Alive those still open at IdleTo (the primary closed none).
	Open        int `json:"open"`
	Alive       int `json:"alive"`
	ClosedEarly int `json:"closed_early"`
	// AnsweredLate counts answers that came after IdleFrom.
	AnsweredLate int `json:"answered_late"`
	NoFile       int `json:"nofile_limit"`
}

// idleGenerator opens the connections and keeps them.
type idleGenerator struct {
	cfg   idleConfig
	begin []int64 // dial started, unix ns
	sent  []int64 // request written
	done  []int64 // answer read
	err   []uint8
	alive []bool // still open at IdleTo
	early []bool // closed (or sent bytes) before IdleTo
}

func newIdleGenerator(cfg idleConfig) *idleGenerator {
	n := cfg.Conns
	return &idleGenerator{cfg: cfg, begin: make([]int64, n), sent: make([]int64, n), done: make([]int64, n),
		err: make([]uint8, n), alive: make([]bool, n), early: make([]bool, n)}
}

// run opens every connection at its slot, each in a goroutine of its own
// that then waits, silent, for the end of the idle period. At most
// maxInflight connections are being opened at once.
func (g *idleGenerator) run(ctx context.Context) {
	reqHead := []byte(fmt.Sprintf("GET /idle HTTP/1.1\r\nHost: %s\r\nUser-Agent: shadowtee-bench\r\n", g.cfg.Addr))
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	for i := range g.cfg.Conns {
		sleepUntil(g.cfg.slot(i))
		select {
		case sem <- struct{}{}:
		default:
			g.err[i] = errInflight
			continue
		}
		wg.Go(func() { g.one(ctx, i, reqHead, sem) })
	}
	wg.Wait()
}

func (g *idleGenerator) one(ctx context.Context, i int, reqHead []byte, sem chan struct{}) {
	opening := true
	defer func() {
		if opening {
			<-sem
		}
	}()
	from, to := g.cfg.IdleFrom(), g.cfg.IdleTo()
	g.begin[i] = time.Now().UnixNano()
	dctx, cancel := context.WithDeadline(ctx, from)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", g.cfg.Addr)
	if err != nil {
		g.err[i] = errDial
		return
	}
	defer c.Close()
	c.SetDeadline(from)
	now := time.Now()
	buf := appendBenchRequest(nil, reqHead, i, now)
	if _, err := c.Write(buf); err != nil {
		g.err[i] = errWrite
		return
	}
	g.sent[i] = now.UnixNano()
	br := bufio.NewReaderSize(c, 1024)
	status, err := readAnswer(br)
	if err != nil {
		g.err[i] = errRead
		return
	}
	g.done[i] = time.Now().UnixNano()
	if status != 200 {
		g.err[i] = errStatus
	}
	<-sem
	opening = false
	// Idle: nothing is sent, and nothing should arrive, until the end.
	// The read returns at the deadline if the connection stays open.
	c.SetDeadline(to.Add(g.cfg.Tail))
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		g.alive[i] = true
	} else {
		g.early[i] = true
	}
}

func (g *idleGenerator) result(cpu time.Duration) IdleLoadResult {
	cfg := g.cfg
	r := IdleLoadResult{LoadResult: LoadResult{Mode: modeIdle, Offered: cfg.Rate, Conns: cfg.Conns, Scheduled: cfg.Conns,
		Errors: map[string]int{}, CPUSeconds: cpu.Seconds()}}
	from := cfg.IdleFrom().UnixNano()
	var lat, delay []int64
	for i := range cfg.Conns {
		if g.sent[i] != 0 {
			r.Sent++
			d := g.begin[i] - cfg.slot(i).UnixNano()
			delay = append(delay, d)
			if time.Duration(d) > lateAfter {
				r.Late++
			}
		} else {
			r.Unsent = append(r.Unsent, i)
		}
		if g.err[i] != errNone {
			r.Errors[errNames[g.err[i]]]++
		}
		if g.done[i] != 0 {
			r.Completed++
			lat = append(lat, g.done[i]-g.begin[i])
			if g.done[i] > from {
				r.AnsweredLate++
			} else if g.err[i] == errNone {
				r.Open++
			}
		}
		if g.alive[i] {
			r.Alive++
		}
		if g.early[i] {
			r.ClosedEarly++
		}
	}
	r.WindowSent = r.Sent
	r.Latency = quantiles(lat)
	r.SendDelay = quantiles(delay)
	return r
}

// runIdleLoad is the idle generator role, in the client namespace. It
// prints its IdleLoadResult as JSON on stdout.
func runIdleLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	var cfg idleConfig
	var start int64
	fs.StringVar(&cfg.Addr, "addr", "", "primary `host:port`")
	fs.IntVar(&cfg.Conns, "conns", 10000, "connections")
	fs.Float64Var(&cfg.Rate, "rate", 2000, "connections opened per second")
	fs.Int64Var(&start, "start", 0, "first slot, unix nanoseconds (0: now)")
	fs.DurationVar(&cfg.Gap, "gap", 3*time.Second, "from the last slot to the idle period")
	fs.DurationVar(&cfg.Idle, "idle", 20*time.Second, "idle period")
	fs.DurationVar(&cfg.Tail, "tail", 2*time.Second, "connections stay open this long after the idle period")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Conns <= 0 || cfg.Conns > idleMaxConns || cfg.Rate <= 0 || cfg.Idle <= 0 {
		return fmt.Errorf("idle: conns must be 1 to %d, rate and idle positive", idleMaxConns)
	}
	if err := raiseNoFile(uint64(cfg.Conns) + 256); err != nil {
		return err
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	cfg.Start = time.Now().Add(50 * time.Millisecond)
	if start != 0 {
		cfg.Start = time.Unix(0, start)
	}
	g := newIdleGenerator(cfg)
	before := selfCPU()
	g.run(ctx)
	r := g.result(selfCPU() - before)
	r.NoFile = int(lim.Cur)
	return json.NewEncoder(os.Stdout).Encode(r)
}

// runIdleGenerator runs the idle generator in the client namespace.
func (e *env) runIdleGenerator(ctx context.Context, cfg idleConfig) (IdleLoadResult, error) {
	var res IdleLoadResult
	args := []string{"--addr", cfg.Addr, "--conns", strconv.Itoa(cfg.Conns),
		"--rate", strconv.FormatFloat(cfg.Rate, 'f', -1, 64), "--start", strconv.FormatInt(cfg.Start.UnixNano(), 10),
		"--gap", cfg.Gap.String(), "--idle", cfg.Idle.String(), "--tail", cfg.Tail.String()}
	err := e.runGenerator(ctx, "idle", args, &res)
	return res, err
}

// IdleResult is what the idle scenario adds to a tee's run.
type IdleResult struct {
	Conns       int     `json:"conns"`
	Open        int     `json:"open"`
	Alive       int     `json:"alive"`
	ClosedEarly int     `json:"closed_early"`
	IdleSeconds float64 `json:"idle_s"`
	// IdleCPUPct is the tee's CPU during the idle period, % of one core.
	IdleCPUPct *float64 `json:"idle_cpu_pct,omitempty"`
	// RSS of the tee: at the start and the end of the idle period, and the
	// largest while the connections were opened or idle.
	RSSIdleStartMiB float64       `json:"rss_idle_start_mib"`
	RSSIdleEndMiB   float64       `json:"rss_idle_end_mib"`
	Memory          *MemBreakdown `json:"memory,omitempty"` // at the end of the idle period
}

// runIdle runs one tee under the idle load: launch it, open the
// connections, measure its CPU over the idle period and its memory
// throughout, then check what the shadow received.
func (e *env) runIdle(ctx context.Context, sc *Scenario, t tool) (*RunResult, error) {
	cfg := e.cfg
	res := &RunResult{Tool: t.Name, Kind: t.Kind, Command: t.Command}
	res.HostBusyBefore = waitQuiet(ctx, cfg.QuietWait)
	if res.HostBusyBefore >= quietBelow {
		res.Notes = append(res.Notes, fmt.Sprintf("other work kept %.2f cores busy just before this run: its numbers are not reliable",
			res.HostBusyBefore))
	}
	if err := e.resetShadow(ctx, sc.Conns, 0); err != nil {
		return nil, err
	}
	tp, rss, err := e.launch(ctx, t, res)
	if err != nil {
		return nil, err
	}
	defer func() {
		if tp != nil {
			tp.stop()
			rss.stop()
		}
	}()
	before := settledMetrics(ctx, tp)
	// The gap lets the last answers and mirrors arrive before the idle
	// period; the tail keeps the connections open while the bench reads
	// the tee's memory at its end.
	gap := min(3*time.Second, max(500*time.Millisecond, sc.Duration/4))
	ic := idleConfig{Addr: primaryAddr, Conns: sc.Conns, Rate: sc.Rate, Start: time.Now().Add(300 * time.Millisecond),
		Gap: gap, Idle: sc.Duration, Tail: gap}
	ir := &IdleResult{Conns: sc.Conns, IdleSeconds: ic.Idle.Seconds()}
	res.Idle = ir

	// Measure the idle period while the generator runs: the tee's CPU
	// from IdleFrom to IdleTo, then its memory, with the connections open.
	var wg sync.WaitGroup
	var cpu time.Duration
	var host float64
	var mem *MemBreakdown
	wg.Go(func() {
		sleepUntil(ic.IdleFrom())
		pids := processTree(tp.pid())
		c0 := treeCPU(pids)
		h0, _ := readHostCPU()
		sleepUntil(ic.IdleTo())
		cpu = treeCPU(processTree(tp.pid())) - c0
		h1, _ := readHostCPU()
		host = busyCores(h0, h1, runtime.NumCPU())
		mem = memBreakdown(ctx, tp)
	})
	lr, err := e.runIdleGenerator(ctx, ic)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	res.Load = lr.LoadResult
	res.HostBusy = host
	res.LoadgenCores = lr.CPUSeconds / time.Since(ic.Start).Seconds()
	ir.Open, ir.Alive, ir.ClosedEarly = lr.Open, lr.Alive, lr.ClosedEarly
	if lr.AnsweredLate > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d answers came after the idle period had started", lr.AnsweredLate))
	}
	ir.IdleCPUPct = ptr(100 * cpu.Seconds() / ic.Idle.Seconds())
	ir.Memory = mem

	if err := e.settle(ctx, int64(lr.Sent), cfg.Settle, 10*cfg.Settle+5*time.Second); err != nil {
		return nil, err
	}
	after, err := tp.metrics(ctx)
	if err != nil && t.Kind == kindShadowtee {
		res.Notes = append(res.Notes, err.Error())
	}
	res.setCounters(before, after)
	err = tp.stop()
	tp = nil
	samples := rss.stop()
	res.MaxRSSMiB = ptr(float64(samples.max()) / (1 << 20))
	ir.RSSIdleStartMiB = float64(samples.at(ic.IdleFrom())) / (1 << 20)
	ir.RSSIdleEndMiB = float64(samples.at(ic.IdleTo())) / (1 << 20)
	if err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	sr, err := e.shadowResults(ctx)
	if err != nil {
		return nil, err
	}
	res.addMirror(lr.LoadResult, sr)
	slog.Info("idle run done", "tool", t.Name, "open", ir.Open, "alive", ir.Alive, "max_rss_mib", *res.MaxRSSMiB)
	return res, nil
}
