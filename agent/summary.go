package agent

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/compare"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/h2frame"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/pcapfile"
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
	File     *FileSummary    `json:"file,omitempty"`    // replay only
	Segments SegmentSummary  `json:"segments"`
	Requests RequestSummary  `json:"requests"`
	Shadow   shadow.Snapshot `json:"shadow"` // all rules together
	Rules    []RuleSummary   `json:"rules"`
	// Interfaces are those attached (live capture only).
	Interfaces []capture.Interface `json:"interfaces,omitempty"`
	// Reloads of the rules file, when there is one.
	Reloads *ReloadSummary `json:"reloads,omitempty"`
	// Compare is what the comparison of answers did, when there is one.
	Compare *CompareSummary `json:"compare,omitempty"`
}

// CompareSummary is what the comparison of the shadow's answers with the
// primary's did: the engine's totals, and the exchanges that never reached
// it.
type CompareSummary struct {
	compare.Totals
	// Overflow counts mirrored requests not compared because too many
	// waited for their answers; Abandoned kept requests cut before they
	// were whole.
	Overflow  uint64 `json:"overflow"`
	Abandoned uint64 `json:"abandoned"`
	// Answers counts the primary's HTTP/1 answers framed and paired.
	AnswersPaired   uint64 `json:"answers_paired"`
	AnswersUnpaired uint64 `json:"answers_unpaired"`
	// AnswersOverrun counts connections with more requests waiting for
	// their answers than are kept (httpframe.DefaultMaxOutstanding): the
	// answers are not seen on the attached interfaces, and the connection's
	// requests count as unpaired.
	AnswersOverrun uint64 `json:"answers_overrun"`

	verdicts []verdictCount // for the metric, by endpoint
}

type verdictCount struct {
	rule, endpoint, verdict string
	n                       uint64
}

// ReloadSummary counts the reloads of the rules file; a failed one keeps the
// rules in force.
type ReloadSummary struct {
	OK        uint64 `json:"ok"`
	Failed    uint64 `json:"failed"`
	LastError string `json:"last_error,omitempty"`
}

// RuleSummary is what one rule did.
type RuleSummary struct {
	Name       string          `json:"name"`
	Matched    uint64          `json:"matched"`
	SampledOut uint64          `json:"sampled_out"`
	Shadow     shadow.Snapshot `json:"shadow"`
	// ByProto splits Shadow by the protocol spoken to the shadow (http1,
	// http2): a rule's shadow is reached by one sender of each.
	ByProto map[string]ProtoCounts `json:"by_proto"`
	// Secondary is what the rule's --compare-secondary sender did, when it
	// has one.
	Secondary *shadow.Snapshot `json:"secondary,omitempty"`

	stats *shadow.Stats // for what the snapshot cannot carry: the latency buckets
}

// ProtoCounts is what one of a rule's senders did: requests queued for the
// shadow, mirrored, and failed (sent without a complete answer).
type ProtoCounts struct {
	Queued   uint64 `json:"queued"`
	Mirrored uint64 `json:"mirrored"`
	Failed   uint64 `json:"failed"`
}

func protoCounts(st *shadow.Stats) ProtoCounts {
	c := ProtoCounts{Queued: st.Queued.Load(), Mirrored: st.Mirrored.Load()}
	for i := range st.Failed {
		c.Failed += st.Failed[i].Load()
	}
	return c
}

// PacketSummary is what the kernel program and the ring's reader counted.
type PacketSummary struct {
	Seen        uint64            `json:"seen"`
	Matched     uint64            `json:"matched"`
	Copied      uint64            `json:"copied"`
	CopiedBytes uint64            `json:"copied_bytes"`
	Dropped     map[string]uint64 `json:"dropped"` // by reason
	Fragments   uint64            `json:"ip_fragments"`
	// OtherServer counts segments of a watched port whose server is not
	// one of the destinations (--pod-ip): left alone, as asked.
	OtherServer uint64              `json:"other_server"`
	Reader      ReaderSummary       `json:"reader"`
	Ifaces      capture.IfaceCounts `json:"interfaces"`
}

// ReaderSummary is how the ring buffer was read: records, looks at the
// ring while busy, and the times the reader slept until the kernel woke it.
type ReaderSummary struct {
	Records uint64 `json:"records"`
	Polls   uint64 `json:"polls"`
	Sleeps  uint64 `json:"sleeps"`
	Wakeups uint64 `json:"wakeups"`
	// Rung counts the kernel's rings of the doorbell (a record that found
	// the reader asleep), RingRetried those retried because the doorbell
	// had no room.
	Rung        uint64 `json:"rung"`
	RingRetried uint64 `json:"ring_retried"`
}

