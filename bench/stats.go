package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Quantiles summarises a set of durations, in milliseconds.
type Quantiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted values, or 0 for none.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// quantiles sorts ns (nanoseconds) in place and summarises it.
func quantiles(ns []int64) Quantiles {
	slices.Sort(ns)
	ms := func(v int64) float64 { return float64(v) / 1e6 }
	q := Quantiles{N: len(ns)}
	if len(ns) == 0 {
		return q
	}
	q.P50 = ms(percentile(ns, 50))
	q.P90 = ms(percentile(ns, 90))
	q.P99 = ms(percentile(ns, 99))
	q.P999 = ms(percentile(ns, 99.9))
	q.Max = ms(ns[len(ns)-1])
	return q
}

// promSample is "name{labels}" -> value, as read from a /metrics page.
type promSample map[string]float64

// parseProm reads the Prometheus text format, keeping each sample's name
// and labels as one key.
func parseProm(r io.Reader) (promSample, error) {
	m := promSample{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics: bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: bad value in %q", line)
		}
		m[strings.TrimSpace(line[:i])] = v
	}
	return m, sc.Err()
}

// dropFamilies are the agent's counters of lost or skipped requests, with
// the short names the reports use for them.
var dropFamilies = []struct{ metric, short string }{
	{"shadowtee_packet_drops_total", "packet"},
	{"shadowtee_segment_drops_total", "segment"},
	{"shadowtee_requests_dropped_total", "dropped"},
	{"shadowtee_requests_failed_total", "failed"},
	{"shadowtee_requests_skipped_total", "skipped"},
}

// drops returns, for every drop counter that grew between before and
// after, "family/reason" -> growth.
func drops(before, after promSample) map[string]float64 {
	out := map[string]float64{}
	for key, v := range after {
		name, labels, _ := strings.Cut(key, "{")
		for _, f := range dropFamilies {
			if name != f.metric {
				continue
			}
			d := v - before[key]
			if d <= 0 {
				continue
			}
			reason := labelValue(labels, "reason")
			if reason == "" {
				reason = "all"
			}
			out[f.short+"/"+reason] += d
		}
	}
	return out
}

// labelValue finds name="value" in a label list such as `a="x",b="y"}`.
func labelValue(labels, name string) string {
	i := strings.Index(labels, name+`="`)
	for i > 0 && labels[i-1] != ',' {
		j := strings.Index(labels[i+1:], name+`="`)
		if j < 0 {
			return ""
		}
		i += 1 + j
	}
	if i < 0 {
		return ""
	}
	rest := labels[i+len(name)+2:]
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	return rest[:end]
}

// formatDrops renders drops as "family/reason=n" pairs in a stable order.
func formatDrops(d map[string]float64) string {
	if len(d) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.0f", k, d[k])
	}
	return strings.Join(parts, " ")
}

// delta returns after[key] - before[key].
func (after promSample) delta(before promSample, key string) float64 {
	return after[key] - before[key]
}
