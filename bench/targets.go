package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Target is one of the goals for shadowtee, checked against its runs of a
// scenario.
type Target struct {
	What  string `json:"what"`
	Goal  string `json:"goal"`
	Value string `json:"value"`
	Met   bool   `json:"met"`
}

// median returns the median of the values that are present (the mean of
// the two middle ones for an even count), and how many there were.
func median(vs []*float64) (float64, int) {
	var xs []float64
	for _, v := range vs {
		if v != nil {
			xs = append(xs, *v)
		}
	}
	if len(xs) == 0 {
		return 0, 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2, n
	}
	return xs[n/2], n
}

// runsOf returns the scenario's completed runs of one tool.
func (sc *Scenario) runsOf(tool string) []*RunResult {
	var rs []*RunResult
	for _, r := range sc.Runs {
		if r.Tool == tool && r.Load.Scheduled > 0 {
			rs = append(rs, r)
		}
	}
	return rs
}

// evaluate checks shadowtee's runs of a scenario against the goals that
// apply to its load. With several passes, each goal is judged on the
// median of the passes, and the value lists them all.
func evaluate(sc *Scenario) []Target {
	if sc.Kind == scSoak {
		return evaluateSoak(sc)
	}
	return evaluateRuns(sc, sc.runsOf(kindShadowtee), "")
}

// evaluateSoak checks shadowtee's runs under each fault.
func evaluateSoak(sc *Scenario) []Target {
	var ts []Target
	all := sc.runsOf(kindShadowtee)
	for _, f := range sc.Faults {
		var runs []*RunResult
		for _, r := range all {
			if r.Fault == f {
				runs = append(runs, r)
			}
		}
		ts = append(ts, evaluateRuns(sc, runs, f)...)
	}
	return ts
}

