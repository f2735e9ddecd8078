package main

import (
	"fmt"
	"io"
	"strings"
)

// writeIdle renders the idle scenario: what the generator kept open, what
// the shadow received, and the tee's memory and CPU.
func writeIdle(w io.Writer, sc *Scenario) {
	fmt.Fprintln(w, "| run | connections answered | still open at the end | mirrored once | missing | dup | max RSS MiB | RSS at idle start MiB | RSS at idle end MiB | CPU % core while idle | shadow conns | start-up s | drops |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range sc.Runs {
		ir := r.Idle
		if ir == nil || r.Load.Scheduled == 0 {
			fmt.Fprintf(w, "| %s | failed | | | | | | | | | | | |\n", r.label())
			continue
		}
		dropText := dash
		if r.Kind == kindShadowtee && r.Counters != nil {
			dropText = formatDrops(r.Drops)
		}
		fmt.Fprintf(w, "| %s | %s of %s | %s | %s | %d | %d | %s | %.1f | %.1f | %s | %d | %s | %s |\n", r.label(),
			thousands(float64(ir.Open)), thousands(float64(ir.Conns)), thousands(float64(ir.Alive)),
			fmtPtr(r.CompletePct, "%.2f%%"), r.Missing, r.Duplicated, fmtPtr(r.MaxRSSMiB, "%.1f"),
			ir.RSSIdleStartMiB, ir.RSSIdleEndMiB, fmtPtr(ir.IdleCPUPct, "%.2f"), r.Shadow.Conns,
			fmtPtr(r.StartupS, "%.3f"), dropText)
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
	fmt.Fprintln(w, "| run | req/s | p50 ms | p99 ms | Δp99 ms | primary errors | RSS start MiB | max MiB | end MiB | slope MiB/min | CPU % core | sent | mirrored | failed | dropped | skipped | held at the end | unaccounted | shadow received |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range sc.Runs {
		l := r.Load
		if l.Scheduled == 0 {
			fmt.Fprintf(w, "| %s | failed | | | | | | | | | | | | | | | | | |\n", r.label())
			continue
		}
		row := []string{r.label(), thousands(l.Achieved), fmt.Sprintf("%.3f", l.Latency.P50), fmt.Sprintf("%.3f", l.Latency.P99),
			fmtPtr(r.DeltaP99, "%+.3f"), loadErrors(l)}
		sk := r.Soak
		if sk == nil {
			row = append(row, dash, dash, dash, dash, dash, fmt.Sprint(l.Sent), dash, dash, dash, dash, dash, dash, dash)
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			continue
		}
		row = append(row, fmt.Sprintf("%.1f", sk.StartMiB), fmt.Sprintf("%.1f", sk.MaxMiB), fmt.Sprintf("%.1f", sk.EndMiB),
			fmt.Sprintf("%+.2f", sk.Slope), fmtPtr(r.CPUCorePct, "%.1f"))
		if lg := sk.Ledger; lg != nil && lg.Framed > 0 {
			row = append(row, fmt.Sprint(lg.Sent), fmt.Sprintf("%.0f", lg.Mirrored), fmt.Sprintf("%.0f", sum(lg.Failed)),
				fmt.Sprintf("%.0f", sum(lg.Dropped)), fmt.Sprintf("%.0f", sum(lg.Skipped)), fmt.Sprintf("%.0f", lg.HeldAtEnd),
				fmt.Sprintf("%.0f", lg.Unaccounted))
		} else {
			row = append(row, fmt.Sprint(l.Sent), dash, dash, dash, dash, dash, dash)
		}
		row = append(row, fmt.Sprint(sk.ShadowArrived))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	for _, r := range sc.Runs {
		sk := r.Soak
		if sk == nil {
			continue
		}
		fmt.Fprintf(w, "- %s:", r.label())
		if lg := sk.Ledger; lg != nil && lg.Framed > 0 {
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
