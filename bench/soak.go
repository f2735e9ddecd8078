package main

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/agent"
)

// Shadow faults of the soak scenario.
const (
	faultDown      = "down"      // nothing listens on the shadow's port
	faultBlackhole = "blackhole" // the shadow host drops every packet to its port
	faultSlow      = "slow"      // the shadow answers every request after --soak-delay
)

var allFaults = []string{faultDown, faultBlackhole, faultSlow}

// faultName is how the reports name a fault.
func faultName(f string) string {
	if f == faultBlackhole {
		return "blackholed"
	}
	return f
}

// boundedSlope is the largest growth of RSS, over the last part of a soak
// run, that still counts as not growing: 1 MiB a minute, half a MiB over
// the 30 s window, which is what a Go process's RSS wanders by at rest.
const boundedSlope = 1.0 // MiB per minute

// SoakResult is what the soak scenario adds to a tee's run under a fault.
type SoakResult struct {
	Fault string `json:"fault"`
	// Series is the tee's RSS once a second from the start of the load.
	Series []SoakPoint `json:"series"`
	// Start, Max and End are the RSS at the start of the load, the largest
	// during it and at its end; Slope is the least-squares growth over the
	// last SlopeWindow seconds.
	StartMiB    float64 `json:"start_mib"`
	MaxMiB      float64 `json:"max_mib"`
	EndMiB      float64 `json:"end_mib"`
	Slope       float64 `json:"slope_mib_per_min"`
	SlopeWindow float64 `json:"slope_window_s"`
	Bounded     bool    `json:"bounded"`
	// Memory is where the memory was right after the load.
	Memory *MemBreakdown `json:"memory,omitempty"`
	// ShadowArrived counts requests that reached the shadow.
	ShadowArrived int64 `json:"shadow_arrived"`
}

// SoakPoint is one RSS reading of a soak run.
type SoakPoint struct {
	T      float64 `json:"t_s"`
	RSSMiB float64 `json:"rss_mib"`
}

// Ledger accounts for every request the generator sent during a run, from
// the agent's counters: each was mirrored, failed, dropped or skipped.
// HeldAtEnd is what the agent still held for the shadow when the load
// ended; its exit (with --drain-timeout) settles them, and the counts are
// taken from its exit summary.
type Ledger struct {
	Sent        int                `json:"sent"`
	Framed      float64            `json:"framed"`
	Mirrored    float64            `json:"mirrored"`
	Failed      map[string]float64 `json:"failed,omitempty"`
	Dropped     map[string]float64 `json:"dropped,omitempty"`
	Skipped     map[string]float64 `json:"skipped,omitempty"`
	HeldAtEnd   float64            `json:"held_at_end"`
	Unaccounted float64            `json:"unaccounted"` // sent - mirrored - failed - dropped - skipped
}

