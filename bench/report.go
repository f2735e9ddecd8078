package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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
	case scIdle:
		writeIdle(w, sc)
		writeNotesAndTargets(w, sc)
		return
	case scSoak:
		writeSoak(w, sc)
		writeNotesAndTargets(w, sc)
		return
	}
	if p := sc.Pinned; p != nil {
		fmt.Fprintf(w, "Pinned: the primary alone on CPU %d; the load generator, the shadow and the tee on CPU %d.\n\n", p.Primary, p.Others)
	}
	if len(sc.Ramp) > 0 {
		writeRamp(w, sc.Ramp, sc.Pinned)
	}
	fmt.Fprintf(w, "%s warm-up, then %s measured.\n\n", sc.Warmup, sc.Duration)
	fmt.Fprintln(w, "| run | req/s | p50 ms | p99 ms | Δp99 ms | mirrored once | missing | dup | CPU µs/req | CPU % core | BPF µs/req | max RSS MiB | shadow conns | lag p50 ms | lag p99 ms | start-up s | drops |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range sc.Runs {
		l := r.Load
		if l.Scheduled == 0 {
			fmt.Fprintf(w, "| %s | failed | | | | | | | | | | | | | | | |\n", r.label())
			continue
		}
		rate := thousands(l.Achieved)
		if sc.Kind == scSaturation && r.Throughput != nil {
			rate += fmt.Sprintf(" (%.1f%%)", 100**r.Throughput)
		}
		row := []string{r.label(), rate, fmt.Sprintf("%.3f", l.Latency.P50), fmt.Sprintf("%.3f", l.Latency.P99),
			fmtPtr(r.DeltaP99, "%+.3f")}
		if r.Kind == kindBaseline {
			row = append(row, dash, dash, dash, dash, dash, dash, dash, dash, dash, dash, dash, dash)
		} else {
			dropText := dash
			// Counters are there when the metrics were scraped; no drops
			// then means none grew (and JSON leaves the empty map out).
			if r.Kind == kindShadowtee && r.Counters != nil {
				dropText = formatDrops(r.Drops)
			}
			row = append(row, fmtPtr(r.CompletePct, "%.2f%%"), fmt.Sprint(r.Missing), fmt.Sprint(r.Duplicated),
				fmtPtr(r.CPUPerReqUS, "%.1f"), fmtPtr(r.CPUCorePct, "%.1f"), fmtPtr(r.BPFPerReqUS, "%.2f"),
				fmtPtr(r.MaxRSSMiB, "%.1f"), fmt.Sprint(r.Shadow.Conns),
				lagText(r.Lag, r.Lag.P50), lagText(r.Lag, r.Lag.P99), fmtPtr(r.StartupS, "%.3f"), dropText)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	writeLoadSide(w, sc)
	writeNotesAndTargets(w, sc)
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

func lagText(q Quantiles, v float64) string {
	if q.N == 0 {
		return dash
	}
	return fmt.Sprintf("%.2f", v)
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
		errs := dash
		if len(l.Errors) > 0 {
			m := map[string]float64{}
			for k, v := range l.Errors {
				m[k] = float64(v)
			}
			errs = formatDrops(m)
		}
		primaryUS := dash
		if l.Achieved > 0 {
			// The primary's CPU per answer: what the tee may add to the
			// primary's own work, whatever the rate it could reach.
			primaryUS = fmt.Sprintf("%.1f", r.PrimaryCores*1e6/l.Achieved)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %.3f | %.3f | %.2f | %.2f | %s | %.2f | %.2f | %.2f |", r.label(), l.Sent, l.Completed, errs,
			l.Late, l.SendDelay.P99, l.FromSlot.P99, r.LoadgenCores, r.PrimaryCores, primaryUS, r.ShadowCores, r.HostBusy, r.HostBusyBefore)
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
