package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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
	cfg idleConfig
	records
	alive []bool // still open at IdleTo
	early []bool // closed (or sent bytes) before IdleTo
}

func newIdleGenerator(cfg idleConfig) *idleGenerator {
	n := cfg.Conns
	return &idleGenerator{cfg: cfg, records: newRecords(n), alive: make([]bool, n), early: make([]bool, n)}
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
	c, br := g.ask(ctx, i, g.cfg.Addr, g.cfg.IdleFrom(), reqHead, nil)
	<-sem
	if c == nil {
		return
	}
	defer c.Close()
	// Idle: nothing is sent, and nothing should arrive, until the end.
	// The read returns at the deadline if the connection stays open.
	c.SetDeadline(g.cfg.IdleTo().Add(g.cfg.Tail))
	_, err := br.ReadByte()
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
		g.account(&r.LoadResult, i, cfg.slot(i).UnixNano(), true, &delay)
		if g.done[i] != 0 {
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

// runIdleLoad is the idle generator role: as runLoad, with an idleConfig
// and an IdleLoadResult.
func runIdleLoad(ctx context.Context) error {
	var cfg idleConfig
	if err := json.NewDecoder(os.Stdin).Decode(&cfg); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if err := raiseNoFile(uint64(cfg.Conns) + 256); err != nil {
		return err
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	g := newIdleGenerator(cfg)
	before := selfCPU()
	g.run(ctx)
	r := g.result(selfCPU() - before)
	r.NoFile = int(lim.Cur)
	return json.NewEncoder(os.Stdout).Encode(r)
}

// IdleResult is what the idle-conns scenario adds to a tee's run; its
// CPU and wake-ups are those of the idle period.
type IdleResult struct {
	Conns       int     `json:"conns"`
	Open        int     `json:"open"`
	Alive       int     `json:"alive"`
	ClosedEarly int     `json:"closed_early"`
	IdleSeconds float64 `json:"idle_s"`
	// RSS of the tee at the start and the end of the idle period.
	RSSIdleStartMiB float64       `json:"rss_idle_start_mib"`
	RSSIdleEndMiB   float64       `json:"rss_idle_end_mib"`
	Memory          *MemBreakdown `json:"memory,omitempty"` // at the end of the idle period
}

// runIdle runs one tee under the idle-conns load: launch it, open the
// connections, measure its CPU and wake-ups over the idle period and its
// memory throughout, then check what the shadow received.
func (e *env) runIdle(ctx context.Context, sc *Scenario, t tool) (*RunResult, error) {
	res := newResult(t, "")
	if err := e.prepare(ctx, res, sc.Conns, delayRange{}); err != nil {
		return nil, err
	}
	a, err := e.attach(ctx, t, res)
	if err != nil {
		return nil, err
	}
	defer a.close()
	// The gap lets the last answers and mirrors arrive before the idle
	// period; the tail keeps the connections open while the bench reads
	// the tee's memory at its end.
	gap := min(3*time.Second, max(500*time.Millisecond, sc.Duration/4))
	ic := idleConfig{Addr: primaryAddr, Conns: sc.Conns, Rate: sc.Rate, Start: time.Now().Add(300 * time.Millisecond),
		Gap: gap, Idle: sc.Duration, Tail: gap}
	ir := &IdleResult{Conns: sc.Conns, IdleSeconds: ic.Idle.Seconds()}
	res.Idle = ir
	var u0, u1 usage
	var wg sync.WaitGroup
	wg.Go(func() {
		u0, u1 = e.measure(a, ic.IdleFrom(), ic.IdleTo(), sc.Name+"-"+t.Name)
		ir.Memory = memBreakdown(ctx, a.tp) // with the connections still open
	})
	var lr IdleLoadResult
	err = e.runGenerator(ctx, "idle", ic, &lr)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	res.Load = lr.LoadResult
	res.setUsage(u0, u1, 0, false)
	res.LoadgenCores = lr.CPUSeconds / time.Since(ic.Start).Seconds()
	ir.Open, ir.Alive, ir.ClosedEarly = lr.Open, lr.Alive, lr.ClosedEarly
	if lr.AnsweredLate > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d answers came after the idle period had started", lr.AnsweredLate))
	}
	if err := e.settle(ctx, int64(lr.Sent), e.cfg.Settle, 10*e.cfg.Settle+5*time.Second); err != nil {
		return nil, err
	}
	_, samples := a.detach(ctx, res)
	ir.RSSIdleStartMiB = float64(samples.at(ic.IdleFrom())) / (1 << 20)
	ir.RSSIdleEndMiB = float64(samples.at(ic.IdleTo())) / (1 << 20)
	sr, err := e.shadowResults(ctx)
	if err != nil {
		return nil, err
	}
	res.addMirror(lr.LoadResult, sr)
	slog.Info("idle-conns run done", "tool", t.Name, "open", ir.Open, "alive", ir.Alive, "max_rss_mib", *res.MaxRSSMiB)
	return res, nil
}

// runQuiet runs one tee attached with no traffic at all: once its start-up
// probes have settled, its CPU, wake-ups and memory over sc.Duration are
// its floor, what it costs a node that sends nothing.
func (e *env) runQuiet(ctx context.Context, sc *Scenario, t tool) (*RunResult, error) {
	res := newResult(t, "")
	if err := e.prepare(ctx, res, 0, delayRange{}); err != nil {
		return nil, err
	}
	a, err := e.attach(ctx, t, res)
	if err != nil {
		return nil, err
	}
	defer a.close()
	from := time.Now().Add(e.cfg.Settle)
	to := from.Add(sc.Duration)
	sleepUntil(from)
	s0, err := e.shadowSummary(ctx)
	if err != nil {
		return nil, err
	}
	u0, u1 := e.measure(a, from, to, sc.Name+"-"+t.Name)
	s1, err := e.shadowSummary(ctx)
	if err != nil {
		return nil, err
	}
	res.setUsage(u0, u1, 0, false)
	if n := s1.HTTP1 + s1.HTTP2 + s1.Probes - s0.HTTP1 - s0.HTTP2 - s0.Probes; n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d requests reached the shadow during the quiet period (start-up probes mirrored late?)", n))
	}
	_, samples := a.detach(ctx, res)
	res.MaxRSSMiB = ptr(float64(samples.between(from, to).max()) / (1 << 20))
	return res, nil
}
