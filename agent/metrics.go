package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/shadow"
)

// collector exposes the run's counters to Prometheus. It reads the atomic
// counters at scrape time, so the packet path pays nothing for metrics.
type collector struct {
	s          *stats
	interfaces func() []ReadyInterface
	streams    func() int

	packets, kernelDrops, copiedBytes           *prometheus.Desc
	segments, backlogDrops, backlogBytes        *prometheus.Desc
	streamsActive, streamsTotal, gaps, gapBytes *prometheus.Desc
	requests, skipped, dropped, failed          *prometheus.Desc
	ruleRequests, reloads                       *prometheus.Desc
	responses, latency, connections, queueBytes *prometheus.Desc
	attached, ifaceEvents                       *prometheus.Desc
}

func newCollector(s *stats, interfaces func() []ReadyInterface, streams func() int) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("shadowtee_"+name, help, labels, nil)
	}
	return &collector{
		s: s, interfaces: interfaces, streams: streams,
		packets:       d("packets_total", "Packets seen by the kernel program, matched to a watched port, and copied whole.", "result"),
		kernelDrops:   d("packet_drops_total", "Matched packets the kernel program could not copy (whole), by reason.", "reason"),
		copiedBytes:   d("copied_bytes_total", "TCP payload bytes copied by the kernel program."),
		segments:      d("segments_total", "Segments read from the capture."),
		backlogDrops:  d("segment_drops_total", "Segments dropped in user space because the workers were behind.", "reason"),
		backlogBytes:  d("backlog_bytes", "Payload bytes waiting for the reassembly workers."),
		streamsActive: d("streams_active", "TCP streams followed now."),
		streamsTotal:  d("streams_total", "TCP streams by how they started or ended.", "event"),
		gaps:          d("stream_gaps_total", "Holes in TCP streams given up on (the requests they cut are counted as incomplete)."),
		gapBytes:      d("stream_gap_bytes_total", "Bytes lost in those holes."),
		requests:      d("requests_total", "HTTP requests framed, queued for a shadow, and mirrored (answered by the shadow), over all rules.", "result"),
		skipped:       d("requests_skipped_total", "Requests not mirrored by decision (sampled, no_rule, already_shadowed) or because they could not be framed, by reason.", "reason"),
		ruleRequests:  d("rule_requests_total", "Requests of each rule: matched, sampled out, queued, mirrored.", "rule", "result"),
		dropped:       d("requests_dropped_total", "Requests not sent to the shadow, by rule and reason.", "rule", "reason"),
		failed:        d("requests_failed_total", "Requests sent to the shadow without a complete answer, by rule and reason.", "rule", "reason"),
		responses:     d("shadow_responses_total", "Final responses of the shadow by rule and status code.", "rule", "code"),
		latency:       d("shadow_latency_seconds", "Time from writing a request to the end of the shadow's response.", "rule"),
		connections:   d("shadow_connections_opened_total", "Connections opened to the shadow.", "rule"),
		queueBytes:    d("shadow_queue_bytes", "Bytes of requests held for the shadow, queued or awaiting an answer.", "rule"),
		reloads:       d("config_reloads_total", "Reloads of the rules file, by result; a failed one keeps the rules in force.", "result"),
		attached:      d("attached", "Interfaces the program is attached to, with the attach mode in use.", "iface", "mode"),
		ifaceEvents:   d("interface_events_total", "Interfaces attached and detached as they appeared and went, and failed attaches.", "event"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	s := c.s
	if s.kernel != nil {
		if k, err := s.kernel(); err == nil {
			counter(c.packets, k.Seen, "seen")
			counter(c.packets, k.Matched, "matched")
			counter(c.packets, k.Copied, "copied")
			counter(c.kernelDrops, k.DropRingFull, "ring_full")
			counter(c.kernelDrops, k.DropLoad, "load_error")
			counter(c.kernelDrops, k.Truncated, "truncated")
			counter(c.copiedBytes, k.CopiedBytes)
		}
	}
	counter(c.segments, s.capture.Segments.Load())
	counter(c.backlogDrops, s.capture.BacklogDrops.Load(), "backlog_full")
	gauge(c.backlogBytes, float64(s.capture.BacklogBytes.Load()))

	r := &s.reassembly
	gauge(c.streamsActive, float64(c.streams()))
	counter(c.streamsTotal, r.StreamsOpened.Load(), "opened")
	counter(c.streamsTotal, r.StreamsMid.Load(), "joined_mid_stream")
	counter(c.streamsTotal, r.StreamsClosed.Load(), "closed")
	counter(c.streamsTotal, r.StreamsExpired.Load(), "expired")
	counter(c.streamsTotal, r.StreamsEvicted.Load(), "evicted")
	counter(c.gaps, r.Gaps.Load())
	counter(c.gapBytes, r.GapBytes.Load())

	f := &s.mirror.framing
	counter(c.requests, f.Requests.Load(), "framed")
	for i := range httpframe.NumReasons {
		counter(c.skipped, f.Skipped[i].Load(), i.String())
	}
	for i := range skipReason(numSkipReasons) {
		counter(c.skipped, s.mirror.skipped[i].Load(), i.String())
	}
	var queued, mirrored uint64
	for _, r := range s.mirror.rules() {
		sh := &r.shadow
		queued += sh.Queued.Load()
		mirrored += sh.Mirrored.Load()
		counter(c.ruleRequests, r.matched.Load(), r.name, "matched")
		counter(c.ruleRequests, r.sampledOut.Load(), r.name, "sampled_out")
		counter(c.ruleRequests, sh.Queued.Load(), r.name, "queued")
		counter(c.ruleRequests, sh.Mirrored.Load(), r.name, "mirrored")
		for i := range shadow.NumDropReasons {
			counter(c.dropped, sh.Dropped[i].Load(), r.name, i.String())
		}
		for i := range shadow.NumFailReasons {
			counter(c.failed, sh.Failed[i].Load(), r.name, i.String())
		}
		sh.VisitStatus(func(code int, n uint64) {
			label := strconv.Itoa(code)
			if code == 0 {
				label = "other"
			}
			counter(c.responses, n, r.name, label)
		})
		buckets := map[float64]uint64{}
		var count uint64
		sh.Latency.Visit(func(le time.Duration, cumulative uint64) {
			if le < 0 {
				// The +Inf bucket: the count, consistent with the
				// buckets read in the same pass.
				count = cumulative
				return
			}
			// Export the power-of-two bounds from 64µs up: enough
			// resolution for dashboards without a hundred series.
			if us := le.Microseconds(); us >= 64 && us&(us-1) == 0 {
				buckets[le.Seconds()] = cumulative
			}
		})
		ch <- prometheus.MustNewConstHistogram(c.latency, count, sh.Latency.Sum().Seconds(), buckets, r.name)
		counter(c.connections, sh.ConnectionsOpened.Load(), r.name)
		gauge(c.queueBytes, float64(sh.QueueBytes.Load()), r.name)
	}
	counter(c.requests, queued, "queued")
	counter(c.requests, mirrored, "mirrored")
	if rl := s.reloads; rl != nil {
		st := rl.Stats()
		counter(c.reloads, st.OK, "ok")
		counter(c.reloads, st.Failed, "failed")
	}
	for _, i := range c.interfaces() {
		gauge(c.attached, 1, i.Name, i.Mode)
	}
	if ie := s.ifaces; ie != nil {
		counter(c.ifaceEvents, ie.Attached.Load(), "attached")
		counter(c.ifaceEvents, ie.Detached.Load(), "detached")
		counter(c.ifaceEvents, ie.AttachFailed.Load(), "attach_failed")
	}
}

// metricsServer serves /metrics, /healthz and /readyz.
type metricsServer struct {
	srv   *http.Server
	addr  string
	ready atomic.Bool
}

// startMetrics serves the endpoints on addr; pprof adds /debug/pprof/, the
// Go profiler, which an operator turns on to see where the agent spends.
func startMetrics(addr string, c prometheus.Collector, pprof bool) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &metricsServer{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "not attached yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is ours; it only fails when closed
		}
	}()
	return m, nil
}

func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}
