package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Scenario kinds, as --scenarios names them.
const (
	scGet        = "get"
	scPost       = "post"
	scNewConn    = "newconn"
	scSaturation = "saturation"
	scIdle       = "idle" // opt-in: memory with many idle keep-alive connections
	scSoak       = "soak" // opt-in: memory and accounting under shadow faults
)

// Scenario is one load, run once per tool.
type Scenario struct {
	Name     string        `json:"name"`
	Title    string        `json:"title"`
	Kind     string        `json:"kind"`
	Mode     string        `json:"mode"`
	Rate     float64       `json:"rate"`
	Conns    int           `json:"conns"`
	BodyKiB  int           `json:"body_kib,omitempty"`
	Warmup   time.Duration `json:"warmup_ns"`
	Duration time.Duration `json:"duration_ns"`
	Ramp     []RampStep    `json:"ramp,omitempty"`
	Faults   []string      `json:"faults,omitempty"` // soak: one run per fault
	Runs     []*RunResult  `json:"runs"`
	Targets  []Target      `json:"targets,omitempty"`
	// Pinned says where the processes ran, if the scenario pinned them.
	Pinned *cpuPlan `json:"pinned,omitempty"`
}

// RampStep is one rate tried while looking for the primary's saturation.
type RampStep struct {
	Offered  float64 `json:"offered_rps"`
	Achieved float64 `json:"achieved_rps"`
	P99      float64 `json:"p99_ms"`
	// SlotP99 is the p99 from each request's slot: it grows once requests
	// wait for a busy connection, which the service time alone hides.
	SlotP99 float64 `json:"p99_from_slot_ms"`
	Late    int     `json:"late"`
	Errors  int     `json:"errors"`
	Pass    bool    `json:"pass"`
	Why     string  `json:"why,omitempty"`
	// CPUBusy is the busy share of each CPU, for pinned ramps.
	CPUBusy []float64 `json:"cpu_busy,omitempty"`
}

// scenarios expands the configured kinds into the loads to run, except the
// saturation scenario, whose rate is found by a ramp first.
func (c *Config) scenarios() []*Scenario {
	var out []*Scenario
	add := func(kind, mode string, rate float64, body int, title string) {
		out = append(out, &Scenario{Name: fmt.Sprintf("%s-%.0f", kind, rate), Title: title, Kind: kind, Mode: mode,
			Rate: rate, Conns: c.Conns, BodyKiB: body, Warmup: c.Warmup, Duration: c.Duration})
	}
	for _, k := range c.Scenarios {
		switch k {
		case scGet:
			for _, r := range c.Rates {
				add(scGet, modeGet, r, 0, fmt.Sprintf("GET, %d keep-alive connections, %s req/s", c.Conns, thousands(r)))
			}
		case scPost:
			add(scPost, modePost, c.PostRate, c.PostKiB,
				fmt.Sprintf("POST with a %d KiB body, %d keep-alive connections, %s req/s", c.PostKiB, c.Conns, thousands(c.PostRate)))
		case scNewConn:
			add(scNewConn, modeNewConn, c.NewConnRate, 0,
				fmt.Sprintf("GET on a new connection per request, %s req/s", thousands(c.NewConnRate)))
		case scSaturation:
			out = append(out, &Scenario{Name: scSaturation, Kind: scSaturation, Mode: modeGet, Conns: c.Conns,
				Warmup: c.Warmup, Duration: c.Duration})
		case scIdle:
			out = append(out, &Scenario{Name: fmt.Sprintf("idle-%d", c.IdleConns), Kind: scIdle, Mode: modeIdle,
				Rate: c.IdleRate, Conns: c.IdleConns, Duration: c.IdleTime,
				Title: fmt.Sprintf("%s idle keep-alive connections: opened at %s a second, one GET each, then %s idle",
					thousands(float64(c.IdleConns)), thousands(c.IdleRate), c.IdleTime)})
		case scSoak:
			out = append(out, &Scenario{Name: fmt.Sprintf("soak-%.0f", c.SoakRate), Kind: scSoak, Mode: modeGet,
				Rate: c.SoakRate, Conns: c.Conns, Duration: c.SoakDuration, Faults: c.SoakFaults,
				Title: fmt.Sprintf("GET, %d keep-alive connections, %s req/s for %s with the shadow %s", c.Conns,
					thousands(c.SoakRate), c.SoakDuration, faultList(c.SoakFaults, c.SoakDelay))})
		}
	}
	for _, s := range out {
		if s.Mode == modeNewConn {
			s.Conns = 0
		}
	}
	return out
}

