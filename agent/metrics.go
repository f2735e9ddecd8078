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

	"github.com/shadowtee/shadowtee/shadow"
)

// family is one Prometheus metric family: its name (after "shadowtee_"),
// help and labels, and how its samples come out of a Summary. /metrics and
// the exit summary are made from the same Summary, so they always agree;
// this list is the one place that names the metrics, and README's list is
// checked against it.
type family struct {
	name    string
	kind    prometheus.ValueType
	help    string
	labels  []string
	samples func(s *Summary, emit func(v float64, labels ...string))
}

// reasonSamples emits one sample per reason of a summary map, with the extra
// labels first.
func reasonSamples(m map[string]uint64, emit func(v float64, labels ...string), first ...string) {
	for k, v := range m {
		emit(float64(v), append(first[:len(first):len(first)], k)...)
	}
}

var families = []family{
	{"packets_total", prometheus.CounterValue, "Packets seen by the kernel program, matched to a watched port and server, and copied whole.", []string{"result"},
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				emit(float64(p.Seen), "seen")
				emit(float64(p.Matched), "matched")
				emit(float64(p.Copied), "copied")
			}
		}},
	{"packet_drops_total", prometheus.CounterValue, "Matched packets not copied (whole), or records not decoded, by reason.", []string{"reason"},
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				for _, r := range []string{"ring_full", "load_error", "truncated", "malformed"} {
					emit(float64(p.Dropped[r]), r)
				}
			}
		}},
	{"packets_other_server_total", prometheus.CounterValue, "Segments of a watched port towards a server outside the destinations (--pod-ip), left alone.", nil,
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				emit(float64(p.OtherServer))
			}
		}},
	{"ip_fragments_total", prometheus.CounterValue, "IP fragments seen on watched interfaces; they are not followed.", nil,
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				emit(float64(p.Fragments))
			}
		}},
	{"copied_bytes_total", prometheus.CounterValue, "TCP payload bytes copied by the kernel program.", nil,
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				emit(float64(p.CopiedBytes))
			}
		}},
	{"ring_reader_total", prometheus.CounterValue, "How the ring buffer was read: records, looks while busy, sleeps until the kernel rang, its wake-ups; and the kernel's rings of the doorbell (rung) and rings retried for want of room (ring_retried).", []string{"event"},
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				r := p.Reader
				emit(float64(r.Records), "records")
				emit(float64(r.Polls), "polls")
				emit(float64(r.Sleeps), "sleeps")
				emit(float64(r.Wakeups), "wakeups")
				emit(float64(r.Rung), "rung")
				emit(float64(r.RingRetried), "ring_retried")
			}
		}},
	{"segments_total", prometheus.CounterValue, "Segments read from the capture, by where they were reassembled: on the capture goroutine itself, or in a batch for a shard.", []string{"path"},
		func(s *Summary, emit func(float64, ...string)) {
			g := s.Segments
			emit(float64(g.Inline), "inline")
			emit(float64(g.Received-g.Inline-g.BacklogDrops), "batched")
		}},
	{"segment_drops_total", prometheus.CounterValue, "Segments dropped in user space because the shards were behind.", []string{"reason"},
		func(s *Summary, emit func(float64, ...string)) {
			emit(float64(s.Segments.BacklogDrops), "backlog_full")
		}},
	{"backlog_bytes", prometheus.GaugeValue, "Payload bytes waiting for the shards.", nil,
		func(s *Summary, emit func(float64, ...string)) { emit(float64(s.Segments.BacklogBytes)) }},
	{"shard_wakeups_total", prometheus.CounterValue, "Timer wake-ups of the shards, for the deadlines of what they hold (gap and idle timeouts).", nil,
		func(s *Summary, emit func(float64, ...string)) { emit(float64(s.Segments.ShardWakeups)) }},
	{"streams_active", prometheus.GaugeValue, "TCP streams followed now.", nil,
		func(s *Summary, emit func(float64, ...string)) { emit(float64(s.Segments.Active)) }},
	{"streams_total", prometheus.CounterValue, "TCP streams by how they started or ended.", []string{"event"},
		func(s *Summary, emit func(float64, ...string)) {
			g := s.Segments
			emit(float64(g.Streams), "opened")
			emit(float64(g.MidStream), "joined_mid_stream")
			emit(float64(g.Closed), "closed")
			emit(float64(g.Expired), "expired")
			emit(float64(g.Evicted), "evicted")
		}},
	{"stream_gaps_total", prometheus.CounterValue, "Holes in TCP streams given up on (the requests they cut are counted as incomplete).", nil,
		func(s *Summary, emit func(float64, ...string)) { emit(float64(s.Segments.Gaps)) }},
	{"stream_gap_bytes_total", prometheus.CounterValue, "Bytes lost in those holes.", nil,
		func(s *Summary, emit func(float64, ...string)) { emit(float64(s.Segments.GapBytes)) }},
	{"requests_total", prometheus.CounterValue, "HTTP requests framed, queued for a shadow, and mirrored (answered by the shadow), over all rules.", []string{"result"},
		func(s *Summary, emit func(float64, ...string)) {
			q := s.Requests
			emit(float64(q.Framed), "framed")
			emit(float64(q.Queued), "queued")
			emit(float64(q.Mirrored), "mirrored")
		}},
	{"requests_framed_total", prometheus.CounterValue, "HTTP requests framed, by the protocol they were captured in (http1, http2).", []string{"proto"},
		func(s *Summary, emit func(float64, ...string)) {
			for proto, n := range s.Requests.ByProto {
				emit(float64(n), proto)
			}
		}},
	{"requests_skipped_total", prometheus.CounterValue, "Requests not mirrored by decision (sampled, no_rule, already_shadowed) or because they could not be framed, by reason.", []string{"reason"},
		func(s *Summary, emit func(float64, ...string)) { reasonSamples(s.Requests.Skipped, emit) }},
	{"requests_aborted_total", prometheus.CounterValue, "HTTP/2 requests cut while their body was streaming to the shadow, by reason (h2_reset: the client reset the stream; memory: --max-buffered).", []string{"reason"},
		func(s *Summary, emit func(float64, ...string)) { reasonSamples(s.Requests.Aborted, emit) }},
	{"rule_requests_total", prometheus.CounterValue, "Requests of each rule: matched, sampled out, queued, mirrored.", []string{"rule", "result"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				emit(float64(r.Matched), r.Name, "matched")
				emit(float64(r.SampledOut), r.Name, "sampled_out")
				emit(float64(r.Shadow.Queued), r.Name, "queued")
				emit(float64(r.Shadow.Mirrored), r.Name, "mirrored")
			}
		}},
	{"rule_shadow_requests_total", prometheus.CounterValue, "Requests of each rule by the protocol spoken to the shadow (http1, http2): queued, mirrored, failed.", []string{"rule", "proto", "result"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				for _, proto := range []string{"http1", "http2"} {
					c := r.ByProto[proto]
					emit(float64(c.Queued), r.Name, proto, "queued")
					emit(float64(c.Mirrored), r.Name, proto, "mirrored")
					emit(float64(c.Failed), r.Name, proto, "failed")
				}
			}
		}},
	{"requests_dropped_total", prometheus.CounterValue, "Requests not sent to the shadow, by rule and reason (overflow: past a circuit breaker or the byte budget).", []string{"rule", "reason"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				for i := range shadow.NumDropReasons {
					emit(float64(r.Shadow.Dropped[i.String()]), r.Name, i.String())
				}
			}
		}},
	{"requests_failed_total", prometheus.CounterValue, "Requests sent to the shadow without a complete answer, by rule and reason.", []string{"rule", "reason"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				for i := range shadow.NumFailReasons {
					emit(float64(r.Shadow.Failed[i.String()]), r.Name, i.String())
				}
			}
		}},
	{"shadow_retries_total", prometheus.CounterValue, "Requests sent again on a fresh connection where net/http would retry them (retried), or that the shadow provably never read (requeued).", []string{"rule", "kind"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				emit(float64(r.Shadow.Retried), r.Name, "retried")
				emit(float64(r.Shadow.Requeued), r.Name, "requeued")
			}
		}},
	{"shadow_responses_total", prometheus.CounterValue, "Final responses of the shadow by rule and status code.", []string{"rule", "code"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				for code, n := range r.Shadow.Status {
					label := strconv.Itoa(code)
					if code == 0 {
						label = "other"
					}
					emit(float64(n), r.Name, label)
				}
			}
		}},
	{"shadow_grpc_status_total", prometheus.CounterValue, "Answers of the shadow that carried a grpc-status, by rule and gRPC status code (0 to 16, other).", []string{"rule", "code"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				for code, n := range r.Shadow.GRPCStatus {
					emit(float64(n), r.Name, code)
				}
			}
		}},
	{"shadow_requests", prometheus.GaugeValue, "Requests of each rule now waiting for a connection (pending) or on one (in_flight), and the most in flight since the start (peak).", []string{"rule", "state"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				emit(float64(r.Shadow.Pending), r.Name, "pending")
				emit(float64(r.Shadow.InFlight), r.Name, "in_flight")
				emit(float64(r.Shadow.PeakInFlight), r.Name, "peak")
			}
		}},
	{"shadow_connections", prometheus.GaugeValue, "Connections to the shadow now, by state.", []string{"rule", "state"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				emit(float64(r.Shadow.ConnectionsBusy), r.Name, "busy")
				emit(float64(r.Shadow.ConnectionsIdle), r.Name, "idle")
				emit(float64(r.Shadow.ConnectionsConnecting), r.Name, "connecting")
			}
		}},
	{"shadow_connections_opened_total", prometheus.CounterValue, "Connections opened to the shadow.", []string{"rule"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				emit(float64(r.Shadow.ConnectionsOpened), r.Name)
			}
		}},
	{"shadow_connections_closed_total", prometheus.CounterValue, "Connections to the shadow closed, by cause.", []string{"rule", "cause"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				for i := range shadow.NumCloseCauses {
					emit(float64(r.Shadow.ConnectionsClosed[i.String()]), r.Name, i.String())
				}
			}
		}},
	{"shadow_queue_bytes", prometheus.GaugeValue, "Bytes of requests held for the shadow, waiting or awaiting an answer.", []string{"rule"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				emit(float64(r.Shadow.QueueBytes), r.Name)
			}
		}},
	{"compare_total", prometheus.CounterValue, "Mirrored requests whose answers were compared, by rule, endpoint (method and path template; bounded, the rest under {other}) and verdict: same, different, noise_only, unpaired.", []string{"rule", "endpoint", "verdict"},
		func(s *Summary, emit func(float64, ...string)) {
			if c := s.Compare; c != nil {
				for _, v := range c.verdicts {
					emit(float64(v.n), v.rule, v.endpoint, v.verdict)
				}
			}
		}},
	{"compare_skipped_total", prometheus.CounterValue, "Mirrored requests whose answers were not compared: overflow (too many waited), abandoned (cut before whole), dropped (the comparison fell behind).", []string{"reason"},
		func(s *Summary, emit func(float64, ...string)) {
			if c := s.Compare; c != nil {
				emit(float64(c.Overflow), "overflow")
				emit(float64(c.Abandoned), "abandoned")
				emit(float64(c.Dropped), "dropped")
			}
		}},
	{"compare_secondary_requests_total", prometheus.CounterValue, "Requests of each rule sent to its --compare-secondary, by result (queued, mirrored, dropped, failed).", []string{"rule", "result"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, r := range s.Rules {
				if sn := r.Secondary; sn != nil {
					emit(float64(sn.Queued), r.Name, "queued")
					emit(float64(sn.Mirrored), r.Name, "mirrored")
					emit(float64(sumCounts(sn.Dropped)), r.Name, "dropped")
					emit(float64(sumCounts(sn.Failed)), r.Name, "failed")
				}
			}
		}},
	{"config_reloads_total", prometheus.CounterValue, "Reloads of the rules file, by result; a failed one keeps the rules in force.", []string{"result"},
		func(s *Summary, emit func(float64, ...string)) {
			if rl := s.Reloads; rl != nil {
				emit(float64(rl.OK), "ok")
				emit(float64(rl.Failed), "failed")
			}
		}},
	{"attached", prometheus.GaugeValue, "Interfaces the program is attached to, with the attach mode in use.", []string{"iface", "mode"},
		func(s *Summary, emit func(float64, ...string)) {
			for _, i := range s.Interfaces {
				emit(1, i.Name, i.Mode)
			}
		}},
	{"interface_events_total", prometheus.CounterValue, "Interfaces attached and detached as they appeared and went, and failed attaches.", []string{"event"},
		func(s *Summary, emit func(float64, ...string)) {
			if p := s.Packets; p != nil {
				emit(float64(p.Ifaces.Attached), "attached")
				emit(float64(p.Ifaces.Detached), "detached")
				emit(float64(p.Ifaces.AttachFailed), "attach_failed")
			}
		}},
}