// FileSummary is what a capture file held, over every pass of a replay.
type FileSummary struct {
	LinkType         string            `json:"link_type"`
	Packets          uint64            `json:"packets"`
	Segments         uint64            `json:"tcp_segments"`
	Skipped          map[string]uint64 `json:"skipped"` // packets, by reason
	SnaplenTruncated uint64            `json:"snaplen_truncated"`
	ClientToServer   uint64            `json:"client_to_server"`
	ServerToClient   uint64            `json:"server_to_client"`
	UndecidedDropped uint64            `json:"undecided_dropped"` // segments of connections whose client was never found
	ForgottenStreams uint64            `json:"forgotten_connections"`
	Passes           int               `json:"passes"`
}

// fileStats accumulates the counts of each pass over a capture file.
type fileStats struct {
	sum FileSummary
}

func (f *fileStats) add(s pcapfile.Stats) {
	f.sum.Passes++
	f.sum.LinkType = s.LinkType
	f.sum.Packets += s.Packets
	f.sum.Segments += s.Segments
	f.sum.SnaplenTruncated += s.SnaplenTruncated
	if f.sum.Skipped == nil {
		f.sum.Skipped = map[string]uint64{}
	}
	for k, v := range map[string]uint64{
		"not_ip": s.SkippedNotIP, "not_tcp": s.SkippedNotTCP, "fragment": s.SkippedFragment,
		"short": s.SkippedShort, "link_type": s.SkippedLinkType,
	} {
		if v > 0 {
			f.sum.Skipped[k] += v
		}
	}
}

func (f *fileStats) addSides(s pcapfile.SidesStats) {
	f.sum.ClientToServer += s.ToServer
	f.sum.ServerToClient += s.ToClient
	f.sum.UndecidedDropped += s.Undecided
	f.sum.ForgottenStreams += s.Forgotten
}

// SegmentSummary is what reassembly saw.
type SegmentSummary struct {
	Received uint64 `json:"received"`
	// Inline counts the segments reassembled on the capture goroutine
	// itself; Batches the batches handed to the shards instead.
	Inline       uint64 `json:"inline"`
	Batches      uint64 `json:"batches"`
	BacklogDrops uint64 `json:"backlog_drops"`
	BacklogBytes int64  `json:"backlog_bytes"`
	// ShardWakeups counts the shards' timer wake-ups (deadlines of what
	// they hold).
	ShardWakeups uint64 `json:"shard_wakeups"`
	Active       int64  `json:"streams_active"`
	Closed       uint64 `json:"streams_closed"`
	Expired      uint64 `json:"streams_expired"`
	Evicted      uint64 `json:"streams_evicted"`
	Streams      uint64 `json:"streams"`
	MidStream    uint64 `json:"streams_joined_mid_stream"`
	Gaps         uint64 `json:"gaps"`
	GapBytes     uint64 `json:"gap_bytes"`
	OutOfOrder   uint64 `json:"out_of_order"`
	Duplicates   uint64 `json:"duplicates"`
}

// RequestSummary is what HTTP framing and the sender did with requests.
type RequestSummary struct {
	Framed uint64 `json:"framed"`
	// ByProto splits Framed by the protocol the requests were captured
	// in: http1, http2.
	ByProto  map[string]uint64 `json:"framed_by_proto"`
	Skipped  map[string]uint64 `json:"skipped"` // by reason; "sampled" is the share not selected by --percent
	Queued   uint64            `json:"queued"`
	Dropped  map[string]uint64 `json:"dropped"` // never sent, by reason
	Failed   map[string]uint64 `json:"failed"`  // sent or about to be, no answer, by reason
	Mirrored uint64            `json:"mirrored"`
	// Aborted counts HTTP/2 requests cut while their body was streaming to
	// the shadow (the client reset the stream, a gap, the memory cap), by
	// reason; each is also in Failed or Mirrored, as the shadow ended it.
	Aborted map[string]uint64 `json:"aborted,omitempty"`
	// Printed counts the requests a dry run printed instead of sending.
	Printed uint64 `json:"printed,omitempty"`
}

// stats gathers the counters of every stage of one run.
type stats struct {
	start      time.Time
	live       func() (capture.Stats, error) // nil for files
	interfaces func() []capture.Interface    // nil for files
	file       *fileStats                    // nil for live capture
	reloads    *config.Reloader              // nil without a rules file
	printed    *atomic.Uint64                // dry runs only
	capture    CaptureStats
	reassembly reassembly.Stats
	mirror     *mirror
}