// runScenario runs every tool under the scenario's load and fills in the
// comparisons with the baseline and the targets.
func (e *env) runScenario(ctx context.Context, sc *Scenario, tools []tool) error {
	switch sc.Kind {
	case scIdle:
		return e.runIdleScenario(ctx, sc, tools)
	case scSoak:
		return e.runSoak(ctx, sc, tools)
	case scSaturation:
		if e.cfg.Pin {
			unpin, err := e.pinServices(sc)
			if err != nil {
				return err
			}
			defer unpin()
		}
		if err := e.ramp(ctx, sc); err != nil {
			return err
		}
	}
	for pass := 1; pass <= e.cfg.Passes; pass++ {
		for _, t := range tools {
			slog.Info("run", "scenario", sc.Name, "tool", t.Name, "pass", pass)
			r, err := e.runOne(ctx, sc, t, sc.Warmup, sc.Duration)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				if t.Kind == kindBaseline {
					return fmt.Errorf("%s baseline: %w", sc.Name, err)
				}
				slog.Error("run failed", "scenario", sc.Name, "tool", t.Name, "err", err)
				r = &RunResult{Tool: t.Name, Kind: t.Kind, Command: t.Command, Notes: []string{"failed: " + err.Error()}}
			}
			if e.cfg.Passes > 1 {
				r.Pass = pass
			}
			sc.Runs = append(sc.Runs, r)
		}
	}
	sc.compare()
	sc.Targets = evaluate(sc, e.cfg.shadowWorkers())
	return nil
}

// pinServices puts the primary alone on its CPU and the shadow on the
// other one, and makes runs pin the generator and the tees there too, until
// the returned function puts everything back.
func (e *env) pinServices(sc *Scenario) (func(), error) {
	plan, err := newCPUPlan()
	if err != nil {
		return nil, err
	}
	unpin := func() {
		e.pin = nil
		for _, c := range []*exec.Cmd{e.primary, e.shadow} {
			if err := pinProcess(c.Process.Pid, plan.all...); err != nil {
				slog.Warn("unpin", "err", err)
			}
		}
	}
	if err := pinProcess(e.primary.Process.Pid, plan.Primary); err != nil {
		return nil, err
	}
	if err := pinProcess(e.shadow.Process.Pid, plan.Others); err != nil {
		unpin()
		return nil, err
	}
	e.pin, sc.Pinned = plan, plan
	slog.Info("pinned", "primary_cpu", plan.Primary, "others_cpu", plan.Others)
	return unpin, nil
}

// runIdleScenario runs each tee once per pass under the idle load; the
// baseline has nothing to measure there.
func (e *env) runIdleScenario(ctx context.Context, sc *Scenario, tools []tool) error {
	for pass := 1; pass <= e.cfg.Passes; pass++ {
		for _, t := range tools {
			if t.Kind == kindBaseline {
				continue
			}
			slog.Info("run", "scenario", sc.Name, "tool", t.Name, "pass", pass)
			r, err := e.runIdle(ctx, sc, t)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				slog.Error("run failed", "scenario", sc.Name, "tool", t.Name, "err", err)
				r = &RunResult{Tool: t.Name, Kind: t.Kind, Command: t.Command, Notes: []string{"failed: " + err.Error()}}
			}
			if e.cfg.Passes > 1 {
				r.Pass = pass
			}
			sc.Runs = append(sc.Runs, r)
		}
	}
	sc.Targets = evaluate(sc, e.cfg.shadowWorkers())
	return nil
}