func sum(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

// Exact reports whether the agent framed every request sent and accounted
// for each.
func (l *Ledger) Exact() bool {
	return l.Framed == float64(l.Sent) && l.Unaccounted == 0
}

// byReason sums a counter family by its reason label.
func byReason(ps promSample, metric string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range ps {
		name, labels, _ := strings.Cut(k, "{")
		if name == metric {
			out[labelValue(labels, "reason")] += v
		}
	}
	return out
}

// diffReasons returns final minus before, by reason, leaving out zeros.
func diffReasons(final map[string]uint64, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range final {
		if d := float64(v) - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// newLedger accounts for the sent requests with the agent's exit summary
// less its counters scraped before the load (the start-up probes), and
// after, the counters scraped when the load ended.
func newLedger(sent int, before, after promSample, final *agent.Summary) *Ledger {
	l := &Ledger{Sent: sent}
	if after != nil {
		var failed float64
		for _, v := range byReason(after, "shadowtee_requests_failed_total") {
			failed += v
		}
		l.HeldAtEnd = after[`shadowtee_requests_total{result="queued"}`] - after[`shadowtee_requests_total{result="mirrored"}`] - failed
	}
	if final == nil {
		return l
	}
	r := final.Requests
	l.Framed = float64(r.Framed) - before[`shadowtee_requests_total{result="framed"}`]
	l.Mirrored = float64(r.Mirrored) - before[`shadowtee_requests_total{result="mirrored"}`]
	l.Failed = diffReasons(r.Failed, byReason(before, "shadowtee_requests_failed_total"))
	l.Dropped = diffReasons(r.Dropped, byReason(before, "shadowtee_requests_dropped_total"))
	l.Skipped = diffReasons(r.Skipped, byReason(before, "shadowtee_requests_skipped_total"))
	l.Unaccounted = float64(sent) - l.Mirrored - sum(l.Failed) - sum(l.Dropped) - sum(l.Skipped)
	return l
}

// slope is the least-squares slope of the points, in MiB per minute.
func slope(pts []SoakPoint) float64 {
	n := float64(len(pts))
	if n < 2 {
		return 0
	}
	var st, sv float64
	for _, p := range pts {
		st += p.T
		sv += p.RSSMiB
	}
	mt, mv := st/n, sv/n
	var num, den float64
	for _, p := range pts {
		num += (p.T - mt) * (p.RSSMiB - mv)
		den += (p.T - mt) * (p.T - mt)
	}
	if den == 0 {
		return 0
	}
	return 60 * num / den
}

// soakSeries turns RSS readings into one point a second from start to
// end, and fills in the start, end, maximum and the slope over the last
// 30 s (or the last half, for shorter runs).
func soakSeries(r *SoakResult, samples rssSamples, start, end time.Time) {
	const mib = 1 << 20
	r.Series = nil
	for t := start; !t.After(end); t = t.Add(time.Second) {
		r.Series = append(r.Series, SoakPoint{T: t.Sub(start).Seconds(), RSSMiB: float64(samples.at(t)) / mib})
	}
	if len(r.Series) == 0 {
		return
	}
	r.StartMiB = r.Series[0].RSSMiB
	r.EndMiB = r.Series[len(r.Series)-1].RSSMiB
	r.MaxMiB = float64(samples.between(start, end.Add(time.Millisecond)).max()) / mib
	dur := end.Sub(start).Seconds()
	r.SlopeWindow = math.Min(30, dur/2)
	var last []SoakPoint
	for _, p := range r.Series {
		if p.T >= dur-r.SlopeWindow {
			last = append(last, p)
		}
	}
	r.Slope = slope(last)
	r.Bounded = r.Slope <= boundedSlope
}

// applyFault breaks the shadow in the way named, and returns what mends
// it. Mending is idempotent.
func (e *env) applyFault(ctx context.Context, fault string, n int) (func() error, error) {
	switch fault {
	case faultDown:
		if err := e.shadowListen(ctx, false); err != nil {
			return nil, err
		}
		return onceErr(func() error { return e.shadowListen(context.WithoutCancel(ctx), true) }), nil
	case faultBlackhole:
		rule := []string{"INPUT", "-p", "tcp", "--dport", strconv.Itoa(shadowPort), "-j", "DROP"}
		if err := e.iptables(append([]string{"-A"}, rule...)...); err != nil {
			return nil, err
		}
		return onceErr(func() error { return e.iptables(append([]string{"-D"}, rule...)...) }), nil
	case faultSlow:
		// A new tally: the start-up probes are forgotten, the load's ids
		// are counted, and every answer waits.
		if err := e.resetShadow(ctx, n, delayRange{e.cfg.SoakDelay, e.cfg.SoakDelay}); err != nil {
			return nil, err
		}
		return onceErr(func() error { return nil }), nil
	}
	return nil, fmt.Errorf("unknown fault %q", fault)
}

// iptables runs iptables in the shadow's namespace, where the rules it
// adds cannot reach any other host.
func (e *env) iptables(args ...string) error {
	cmd := exec.Command("iptables", append([]string{"-w", "5"}, args...)...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := e.topo.Shadow.Start(cmd); err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func onceErr(fn func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = fn() })
		return err
	}
}