func (s *stats) summary() *Summary {
	sum := &Summary{Duration: time.Since(s.start).Round(time.Millisecond)}
	if s.live != nil {
		if cs, err := s.live(); err == nil {
			sum.Packets = packetSummary(cs)
		}
	}
	if s.file != nil {
		fs := s.file.sum
		sum.File = &fs
	}
	if s.interfaces != nil {
		sum.Interfaces = s.interfaces()
	}
	if s.reloads != nil {
		rs := s.reloads.Stats()
		sum.Reloads = &ReloadSummary{OK: rs.OK, Failed: rs.Failed}
		if rs.LastError != nil {
			sum.Reloads.LastError = rs.LastError.Error()
		}
	}
	r := &s.reassembly
	c := &s.capture
	sum.Segments = SegmentSummary{
		Received:     c.Segments.Load(),
		Inline:       c.Inline.Load(),
		Batches:      c.Batches.Load(),
		BacklogDrops: c.BacklogDrops.Load(),
		BacklogBytes: c.BacklogBytes.Load(),
		ShardWakeups: c.Ticks.Load(),
		Active:       r.ActiveStreams.Load(),
		Closed:       r.StreamsClosed.Load(),
		Expired:      r.StreamsExpired.Load(),
		Evicted:      r.StreamsEvicted.Load(),
		Streams:      r.StreamsOpened.Load(),
		MidStream:    r.StreamsMid.Load(),
		Gaps:         r.Gaps.Load(),
		GapBytes:     r.GapBytes.Load(),
		OutOfOrder:   r.OutOfOrder.Load(),
		Duplicates:   r.Duplicate.Load(),
	}
	f, h2 := &s.mirror.framing, &s.mirror.http2
	skipped := map[string]uint64{}
	for i := range httpframe.NumReasons {
		if n := f.Skipped[i].Load(); n > 0 {
			skipped[i.String()] += n
		}
	}
	for i := range h2frame.NumReasons {
		if n := h2.Skipped[i].Load(); n > 0 {
			skipped[i.String()] += n
		}
	}
	for i := range skipReason(numSkipReasons) {
		if n := s.mirror.skipped[i].Load(); n > 0 {
			skipped[i.String()] += n
		}
	}
	var all shadow.Stats
	for _, r := range s.mirror.rules() {
		// A rule's shadow is reached by two senders, HTTP/1.1 and
		// HTTP/2: its counts are theirs together.
		rs := new(shadow.Stats)
		r.shadow.AddTo(rs)
		r.shadow2.AddTo(rs)
		rs.AddTo(&all)
		rule := RuleSummary{
			Name: r.name, Matched: r.matched.Load(), SampledOut: r.sampledOut.Load(), Shadow: rs.Snapshot(),
			ByProto: map[string]ProtoCounts{"http1": protoCounts(&r.shadow), "http2": protoCounts(&r.shadow2)},
			stats:   rs,
		}
		if r.secondary.Queued.Load() > 0 {
			sn := r.secondary.Snapshot()
			rule.Secondary = &sn
		}
		sum.Rules = append(sum.Rules, rule)
	}
	sum.Shadow = all.Snapshot()
	sum.Requests = RequestSummary{
		Framed: f.Requests.Load() + h2.Requests.Load(),
		ByProto: map[string]uint64{
			"http1": f.Requests.Load(),
			"http2": h2.Requests.Load(),
		},
		Skipped:  skipped,
		Queued:   sum.Shadow.Queued,
		Dropped:  sum.Shadow.Dropped,
		Failed:   sum.Shadow.Failed,
		Mirrored: sum.Shadow.Mirrored,
	}
	for i := range h2frame.NumReasons {
		if n := h2.Aborted[i].Load(); n > 0 {
			if sum.Requests.Aborted == nil {
				sum.Requests.Aborted = map[string]uint64{}
			}
			sum.Requests.Aborted[i.String()] = n
		}
	}
	if s.printed != nil {
		sum.Requests.Printed = s.printed.Load()
	}
	if c := s.mirror.cmp; c != nil {
		cs := &CompareSummary{
			Totals:          c.engine.Report().Totals,
			Overflow:        c.overflow.Load(),
			Abandoned:       c.abandoned.Load(),
			AnswersPaired:   s.mirror.answers.Paired.Load(),
			AnswersUnpaired: s.mirror.answers.Unpaired.Load(),
			AnswersOverrun:  s.mirror.answers.Overrun.Load(),
		}
		c.engine.VisitVerdicts(func(rule, endpoint, verdict string, n uint64) {
			cs.verdicts = append(cs.verdicts, verdictCount{rule, endpoint, verdict, n})
		})
		sum.Compare = cs
	}
	return sum
}

