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
	scSlow       = "slow"       // get and post with a shadow that takes its time (--slow-delay)
	scCompare    = "compare"    // GETs answered with JSON bodies, for the cost of comparing answers
	scH2         = "h2"         // h2load against an h2c primary
	scQuiet      = "quiet"      // attached, no traffic at all: the tee's floor of CPU and wake-ups
	scIdleConns  = "idle-conns" // memory with many idle keep-alive connections
	scSoak       = "soak"       // memory and accounting under shadow faults
)

// Scenario is one load, run once per tool.
type Scenario struct {
	Name     string        `json:"name"`
	Title    string        `json:"title"`
	Kind     string        `json:"kind"`
	Mode     string        `json:"mode"`
	Rate     float64       `json:"rate"`
	Conns    int           `json:"conns"`             // connections; h2load's clients
	Streams  int           `json:"streams,omitempty"` // h2: concurrent streams per client
	BodyKiB  int           `json:"body_kib,omitempty"`
	Answer   int           `json:"answer_bytes,omitempty"` // JSON answers of this size
	Delay    delayRange    `json:"shadow_delay"`
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

// scenarios expands the configured kinds into the loads to run; the
// saturation scenario's rate is found by a ramp first.
func (c *Config) scenarios() []*Scenario {
	var out []*Scenario
	add := func(kind, name, mode string, rate float64, title string) *Scenario {
		sc := &Scenario{Name: name, Title: title, Kind: kind, Mode: mode, Rate: rate, Conns: c.Conns,
			Delay: c.ShadowDelay, Warmup: c.Warmup, Duration: c.Duration}
		out = append(out, sc)
		return sc
	}
	keepAlive := func(what string, rate float64) string {
		return fmt.Sprintf("%s, %d keep-alive connections, %s req/s", what, c.Conns, thousands(rate))
	}
	post := fmt.Sprintf("POST with a %d KiB body", c.PostKiB)
	for _, k := range c.Scenarios {
		switch k {
		case scGet:
			for _, r := range c.Rates {
				add(k, fmt.Sprintf("get-%.0f", r), modeGet, r, keepAlive("GET", r))
			}
		case scPost:
			add(k, fmt.Sprintf("post-%.0f", c.PostRate), modePost, c.PostRate, keepAlive(post, c.PostRate)).BodyKiB = c.PostKiB
		case scNewConn:
			add(k, fmt.Sprintf("newconn-%.0f", c.NewConnRate), modeNewConn, c.NewConnRate,
				fmt.Sprintf("GET on a new connection per request, %s req/s", thousands(c.NewConnRate))).Conns = 0
		case scSaturation:
			add(k, k, modeGet, 0, "")
		case scSlow:
			for _, r := range c.SlowRates {
				add(k, fmt.Sprintf("slow-get-%.0f", r), modeGet, r, keepAlive("GET", r)).Delay = c.SlowDelay
			}
			sc := add(k, fmt.Sprintf("slow-post-%.0f", c.PostRate), modePost, c.PostRate, keepAlive(post, c.PostRate))
			sc.BodyKiB, sc.Delay = c.PostKiB, c.SlowDelay
		case scCompare:
			for _, kib := range c.CompareKiB {
				add(k, fmt.Sprintf("compare-%dk", kib), modeGet, c.CompRate,
					keepAlive(fmt.Sprintf("GET answered with %d KiB of JSON", kib), c.CompRate)).Answer = kib << 10
			}
		case scH2:
			sc := add(k, fmt.Sprintf("h2-%.0f", c.H2Rate), modeH2, c.H2Rate,
				fmt.Sprintf("HTTP/2 (h2c) GET with h2load, %d clients of up to %d streams, %s req/s", c.H2Clients, c.H2Streams, thousands(c.H2Rate)))
			sc.Conns, sc.Streams = c.H2Clients, c.H2Streams
		case scQuiet:
			add(k, k, "", 0, fmt.Sprintf("Attached with no traffic at all for %s", c.QuietTime)).Duration = c.QuietTime
		case scIdleConns:
			sc := add(k, fmt.Sprintf("idle-conns-%d", c.IdleConns), modeIdle, c.IdleRate,
				fmt.Sprintf("%s idle keep-alive connections: opened at %s a second, one GET each, then %s idle",
					thousands(float64(c.IdleConns)), thousands(c.IdleRate), c.IdleTime))
			sc.Conns, sc.Duration, sc.Delay = c.IdleConns, c.IdleTime, delayRange{}
		case scSoak:
			sc := add(k, fmt.Sprintf("soak-%.0f", c.SoakRate), modeGet, c.SoakRate, keepAlive("GET", c.SoakRate)+
				fmt.Sprintf(" for %s with the shadow %s", c.SoakDuration, faultList(c.SoakFaults, c.SoakDelay)))
			sc.Duration, sc.Warmup, sc.Faults, sc.Delay = c.SoakDuration, 0, c.SoakFaults, delayRange{}
		}
	}
	for _, sc := range out {
		if !sc.Delay.zero() {
			sc.Title += ", the shadow answering after " + sc.Delay.String()
		}
	}
	return out
}

// runScenario runs every tool under the scenario's load, each pass in
// turn, and fills in the comparisons with the baseline and the targets.
// A failed run of a tee is reported as such; a failed baseline ends the
// scenario. The idle scenarios have no baseline: there is nothing to
// measure without a tee.
func (e *env) runScenario(ctx context.Context, sc *Scenario, tools []tool) error {
	if sc.Kind == scSaturation {
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
			faults := []string{""}
			switch {
			case t.Kind == kindBaseline && (sc.Kind == scQuiet || sc.Kind == scIdleConns):
				continue
			case t.Kind != kindBaseline && sc.Kind == scSoak:
				faults = sc.Faults
			}
			for _, fault := range faults {
				slog.Info("run", "scenario", sc.Name, "tool", t.Name, "fault", fault, "pass", pass)
				r, err := e.runOne(ctx, sc, t, fault)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					if t.Kind == kindBaseline {
						return fmt.Errorf("%s baseline: %w", sc.Name, err)
					}
					slog.Error("run failed", "scenario", sc.Name, "tool", t.Name, "err", err)
					r = newResult(t, fault)
					r.Notes = []string{"failed: " + err.Error()}
				}
				if e.cfg.Passes > 1 {
					r.Pass = pass
				}
				sc.Runs = append(sc.Runs, r)
			}
		}
	}
	sc.compare()
	sc.Targets = evaluate(sc)
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
		probe := &Scenario{Name: sc.Name, Mode: modeGet, Rate: rate, Conns: c.Conns, Warmup: c.RampWarmup, Duration: c.RampDuration}
		slog.Info("saturation ramp", "rate", rate)
		r, err := e.runOne(ctx, probe, tool{Name: kindBaseline, Kind: kindBaseline}, "")
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
	if !sc.Delay.zero() {
		sc.Title += ", the shadow answering after " + sc.Delay.String()
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
