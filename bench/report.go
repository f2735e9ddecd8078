package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Report is everything one invocation measured, as written by --json.
type Report struct {
	Command   string      `json:"command"`
	Started   time.Time   `json:"started"`
	Elapsed   float64     `json:"elapsed_s"`
	Machine   Machine     `json:"machine"`
	Binary    string      `json:"binary"`
	Version   string      `json:"binary_version,omitempty"`
	Config    *Config     `json:"config"`
	Scenarios []*Scenario `json:"scenarios"`
}

// writeHeader describes the invocation in markdown.
func writeHeader(w io.Writer, r *Report) {
	fmt.Fprintf(w, "Command: `%s`\n\n", r.Command)
	fmt.Fprintf(w, "Machine: %s. Agent: `%s`", r.Machine, r.Binary)
	if r.Version != "" {
		fmt.Fprintf(w, " (%s)", r.Version)
	}
	fmt.Fprintf(w, ". Started %s.", r.Started.UTC().Format(time.RFC3339))
	if c := r.Config; c != nil {
		if c.ShadowServer == serverSink {
			fmt.Fprint(w, " The shadow answers with the bench's own sink, not net/http.")
		}
		if len(c.AgentArgs) > 0 {
			fmt.Fprintf(w, " Every shadowtee run has `%s`.", strings.Join(c.AgentArgs, " "))
		}
		if c.PrimaryWork > 0 {
			fmt.Fprintf(w, " The primary spends %s of CPU on each request.", c.PrimaryWork)
		}
	}
	fmt.Fprint(w, "\n\n")
}

// dash stands for a value a run does not have.
const dash = "–"

func fmtPtr(v *float64, format string) string {
	if v == nil {
		return dash
	}
	return fmt.Sprintf(format, *v)
}

// writeScenario renders one scenario as markdown: the main table, the load
// side, notes and targets.
func writeScenario(w io.Writer, sc *Scenario) {
	fmt.Fprintf(w, "### %s\n\n", sc.Title)
	switch sc.Kind {
	case scIdleConns:
		writeIdle(w, sc)
	case scQuiet:
		writeQuiet(w, sc)
	case scSoak:
		writeSoak(w, sc)
	default:
		writeLoad(w, sc)
	}
	writeNotesAndTargets(w, sc)
}