func packetSummary(cs capture.Stats) *PacketSummary {
	k, r := cs.Kernel, cs.Reader
	return &PacketSummary{
		Seen: k.Seen, Matched: k.Matched, Copied: k.Copied, CopiedBytes: k.CopiedBytes,
		Fragments: k.Fragments, OtherServer: k.OtherDest,
		Dropped: nonZero(map[string]uint64{
			"ring_full": k.DropRingFull, "load_error": k.DropLoad, "truncated": k.Truncated, "malformed": r.Malformed,
		}),
		Reader: ReaderSummary{Records: r.Records, Polls: r.Polls, Sleeps: r.Sleeps, Wakeups: r.Wakeups,
			Rung: k.Wakeups, RingRetried: k.WakeupsLost},
		Ifaces: cs.Ifaces,
	}
}

// nonZero returns m without its zero counts.
func nonZero(m map[string]uint64) map[string]uint64 {
	maps.DeleteFunc(m, func(_ string, v uint64) bool { return v == 0 })
	return m
}

// dryRun reports whether the summary is of a dry run.
func (s *Summary) dryRun() bool { return s.File != nil && s.Requests.Printed > 0 }

// WriteText prints the summary as a small table for people.
func (s *Summary) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "shadowtee summary after %v\n", s.Duration)
	if p := s.Packets; p != nil {
		fmt.Fprintf(tw, "  packets\tseen %d\tmatched %d\tcopied %d (%s)\tdropped %s\n",
			p.Seen, p.Matched, p.Copied, bytesText(p.CopiedBytes), reasons(p.Dropped))
	}
	if f := s.File; f != nil {
		fmt.Fprintf(tw, "  capture\t%s\tpackets %d\ttcp segments %d (%d client to server)\tskipped %s\n",
			f.LinkType, f.Packets, f.Segments, f.ClientToServer, reasons(f.Skipped))
		if f.UndecidedDropped+f.SnaplenTruncated > 0 {
			fmt.Fprintf(tw, "  \tsegments of connections without a known client %d\tcut by the snap length %d\n",
				f.UndecidedDropped, f.SnaplenTruncated)
		}
	}
	g := s.Segments
	fmt.Fprintf(tw, "  segments\treceived %d\tstreams %d (%d joined mid-stream)\tgaps %d (%s)\tdropped %d\n",
		g.Received, g.Streams, g.MidStream, g.Gaps, bytesText(g.GapBytes), g.BacklogDrops)
	q := s.Requests
	if s.dryRun() {
		fmt.Fprintf(tw, "  requests\tframed %d\tskipped %s\tprinted %d (dry run: nothing sent)\n",
			q.Framed, reasons(q.Skipped), q.Printed)
	} else {
		fmt.Fprintf(tw, "  requests\tframed %d\tskipped %s\tmirrored %d\tdropped %s\tfailed %s\n",
			q.Framed, reasons(q.Skipped), q.Mirrored, reasons(q.Dropped), reasons(q.Failed))
	}
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
	if len(s.Shadow.GRPCStatus) > 0 {
		parts = parts[:0]
		// Shorter first puts the codes in numeric order and "other" last.
		codes := slices.SortedFunc(maps.Keys(s.Shadow.GRPCStatus), func(a, b string) int {
			return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
		})
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%s: %d", c, s.Shadow.GRPCStatus[c]))
		}
		fmt.Fprintf(tw, "  shadow grpc-status\t%s\n", strings.Join(parts, ", "))
	}
	if s.Shadow.Responses > 0 {
		fmt.Fprintf(tw, "  shadow latency\tp50 %v\tp99 %v\tconnections opened %d\tpeak in flight %d\n",
			s.Shadow.LatencyP50, s.Shadow.LatencyP99, s.Shadow.ConnectionsOpened, s.Shadow.PeakInFlight)
	}
	if c := s.Compare; c != nil {
		fmt.Fprintf(tw, "  compared\t%d of %d\tsame %d\tdifferent %d\tnoise only %d\tunpaired %d\tnot compared %s\n",
			c.Compared, c.Exchanges, c.Same, c.Different, c.NoiseOnly, c.Unpaired,
			reasons(nonZero(map[string]uint64{"overflow": c.Overflow, "abandoned": c.Abandoned, "dropped": c.Dropped})))
	}
	for _, r := range s.Rules {
		if sn := r.Secondary; sn != nil {
			fmt.Fprintf(tw, "  secondary of %s\tmirrored %d\tdropped %s\tfailed %s\n",
				r.Name, sn.Mirrored, reasons(sn.Dropped), reasons(sn.Failed))
		}
	}
	if len(s.Rules) > 1 {
		for _, r := range s.Rules {
			fmt.Fprintf(tw, "  rule %s\tmatched %d\tsampled out %d\tmirrored %d\tdropped %s\tfailed %s\n",
				r.Name, r.Matched, r.SampledOut, r.Shadow.Mirrored, reasons(r.Shadow.Dropped), reasons(r.Shadow.Failed))
		}
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
