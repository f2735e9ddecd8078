package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"slices"
	"strconv"
)

// point is one tee run on the plot.
type point struct {
	Rate     float64
	CPU      float64 // µs per request
	Complete float64 // %
}

// series is one tee under one kind of load.
type series struct {
	Tool, Kind string
	Points     []point
}

// Series kinds on the plot: the keep-alive GET runs (the saturation run
// included) form a line; the others are single points.
var plotKinds = []struct{ kind, label, marker string }{
	{scGet, "GET keep-alive", "circle"},
	{scPost, "POST", "square"},
	{scNewConn, "new connection per request", "triangle"},
}

var palette = []string{"#1f6fb4", "#e07b00", "#2a9d3a", "#8c4bb4", "#c0392b"}

// plotSeries gathers the tee runs of the scenarios into series, one point
// per tool and scenario: the median of its passes.
func plotSeries(scs []*Scenario) []series {
	index := map[[2]string]int{}
	var out []series
	for _, sc := range scs {
		kind := sc.Kind
		switch kind {
		case scSaturation:
			kind = scGet
		case scIdle, scSoak:
			continue // not a rate of requests, or not a healthy shadow
		}
		var tools []string
		for _, r := range sc.Runs {
			if r.Kind != kindBaseline && !slices.Contains(tools, r.Tool) {
				tools = append(tools, r.Tool)
			}
		}
		for _, tool := range tools {
			var cpu, complete []*float64
			for _, r := range sc.runsOf(tool) {
				cpu, complete = append(cpu, r.CPUPerReqUS), append(complete, r.CompletePct)
			}
			c, n := median(cpu)
			m, k := median(complete)
			if n == 0 || k == 0 {
				continue
			}
			key := [2]string{tool, kind}
			i, ok := index[key]
			if !ok {
				i = len(out)
				index[key] = i
				out = append(out, series{Tool: tool, Kind: kind})
			}
			out[i].Points = append(out[i].Points, point{Rate: sc.Rate, CPU: c, Complete: m})
		}
	}
	for i := range out {
		slices.SortFunc(out[i].Points, func(a, b point) int { return int(a.Rate - b.Rate) })
	}
	return out
}

// niceCeil rounds v up to a round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or
// 8 times a power of ten) and returns it with a round tick step.
func niceCeil(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.2
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, c := range [][2]float64{{1, .2}, {1.2, .2}, {1.5, .5}, {2, .5}, {2.5, .5}, {3, .5}, {4, 1}, {5, 1}, {6, 1}, {8, 2}, {10, 2}} {
		if c[0]*exp >= v*(1-1e-9) {
			return c[0] * exp, c[1] * exp
		}
	}
	return 10 * exp, 2 * exp
}

// axis maps data values to pixels along one direction, linearly or, for
// rates that span more than a decade, logarithmically.
type axis struct {
	lo, hi, step float64
	p0, p1       float64
	log          bool
}