// evaluateRuns checks the given runs of shadowtee, all under one load and
// one fault (none but in the soak).
func evaluateRuns(sc *Scenario, runs []*RunResult, fault string) []Target {
	if len(runs) == 0 {
		return nil
	}
	var ts []Target
	check := func(what, goal, format string, metric func(*RunResult) *float64, ok func(float64) bool) {
		vs := make([]*float64, len(runs))
		for i, r := range runs {
			vs[i] = metric(r)
		}
		m, n := median(vs)
		if n == 0 {
			ts = append(ts, Target{What: what, Goal: goal, Value: "not measured"})
			return
		}
		value := fmt.Sprintf(format, m)
		if len(runs) > 1 {
			var each []string
			for _, v := range vs {
				if v == nil {
					each = append(each, dash)
				} else {
					each = append(each, fmt.Sprintf(format, *v))
				}
			}
			value += " (median of " + strings.Join(each, ", ") + ")"
		}
		ts = append(ts, Target{What: what, Goal: goal, Value: value, Met: ok(m)})
	}
	atMost := func(l float64) func(float64) bool { return func(v float64) bool { return v <= l } }
	below := func(l float64) func(float64) bool { return func(v float64) bool { return v < l } }
	get := sc.Kind == scGet
	switch {
	case sc.Kind == scIdleConns:
		if sc.Conns >= 10000 {
			check(fmt.Sprintf("max RSS with %s idle keep-alive connections", thousands(float64(sc.Conns))), "< 128 MiB", "%.1f MiB",
				func(r *RunResult) *float64 { return r.MaxRSSMiB }, below(128))
		}
		check("completeness of their requests", "100%", "%.3f%%", func(r *RunResult) *float64 { return r.CompletePct },
			func(v float64) bool { return v == 100 })
	case sc.Kind == scSoak:
		window := fmt.Sprintf("last %.0f s", min(30, sc.Duration.Seconds()/2))
		check("shadow "+faultName(fault)+": RSS slope over the "+window, fmt.Sprintf("≤ %.0f MiB/min (bounded)", boundedSlope), "%+.2f MiB/min",
			func(r *RunResult) *float64 {
				if r.Soak == nil {
					return nil
				}
				return ptr(r.Soak.Slope)
			}, atMost(boundedSlope))
		check("shadow "+faultName(fault)+": every request sent mirrored or counted as lost", "sent = mirrored + failed + dropped + skipped",
			"%.0f unaccounted", func(r *RunResult) *float64 {
				if r.Ledger == nil || r.Ledger.Framed == 0 {
					return nil
				}
				l := r.Ledger
				return ptr(math.Abs(l.Unaccounted) + math.Abs(l.Framed-float64(l.Sent)))
			}, func(v float64) bool { return v == 0 })
		check("shadow "+faultName(fault)+": primary requests answered", "all", "%.0f not answered", func(r *RunResult) *float64 {
			return ptr(float64(r.Load.Sent - r.Load.Completed + len(r.Load.Unsent)))
		}, func(v float64) bool { return v == 0 })
		return ts
	case get && sc.Rate == 1000:
		check("agent CPU", "≤ 3% of a core (30 µs/req)", "%.1f%%", func(r *RunResult) *float64 { return r.CPUCorePct }, atMost(3))
		check("mirror lag p99", "≤ 10 ms", "%.2f ms", func(r *RunResult) *float64 { return ptr(r.Lag.P99) }, atMost(10))
	case get && sc.Rate == 5000:
		check("agent CPU per request", "≤ 12 µs", "%.1f µs", func(r *RunResult) *float64 { return r.CPUPerReqUS }, atMost(12))
		check("mirror lag p99", "≤ 10 ms", "%.2f ms", func(r *RunResult) *float64 { return ptr(r.Lag.P99) }, atMost(10))
	case get && sc.Rate == 10000:
		check("agent CPU per request", "≤ 8 µs", "%.1f µs", func(r *RunResult) *float64 { return r.CPUPerReqUS }, atMost(8))
		check("max RSS", "< 64 MiB", "%.1f MiB", func(r *RunResult) *float64 { return r.MaxRSSMiB }, below(64))
	case sc.Kind == scSlow:
		// A shadow that answers like a real service: the pool follows
		// rate × latency.
		if sc.Mode == modeGet && sc.Rate == 1000 {
			check("agent CPU per request", "≤ 50 µs", "%.1f µs", func(r *RunResult) *float64 { return r.CPUPerReqUS }, atMost(50))
		}
		check("mirror lag p99", "≤ 50 ms", "%.2f ms", func(r *RunResult) *float64 { return ptr(r.Lag.P99) }, atMost(50))
		check("max RSS", "≤ 64 MiB", "%.1f MiB", func(r *RunResult) *float64 { return r.MaxRSSMiB }, atMost(64))
		mean := (sc.Delay.Min + sc.Delay.Max).Seconds() / 2
		limit := 2*sc.Rate*mean + 8
		check("connections to the shadow", fmt.Sprintf("≤ %.0f (2 × rate × mean latency + 8)", limit), "%.0f",
			func(r *RunResult) *float64 { return ptr(float64(r.Shadow.Conns)) }, atMost(limit))
	case sc.Kind == scQuiet:
		check("agent CPU with no traffic", "≤ 0.1% of a core", "%.3f%%", func(r *RunResult) *float64 { return r.CPUCorePct }, atMost(0.1))
		check("wake-ups with no traffic", "≤ 20 /s", "%.1f /s", func(r *RunResult) *float64 { return r.WakeupsPerS }, atMost(20))
	case sc.Kind == scH2:
		check("agent CPU per request", "≤ 15 µs", "%.1f µs", func(r *RunResult) *float64 { return r.CPUPerReqUS }, atMost(15))
		check("max RSS", "≤ 64 MiB", "%.1f MiB", func(r *RunResult) *float64 { return r.MaxRSSMiB }, atMost(64))
		check("mirrored as HTTP/2", "all", "%.0f over HTTP/1", func(r *RunResult) *float64 { return ptr(float64(r.Shadow.HTTP1)) },
			func(v float64) bool { return v == 0 })
		check("connections to the shadow", "≤ 4", "%.0f", func(r *RunResult) *float64 { return ptr(float64(r.Shadow.Conns)) }, atMost(4))
	case sc.Kind == scCompare:
		check("max RSS", "≤ 128 MiB", "%.1f MiB", func(r *RunResult) *float64 { return r.MaxRSSMiB }, atMost(128))
	case sc.Kind == scSaturation:
		check("throughput with the tee", "≥ 95% of without", "%.1f%%", func(r *RunResult) *float64 {
			if r.Throughput == nil {
				return nil
			}
			return ptr(100 * *r.Throughput)
		}, func(v float64) bool { return v >= 95 })
	}
	if sc.Kind != scQuiet && sc.Kind != scIdleConns {
		check("primary p99", "within the run's noise (≤ +1 ms)", "%+.2f ms", func(r *RunResult) *float64 { return r.DeltaP99 }, atMost(1))
	}
	// Everything sent is mirrored exactly once wherever the shadow keeps up.
	if (get && sc.Rate == 10000) || (sc.Kind == scPost && sc.Rate == 2000 && sc.BodyKiB == 16) ||
		(sc.Kind == scNewConn && sc.Rate == 2000) || sc.Kind == scSlow || sc.Kind == scH2 {
		check("completeness", "100%", "%.3f%%", func(r *RunResult) *float64 { return r.CompletePct },
			func(v float64) bool { return v == 100 })
	}
	check("start-up", "< 0.5 s", "%.3f s", func(r *RunResult) *float64 { return r.StartupS }, below(0.5))
	return ts
}