// faultList names the soak's faults for a title.
func faultList(faults []string, delay time.Duration) string {
	var names []string
	for _, f := range faults {
		switch f {
		case faultDown:
			names = append(names, "down")
		case faultBlackhole:
			names = append(names, "blackholed")
		case faultSlow:
			names = append(names, "answering in "+delay.String())
		}
	}
	switch len(names) {
	case 0:
		return "healthy"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// compare fills each run's differences with the baseline of its pass.
func (sc *Scenario) compare() {
	base := map[int]*RunResult{}
	for _, r := range sc.Runs {
		if r.Kind == kindBaseline && base[r.Pass] == nil {
			base[r.Pass] = r
		}
	}
	for _, r := range sc.Runs {
		b := base[r.Pass]
		if b == nil || r == b || r.Load.Scheduled == 0 {
			continue
		}
		r.DeltaP99 = ptr(r.Load.Latency.P99 - b.Load.Latency.P99)
		if b.Load.Achieved > 0 {
			r.Throughput = ptr(r.Load.Achieved / b.Load.Achieved)
		}
	}
}

// Thresholds of the saturation ramp: a rate the primary serves keeps 95% of
// the offered rate, a p99 from slot under rampMaxP99 and no errors. Jitter
// of the machine alone reaches 10 ms near saturation; a queue that grows
// for a whole step passes 50 ms as soon as the rate is a few percent over
// what the primary can serve.
const (
	rampMinShare = 0.95
	rampMaxP99   = 50.0 // ms
)

// ramp raises the baseline's rate until the primary no longer keeps up, and
// sets the scenario's rate to the first rate it could not serve.
func (e *env) ramp(ctx context.Context, sc *Scenario) error {
	c := e.cfg
	rate := c.SatStart
	for step := 0; step < c.SatSteps && rate <= c.SatMax; step++ {
		probe := &Scenario{Name: sc.Name, Mode: modeGet, Rate: rate, Conns: c.Conns}
		slog.Info("saturation ramp", "rate", rate)
		r, err := e.runOne(ctx, probe, tool{Name: kindBaseline, Kind: kindBaseline}, c.RampWarmup, c.RampDuration)
		if err != nil {
			return fmt.Errorf("saturation ramp at %.0f req/s: %w", rate, err)
		}
		s := RampStep{Offered: rate, Achieved: r.Load.Achieved, P99: r.Load.Latency.P99, SlotP99: r.Load.FromSlot.P99,
			Late: r.Load.Late, Pass: true, CPUBusy: r.CPUBusy}
		for _, n := range r.Load.Errors {
			s.Errors += n
		}
		switch {
		case s.Achieved < rampMinShare*rate:
			s.Pass, s.Why = false, fmt.Sprintf("achieved %.0f%% of offered", 100*s.Achieved/rate)
		case s.SlotP99 > rampMaxP99:
			s.Pass, s.Why = false, fmt.Sprintf("p99 from slot %.1f ms", s.SlotP99)
		case s.Errors > 0:
			s.Pass, s.Why = false, fmt.Sprintf("%d errors", s.Errors)
		}
		sc.Ramp = append(sc.Ramp, s)
		if !s.Pass {
			break
		}
		rate = float64(int(rate*c.SatFactor/500+0.5) * 500)
	}
	if len(sc.Ramp) == 0 {
		return errors.New("saturation ramp: no step ran (check --sat-start and --sat-max)")
	}
	last := sc.Ramp[len(sc.Ramp)-1]
	sc.Rate = last.Offered
	sc.Name = fmt.Sprintf("saturation-%.0f", sc.Rate)
	if last.Pass {
		sc.Title = fmt.Sprintf("GET, %d keep-alive connections, %s req/s: the highest rate tried (the primary kept up with every step)",
			sc.Conns, thousands(sc.Rate))
	} else {
		sc.Title = fmt.Sprintf("GET, %d keep-alive connections, %s req/s: the primary's saturation (%s)",
			sc.Conns, thousands(sc.Rate), last.Why)
	}
	return nil
}

// thousands formats a rate as 10,000.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