func (a axis) at(v float64) float64 {
	if a.log {
		return a.p0 + (math.Log(v)-math.Log(a.lo))/(math.Log(a.hi)-math.Log(a.lo))*(a.p1-a.p0)
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

func (a axis) ticks() []float64 {
	var t []float64
	if a.log {
		for dec := math.Pow(10, math.Floor(math.Log10(a.lo))); dec <= a.hi; dec *= 10 {
			for _, m := range []float64{1, 2, 5} {
				if v := m * dec; v >= a.lo && v <= a.hi {
					t = append(t, v)
				}
			}
		}
		return t
	}
	for v := a.lo; v <= a.hi+a.step/1000; v += a.step {
		t = append(t, math.Round(v*1e6)/1e6)
	}
	return t
}

// rateAxis spans the rates of the points.
func rateAxis(minRate, maxRate, p0, p1 float64) axis {
	if maxRate >= 8*minRate {
		return axis{lo: minRate / 1.5, hi: maxRate * 1.5, p0: p0, p1: p1, log: true}
	}
	top, step := niceCeil(maxRate * 1.05)
	return axis{lo: 0, hi: top, step: step, p0: p0, p1: p1}
}

func tickLabel(v float64) string {
	if v >= 1000 && math.Mod(v, 1000) == 0 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// cpuTargets are shadowtee's goals for CPU per request, drawn on the left
// panel.
var cpuTargets = []struct{ rate, us float64 }{{5000, 25}, {10000, 15}}

// plotSVG draws agent CPU per request and completeness against rate, one
// panel each, and returns the SVG document.
func plotSVG(scs []*Scenario, subtitle string) []byte {
	ss := plotSeries(scs)
	const w, h = 960.0, 470.0
	const top, bottom, left, gap, right = 84.0, 380.0, 70.0, 90.0, 20.0
	pw := (w - left - gap - right) / 2

	var minRate, maxRate, maxCPU, minComplete float64 = math.Inf(1), 1000, 30, 100
	for _, s := range ss {
		for _, p := range s.Points {
			minRate, maxRate = min(minRate, p.Rate), max(maxRate, p.Rate)
			maxCPU = max(maxCPU, p.CPU)
			minComplete = min(minComplete, p.Complete)
		}
	}
	minRate = min(minRate, maxRate)
	yTop, yStep := niceCeil(maxCPU * 1.1)
	cLo, cStep := 99.0, 0.25
	if minComplete < 99 {
		span, st := niceCeil(100 - minComplete)
		cLo, cStep = 100-span, st
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%.0f" height="%.0f" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">shadowtee under open-loop load</text>`+"\n", left)
	if subtitle != "" {
		fmt.Fprintf(&b, `<text x="%.0f" y="40" fill="#555">%s</text>`+"\n", left, html.EscapeString(subtitle))
	}

	panels := []struct {
		title string
		x, y  axis
		value func(point) float64
		unit  string
	}{
		{"agent CPU per request (µs)", rateAxis(minRate, maxRate, left, left+pw), axis{lo: 0, hi: yTop, step: yStep, p0: bottom, p1: top}, func(p point) float64 { return p.CPU }, "µs"},
		{"requests mirrored exactly once (%)", rateAxis(minRate, maxRate, left+pw+gap, left+2*pw+gap),
			axis{lo: cLo, hi: 100 + cStep/3, step: cStep, p0: bottom, p1: top},
			func(p point) float64 { return max(p.Complete, cLo) }, "%"},
	}
	for pi, p := range panels {
		drawFrame(&b, p.title, p.x, p.y)
		if pi == 0 {
			for _, t := range cpuTargets {
				if t.us > p.y.hi {
					continue
				}
				x, y := p.x.at(t.rate), p.y.at(t.us)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c0392b" stroke-width="2" stroke-dasharray="5,3"/>`+"\n", x-18, y, x+18, y)
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c0392b" font-size="11" text-anchor="middle">target %.0f µs</text>`+"\n", x, y+14, t.us)
			}
		}
		for _, s := range ss {
			ti := toolIndex(ss, s.Tool)
			color := palette[ti%len(palette)]
			marker := markerOf(s.Kind)
			if len(s.Points) > 1 {
				var pts []string
				for _, pt := range s.Points {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.x.at(pt.Rate), p.y.at(p.value(pt))))
				}
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", joinSpace(pts), color)
			}
			for _, pt := range s.Points {
				x, y := p.x.at(pt.Rate), p.y.at(p.value(pt))
				drawMarker(&b, marker, x, y, color)
				label := fmt.Sprintf("%.1f", p.value(pt))
				if pi == 1 {
					// Full marks need no label; the shortfalls do.
					if pt.Complete >= 99.995 {
						continue
					}
					label = fmt.Sprintf("%.2f", pt.Complete)
				}
				// Tools take turns above and below their points, so labels
				// of points that meet do not overprint.
				dy := -7 - 11*float64(ti/2)
				if ti%2 == 1 {
					dy = 15 + 11*float64(ti/2)
				}
				// Kinds measured at the same rate put their labels on
				// different sides: GET right, POST left, new connections
				// right and lower.
				dx, anchor := 6.0, "start"
				switch s.Kind {
				case scPost:
					dx, anchor = -8, "end"
				case scNewConn:
					dy += 12
				}
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="%s" text-anchor="%s">%s</text>`+"\n", x+dx, y+dy, color, anchor, label)
			}
		}
	}
	drawLegend(&b, ss, left, h-16)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func drawFrame(b *bytes.Buffer, title string, x, y axis) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="bold">%s</text>`+"\n", x.p0, y.p1-10, html.EscapeString(title))
	for _, v := range y.ticks() {
		py := y.at(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3"/>`+"\n", x.p0, py, x.p1, py)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", x.p0-6, py+4, tickLabel(v))
	}
	for _, v := range x.ticks() {
		px := x.at(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", px, y.p0, px, y.p0+4)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", px, y.p0+17, tickLabel(v))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", x.p0, y.p1, x.p1-x.p0, y.p0-y.p1)
	scale := ""
	if x.log {
		scale = ", log scale"
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">offered rate (requests/s%s)</text>`+"\n", (x.p0+x.p1)/2, y.p0+34, scale)
}

func drawMarker(b *bytes.Buffer, marker string, x, y float64, color string) {
	switch marker {
	case "square":
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="9" height="9" fill="%s"/>`+"\n", x-4.5, y-4.5, color)
	case "triangle":
		fmt.Fprintf(b, `<polygon points="%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="%s"/>`+"\n", x, y-6, x-5.5, y+4, x+5.5, y+4, color)
	default:
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"/>`+"\n", x, y, color)
	}
}

func drawLegend(b *bytes.Buffer, ss []series, x, y float64) {
	var tools []string
	for _, s := range ss {
		if !slices.Contains(tools, s.Tool) {
			tools = append(tools, s.Tool)
		}
	}
	for i, t := range tools {
		c := palette[i%len(palette)]
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", x, y-4, x+22, y-4, c)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+28, y, html.EscapeString(t))
		x += 40 + 7*float64(len(t))
	}
	x += 20
	for _, k := range plotKinds {
		drawMarker(b, k.marker, x+5, y-4, "#555")
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+16, y, k.label)
		x += 36 + 6.5*float64(len(k.label))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c0392b" stroke-width="2" stroke-dasharray="5,3"/>`+"\n", x, y-4, x+22, y-4)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f">target</text>`+"\n", x+28, y)
}

func toolIndex(ss []series, tool string) int {
	var seen []string
	for _, s := range ss {
		if !slices.Contains(seen, s.Tool) {
			seen = append(seen, s.Tool)
		}
		if s.Tool == tool {
			return slices.Index(seen, tool)
		}
	}
	return 0
}

func markerOf(kind string) string {
	for _, k := range plotKinds {
		if k.kind == kind {
			return k.marker
		}
	}
	return "circle"
}

func joinSpace(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}
