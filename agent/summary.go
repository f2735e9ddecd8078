package agent

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/reassembly"
	"github.com/shadowtee/shadowtee/shadow"
)

// Summary is what a run did, from packets to shadow answers. Every request
// that was framed ends in exactly one of: skipped (by reason, sampling
// included), dropped before the shadow (by reason), failed (by reason), or
// mirrored (by status code).
type Summary struct {
	Duration time.Duration `json:"duration_ns"`

	Packets  *PacketSummary  `json:"packets,omitempty"` // live capture only
	Segments SegmentSummary  `json:"segments"`
	Requests RequestSummary  `json:"requests"`
	Shadow   shadow.Snapshot `json:"shadow"`
}

// PacketSummary is what the kernel program counted.
type PacketSummary struct {
	Seen        uint64            `json:"seen"`
	Matched     uint64            `json:"matched"`
	Copied      uint64            `json:"copied"`
	CopiedBytes uint64            `json:"copied_bytes"`
	Dropped     map[string]uint64 `json:"dropped"` // by reason
	Fragments   uint64            `json:"ip_fragments"`
}

// SegmentSummary is what reassembly saw.
type SegmentSummary struct {
	Received     uint64 `json:"received"`
	BacklogDrops uint64 `json:"backlog_drops"`
	Streams      uint64 `json:"streams"`
	MidStream    uint64 `json:"streams_joined_mid_stream"`
	Gaps         uint64 `json:"gaps"`
	GapBytes     uint64 `json:"gap_bytes"`
	OutOfOrder   uint64 `json:"out_of_order"`
	Duplicates   uint64 `json:"duplicates"`
}

// RequestSummary is what HTTP framing and the sender did with requests.
type RequestSummary struct {
	Framed   uint64            `json:"framed"`
	Skipped  map[string]uint64 `json:"skipped"` // by reason; "sampled" is the share not selected by --percent
	Queued   uint64            `json:"queued"`
	Dropped  map[string]uint64 `json:"dropped"` // never sent, by reason
	Failed   map[string]uint64 `json:"failed"`  // sent or about to be, no answer, by reason
	Mirrored uint64            `json:"mirrored"`
}

// stats gathers the counters of every stage of one run.
type stats struct {
	start      time.Time
	kernel     func() (bpf.Counters, error) // nil for files
	capture    CaptureStats
	reassembly reassembly.Stats
	mirror     *mirror
}

func (s *stats) summary() *Summary {
	sum := &Summary{Duration: time.Since(s.start).Round(time.Millisecond)}
	if s.kernel != nil {
		if k, err := s.kernel(); err == nil {
			sum.Packets = &PacketSummary{
				Seen: k.Seen, Matched: k.Matched, Copied: k.Copied, CopiedBytes: k.CopiedBytes,
				Fragments: k.Fragments,
				Dropped: nonZero(map[string]uint64{
					"ring_full": k.DropRingFull, "load_error": k.DropLoad, "truncated": k.Truncated,
				}),
			}
		}
	}
	r := &s.reassembly
	sum.Segments = SegmentSummary{
		Received:     s.capture.Segments.Load(),
		BacklogDrops: s.capture.BacklogDrops.Load(),
		Streams:      r.StreamsOpened.Load(),
		MidStream:    r.StreamsMid.Load(),
		Gaps:         r.Gaps.Load(),
		GapBytes:     r.GapBytes.Load(),
		OutOfOrder:   r.OutOfOrder.Load(),
		Duplicates:   r.Duplicate.Load(),
	}
	f := &s.mirror.framing
	skipped := map[string]uint64{}
	for i := range httpframe.NumReasons {
		if n := f.Skipped[i].Load(); n > 0 {
			skipped[i.String()] = n
		}
	}
	sum.Shadow = s.mirror.shadow.Snapshot()
	sum.Requests = RequestSummary{
		Framed:   f.Requests.Load(),
		Skipped:  skipped,
		Queued:   sum.Shadow.Queued,
		Dropped:  sum.Shadow.Dropped,
		Failed:   sum.Shadow.Failed,
		Mirrored: sum.Shadow.Mirrored,
	}
	return sum
}

func nonZero(m map[string]uint64) map[string]uint64 {
	maps.DeleteFunc(m, func(_ string, v uint64) bool { return v == 0 })
	return m
}

// WriteText prints the summary as a small table for people.
func (s *Summary) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "shadowtee summary after %v\n", s.Duration)
	if p := s.Packets; p != nil {
		fmt.Fprintf(tw, "  packets\tseen %d\tmatched %d\tcopied %d (%s)\tdropped %s\n",
			p.Seen, p.Matched, p.Copied, bytesText(p.CopiedBytes), reasons(p.Dropped))
	}
	g := s.Segments
	fmt.Fprintf(tw, "  segments\treceived %d\tstreams %d (%d joined mid-stream)\tgaps %d (%s)\tdropped %d\n",
		g.Received, g.Streams, g.MidStream, g.Gaps, bytesText(g.GapBytes), g.BacklogDrops)
	q := s.Requests
	fmt.Fprintf(tw, "  requests\tframed %d\tskipped %s\tmirrored %d\tdropped %s\tfailed %s\n",
		q.Framed, reasons(q.Skipped), q.Mirrored, reasons(q.Dropped), reasons(q.Failed))
	codes := slices.Sorted(maps.Keys(s.Shadow.Status))
	var parts []string
	for _, c := range codes {
		label := strconv.Itoa(c)
		if c == 0 {
			label = "other"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", label, s.Shadow.Status[c]))
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(tw, "  shadow status codes\t%s\n", strings.Join(parts, ", "))
	if s.Shadow.Responses > 0 {
		fmt.Fprintf(tw, "  shadow latency\tp50 %v\tp99 %v\tconnections opened %d\n",
			s.Shadow.LatencyP50, s.Shadow.LatencyP99, s.Shadow.ConnectionsOpened)
	}
	tw.Flush()
}

func reasons(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	var total uint64
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		total += m[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