// writeLoad renders a scenario of steady load.
func writeLoad(w io.Writer, sc *Scenario) {
	if p := sc.Pinned; p != nil {
		fmt.Fprintf(w, "Pinned: the primary alone on CPU %d; the load generator, the shadow and the tee on CPU %d.\n\n", p.Primary, p.Others)
	}
	if len(sc.Ramp) > 0 {
		writeRamp(w, sc.Ramp, sc.Pinned)
	}
	fmt.Fprintf(w, "%s warm-up, then %s measured.\n\n", sc.Warmup, sc.Duration)
	fmt.Fprintln(w, "| run | req/s | p50 ms | p99 ms | Δp99 ms | mirrored once | missing | dup | CPU µs/req | CPU % core | wake-ups/s | wake-ups/req | BPF µs/req | max RSS MiB | shadow conns | peak conns | lag p50 ms | lag p99 ms | start-up s | drops |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range sc.Runs {
		l := r.Load
		if l.Scheduled == 0 {
			fmt.Fprintf(w, "| %s | failed |%s\n", r.label(), strings.Repeat(" "+dash+" |", 18))
			continue
		}
		rate := thousands(l.Achieved)
		if sc.Kind == scSaturation && r.Throughput != nil {
			rate += fmt.Sprintf(" (%.1f%%)", 100**r.Throughput)
		}
		row := []string{r.label(), rate, qText(l.Latency, l.Latency.P50, "%.3f"), qText(l.Latency, l.Latency.P99, "%.3f"), fmtPtr(r.DeltaP99, "%+.3f")}
		if r.Kind == kindBaseline {
			row = append(row, slices.Repeat([]string{dash}, 15)...)
		} else {
			row = append(row, fmtPtr(r.CompletePct, "%.2f%%"), fmt.Sprint(r.Missing), fmt.Sprint(r.Duplicated),
				fmtPtr(r.CPUPerReqUS, "%.1f"), fmtPtr(r.CPUCorePct, "%.1f"), fmtPtr(r.WakeupsPerS, "%.0f"), fmtPtr(r.WakeupsPerReq, "%.2f"),
				fmtPtr(r.BPFPerReqUS, "%.2f"), fmtPtr(r.MaxRSSMiB, "%.1f"), fmt.Sprint(r.Shadow.Conns), fmt.Sprint(r.Shadow.Peak),
				qText(r.Lag, r.Lag.P50, "%.2f"), qText(r.Lag, r.Lag.P99, "%.2f"), fmtPtr(r.StartupS, "%.3f"), r.dropText())
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	if sc.Kind == scH2 {
		for _, r := range sc.Runs {
			if r.Kind != kindBaseline {
				fmt.Fprintf(w, "- %s: the shadow received %d requests over HTTP/2 and %d over HTTP/1.x.\n", r.label(), r.Shadow.HTTP2, r.Shadow.HTTP1)
			}
		}
		fmt.Fprintln(w)
	}
	writeLoadSide(w, sc)
}

// dropText is the growth of shadowtee's drop counters; a dash for peers,
// which have none, and where the metrics could not be scraped.
func (r *RunResult) dropText() string {
	if r.Kind != kindShadowtee || r.Counters == nil {
		return dash
	}
	return formatDrops(r.Drops)
}

// writeNotesAndTargets lists the runs' notes and the scenario's targets.
func writeNotesAndTargets(w io.Writer, sc *Scenario) {
	notes := false
	for _, r := range sc.Runs {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s: %s\n", r.label(), n)
			notes = true
		}
	}
	if len(sc.Targets) > 0 {
		if notes {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "Targets, shadowtee:")
		for _, t := range sc.Targets {
			verdict := "met"
			if !t.Met {
				verdict = "**missed**"
			}
			fmt.Fprintf(w, "- %s %s: %s, %s\n", t.What, t.Goal, t.Value, verdict)
		}
	}
	fmt.Fprintln(w)
}

// qText is a quantile v of q in ms, or a dash if q has no values.
func qText(q Quantiles, v float64, format string) string {
	if q.N == 0 {
		return dash
	}
	return fmt.Sprintf(format, v)
}

// writeLoadSide shows whether the generator kept its schedule and how busy
// the machine was: a run is only as good as its load.
func writeLoadSide(w io.Writer, sc *Scenario) {
	fmt.Fprintln(w, "<details><summary>load side</summary>")
	fmt.Fprintln(w)
	pinned := sc.Pinned != nil
	head := "| run | sent | answered | errors | late sends | send delay p99 ms | p99 from slot ms | generator cores | primary cores | primary µs/req | shadow cores | host busy cores | before the run |"
	rule := "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	if pinned {
		head += fmt.Sprintf(" CPU %d busy | CPU %d busy |", sc.Pinned.Primary, sc.Pinned.Others)
		rule += " ---: | ---: |"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, r := range sc.Runs {
		l := r.Load
		if l.Scheduled == 0 {
			continue
		}
		primaryUS := dash
		if l.Achieved > 0 {
			// The primary's CPU per answer: what the tee may add to the
			// primary's own work, whatever the rate it could reach.
			primaryUS = fmt.Sprintf("%.1f", r.PrimaryCores*1e6/l.Achieved)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %s | %s | %.2f | %.2f | %s | %.2f | %.2f | %.2f |", r.label(), l.Sent, l.Completed, loadErrors(l),
			l.Late, qText(l.SendDelay, l.SendDelay.P99, "%.3f"), qText(l.FromSlot, l.FromSlot.P99, "%.3f"), r.LoadgenCores, r.PrimaryCores, primaryUS, r.ShadowCores, r.HostBusy, r.HostBusyBefore)
		if pinned {
			writeBusy(w, r.CPUBusy, sc.Pinned)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
	fmt.Fprintln(w)
}

func writeRamp(w io.Writer, steps []RampStep, pinned *cpuPlan) {
	fmt.Fprintln(w, "Saturation ramp, baseline only:")
	fmt.Fprintln(w)
	head := "| offered req/s | achieved req/s | p99 ms | p99 from slot ms | late sends | errors | kept up |"
	rule := "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	if pinned != nil {
		head += fmt.Sprintf(" CPU %d busy | CPU %d busy |", pinned.Primary, pinned.Others)
		rule += " ---: | ---: |"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, s := range steps {
		verdict := "yes"
		if !s.Pass {
			verdict = "no: " + s.Why
		}
		fmt.Fprintf(w, "| %s | %s | %.3f | %.3f | %d | %d | %s |", thousands(s.Offered), thousands(s.Achieved), s.P99, s.SlotP99,
			s.Late, s.Errors, verdict)
		if pinned != nil {
			writeBusy(w, s.CPUBusy, pinned)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// writeBusy adds the busy share of the pinned CPUs to a table row.
func writeBusy(w io.Writer, busy []float64, p *cpuPlan) {
	for _, c := range []int{p.Primary, p.Others} {
		if c < len(busy) {
			fmt.Fprintf(w, " %.0f%% |", 100*busy[c])
		} else {
			fmt.Fprintf(w, " %s |", dash)
		}
	}
}

// writeMarkdown renders the whole report.
func writeMarkdown(w io.Writer, r *Report) {
	writeHeader(w, r)
	for _, sc := range r.Scenarios {
		writeScenario(w, sc)
	}
	writeSummary(w, r.Scenarios)
}

// writeSummary is one table of every tee's run in every scenario: what it
// cost and how much of the load reached the shadow. For quiet and
// idle-conns runs, CPU and wake-ups are those of the silent period.
func writeSummary(w io.Writer, scs []*Scenario) {
	fmt.Fprintln(w, "### Summary")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | run | Δp99 ms | mirrored once | CPU µs/req | CPU % core | wake-ups/s | wake-ups/req | max RSS MiB | lag p99 ms | shadow conns (peak) | drops |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, sc := range scs {
		for _, r := range sc.Runs {
			if r.Kind == kindBaseline {
				continue
			}
			if r.CPUCorePct == nil {
				fmt.Fprintf(w, "| %s | %s | failed |%s\n", sc.Name, r.label(), strings.Repeat(" "+dash+" |", 9))
				continue
			}
			conns := dash
			if sc.Kind != scQuiet {
				conns = fmt.Sprintf("%d (%d)", r.Shadow.Conns, r.Shadow.Peak)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sc.Name, r.label(), fmtPtr(r.DeltaP99, "%+.3f"),
				fmtPtr(r.CompletePct, "%.2f%%"), fmtPtr(r.CPUPerReqUS, "%.1f"), fmtPtr(r.CPUCorePct, "%.2f"), fmtPtr(r.WakeupsPerS, "%.0f"),
				fmtPtr(r.WakeupsPerReq, "%.2f"), fmtPtr(r.MaxRSSMiB, "%.1f"), qText(r.Lag, r.Lag.P99, "%.2f"), conns, r.dropText())
		}
	}
	fmt.Fprintln(w)
}

// appendFile appends the markdown report to path.
func appendFile(path string, r *Report) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	writeMarkdown(f, r)
	return f.Close()
}

func writeJSON(path string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeIdle renders the idle scenario: what the generator kept open, what
// the shadow received, and the tee's memory and CPU.
func writeIdle(w io.Writer, sc *Scenario) {
	fmt.Fprintln(w, "| run | connections answered | still open at the end | mirrored once | missing | dup | max RSS MiB | RSS at idle start MiB | RSS at idle end MiB | CPU % core while idle | wake-ups/s while idle | shadow conns | start-up s | drops |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range sc.Runs {
		ir := r.Idle
		if ir == nil || r.Load.Scheduled == 0 {
			fmt.Fprintf(w, "| %s | failed |%s\n", r.label(), strings.Repeat(" "+dash+" |", 12))
			continue
		}
		fmt.Fprintf(w, "| %s | %s of %s | %s | %s | %d | %d | %s | %.1f | %.1f | %s | %s | %d | %s | %s |\n", r.label(),
			thousands(float64(ir.Open)), thousands(float64(ir.Conns)), thousands(float64(ir.Alive)),
			fmtPtr(r.CompletePct, "%.2f%%"), r.Missing, r.Duplicated, fmtPtr(r.MaxRSSMiB, "%.1f"),
			ir.RSSIdleStartMiB, ir.RSSIdleEndMiB, fmtPtr(r.CPUCorePct, "%.2f"), fmtPtr(r.WakeupsPerS, "%.0f"), r.Shadow.Conns,
			fmtPtr(r.StartupS, "%.3f"), r.dropText())
	}
	fmt.Fprintln(w)
	for _, r := range sc.Runs {
		if r.Idle != nil && r.Idle.Memory != nil {
			fmt.Fprintf(w, "Memory of %s at the end of the idle period: %s.\n\n", r.label(), r.Idle.Memory)
		}
	}
	fmt.Fprintln(w, "<details><summary>load side</summary>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | opened | errors | late opens | open delay p99 ms | dial to answer p50 ms | p99 ms | closed early | generator cores | host busy cores while idle | before the run |")
	fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range sc.Runs {
		l := r.Load
		if r.Idle == nil || l.Scheduled == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d | %.3f | %.3f | %.3f | %d | %.2f | %.2f | %.2f |\n", r.label(), l.Sent, loadErrors(l),
			l.Late, l.SendDelay.P99, l.Latency.P50, l.Latency.P99, r.Idle.ClosedEarly, r.LoadgenCores, r.HostBusy, r.HostBusyBefore)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
	fmt.Fprintln(w)
}

// loadErrors renders the generator's errors.
func loadErrors(l LoadResult) string {
	if len(l.Errors) == 0 {
		return dash
	}
	m := map[string]float64{}
	for k, v := range l.Errors {
		m[k] = float64(v)
	}
	return formatDrops(m)
}

// writeSoak renders the soak scenario: the primary, the tee's memory over
// time, and the account of every request sent.
func writeSoak(w io.Writer, sc *Scenario) {
	fmt.Fprintf(w, "No warm-up; %s measured per run. RSS is read every 100 ms; start, end and the series are the readings at each whole second of the load.\n\n", sc.Duration)
	fmt.Fprintln(w, "| run | req/s | p50 ms | p99 ms | Δp99 ms | primary errors | RSS start MiB | max MiB | end MiB | slope MiB/min | CPU % core | wake-ups/s | sent | mirrored | failed | dropped | skipped | held at the end | unaccounted | shadow received | shadow conns (peak) |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range sc.Runs {
		l := r.Load
		if l.Scheduled == 0 {
			fmt.Fprintf(w, "| %s | failed |%s\n", r.label(), strings.Repeat(" "+dash+" |", 19))
			continue
		}
		row := []string{r.label(), thousands(l.Achieved), fmt.Sprintf("%.3f", l.Latency.P50), fmt.Sprintf("%.3f", l.Latency.P99),
			fmtPtr(r.DeltaP99, "%+.3f"), loadErrors(l)}
		sk := r.Soak
		if sk == nil {
			row = append(row, dash, dash, dash, dash, dash, dash, fmt.Sprint(l.Sent), dash, dash, dash, dash, dash, dash, dash, dash)
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			continue
		}
		row = append(row, fmt.Sprintf("%.1f", sk.StartMiB), fmt.Sprintf("%.1f", sk.MaxMiB), fmt.Sprintf("%.1f", sk.EndMiB),
			fmt.Sprintf("%+.2f", sk.Slope), fmtPtr(r.CPUCorePct, "%.1f"), fmtPtr(r.WakeupsPerS, "%.0f"))
		if lg := r.Ledger; lg != nil && lg.Framed > 0 {
			row = append(row, fmt.Sprint(lg.Sent), fmt.Sprintf("%.0f", lg.Mirrored), fmt.Sprintf("%.0f", sum(lg.Failed)),
				fmt.Sprintf("%.0f", sum(lg.Dropped)), fmt.Sprintf("%.0f", sum(lg.Skipped)), fmt.Sprintf("%.0f", lg.HeldAtEnd),
				fmt.Sprintf("%.0f", lg.Unaccounted))
		} else {
			row = append(row, fmt.Sprint(l.Sent), dash, dash, dash, dash, dash, dash)
		}
		row = append(row, fmt.Sprint(sk.ShadowArrived), fmt.Sprintf("%d (%d)", r.Shadow.Conns, r.Shadow.Peak))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	for _, r := range sc.Runs {
		sk := r.Soak
		if sk == nil {
			continue
		}
		fmt.Fprintf(w, "- %s:", r.label())
		if lg := r.Ledger; lg != nil && lg.Framed > 0 {
			fmt.Fprintf(w, " framed %.0f of %d sent;", lg.Framed, lg.Sent)
			for _, part := range []struct {
				name string
				m    map[string]float64
			}{{"failed", lg.Failed}, {"dropped", lg.Dropped}, {"skipped", lg.Skipped}} {
				if len(part.m) > 0 {
					fmt.Fprintf(w, " %s %s;", part.name, formatDrops(part.m))
				}
			}
		}
		fmt.Fprintf(w, " RSS every 5 s (MiB): %s", rssSeries(sk.Series, 5))
		if sk.Memory != nil {
			fmt.Fprintf(w, "; right after the load: %s", sk.Memory)
		}
		fmt.Fprintln(w, ".")
	}
	fmt.Fprintln(w)
}

// rssSeries renders every step-th point of a series.
func rssSeries(pts []SoakPoint, step int) string {
	var parts []string
	for i := 0; i < len(pts); i += step {
		parts = append(parts, fmt.Sprintf("%.1f", pts[i].RSSMiB))
	}
	if n := len(pts); n > 0 && (n-1)%step != 0 {
		parts = append(parts, fmt.Sprintf("%.1f", pts[n-1].RSSMiB))
	}
	return strings.Join(parts, " ")
}

// writeQuiet renders the quiet scenario: each tee attached with no
// traffic at all.
func writeQuiet(w io.Writer, sc *Scenario) {
	fmt.Fprintf(w, "Once the start-up probes have settled, %s with no request at all. Wake-ups are context switches, voluntary and involuntary, summed over the tee's threads.\n\n", sc.Duration)
	fmt.Fprintln(w, "| run | CPU % core | CPU s | wake-ups/s | voluntary | involuntary | max RSS MiB | start-up s | host busy cores | before the run |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range sc.Runs {
		if r.CPUCorePct == nil {
			fmt.Fprintf(w, "| %s | failed |%s\n", r.label(), strings.Repeat(" "+dash+" |", 8))
			continue
		}
		fmt.Fprintf(w, "| %s | %.2f | %s | %s | %d | %d | %s | %s | %.2f | %.2f |\n", r.label(), *r.CPUCorePct, fmtPtr(r.CPUSeconds, "%.2f"),
			fmtPtr(r.WakeupsPerS, "%.0f"), r.Switches.Voluntary, r.Switches.Involuntary, fmtPtr(r.MaxRSSMiB, "%.1f"),
			fmtPtr(r.StartupS, "%.3f"), r.HostBusy, r.HostBusyBefore)
	}
	fmt.Fprintln(w)
}