// latencyFamily is the one histogram: it needs the buckets, which the
// summary's snapshot does not carry.
const latencyFamily = "shadow_latency_seconds"

// MetricNames lists every metric family the agent exports, without the
// "shadowtee_" prefix.
func MetricNames() []string {
	names := []string{latencyFamily}
	for _, f := range families {
		names = append(names, f.name)
	}
	return names
}

// collector exposes a run's Summary to Prometheus: the counters are read at
// scrape time, so the packet path pays nothing for metrics.
type collector struct {
	summary func() *Summary
	descs   []*prometheus.Desc
	latency *prometheus.Desc
}

func newCollector(summary func() *Summary) *collector {
	c := &collector{summary: summary}
	for _, f := range families {
		c.descs = append(c.descs, prometheus.NewDesc("shadowtee_"+f.name, f.help, f.labels, nil))
	}
	c.latency = prometheus.NewDesc("shadowtee_"+latencyFamily, "Time from writing a request to the end of the shadow's response.", []string{"rule"}, nil)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.summary()
	for i, f := range families {
		d := c.descs[i]
		f.samples(s, func(v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, f.kind, v, labels...)
		})
	}
	for _, r := range s.Rules {
		buckets := map[float64]uint64{}
		var count uint64
		r.stats.Latency.Visit(func(le time.Duration, cumulative uint64) {
			if le < 0 {
				// The +Inf bucket: the count, consistent with the buckets
				// read in the same pass.
				count = cumulative
				return
			}
			// The power-of-two bounds from 64µs up: enough resolution
			// for dashboards without a hundred series.
			if us := le.Microseconds(); us >= 64 && us&(us-1) == 0 {
				buckets[le.Seconds()] = cumulative
			}
		})
		ch <- prometheus.MustNewConstHistogram(c.latency, count, r.stats.Latency.Sum().Seconds(), buckets, r.Name)
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
// compare, when not nil, serves the comparison's page and API.
func startMetrics(addr string, c prometheus.Collector, pprof bool, compare http.Handler) (*metricsServer, error) {
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
	if compare != nil {
		mux.Handle("/compare", compare)
		mux.Handle("/api/compare", compare)
	}
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

func sumCounts(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}
