package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/shadow"
)

// Capture is the live capture as Run drives it. capture.Live is the real
// one; a test puts a fake in Config.StartCapture to run the agent's
// lifecycle (reload, readiness, stop, drain) without root or a kernel.
type Capture interface {
	Interfaces() []capture.Interface
	SetFilter(ports []uint16, dests []netip.Prefix) error
	Stats() (capture.Stats, error)
	// Failed is closed when the capture stops on its own; Err says why.
	Failed() <-chan struct{}
	Err() error
	// Stop detaches and delivers to the sink what was copied before;
	// Close releases the kernel side.
	Stop()
	Close() error
}

// StartCapture starts a capture that feeds sink.
type StartCapture func(cfg capture.Config, sink bpf.Sink, log *slog.Logger) (Capture, error)

func startLive(cfg capture.Config, sink bpf.Sink, log *slog.Logger) (Capture, error) {
	return capture.Start(cfg, sink, log)
}

// Run attaches the tee, mirrors until ctx is done, then detaches, drains
// and returns the summary. A summary is returned whenever the tee ran, also
// with an error.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: &cfg, log: cfg.Logger}
	if err := r.loadRules(); err != nil {
		return nil, err
	}
	if err := r.startCapture(); err != nil {
		return nil, err
	}
	if err := r.announce(); err != nil {
		return r.stop(), err
	}
	runErr := waitEnd(ctx, r.live, r.st, cfg.StatsInterval, r.log)
	return r.stop(), runErr
}

// run is one Run: the kernel feeds the pipeline (reassembly, framing),
// which feeds the mirror (rules, senders); stats reads them all.
type run struct {
	cfg        *Config
	log        *slog.Logger
	m          *mirror
	st         *stats
	pipe       *Pipeline
	live       Capture
	stopReload func()
	procs      *procsTuner // nil unless Config.AdaptProcs
	metrics    *metricsServer
}

// loadRules sets up the mirror with the rules, from a file that is watched
// or from the command line, and the comparison they ask for.
func (r *run) loadRules() error {
	cfg := r.cfg
	r.m = newMirror(r.log, cfg.DrainTimeout)
	// The live capture ticks: answers may wait for its next look.
	r.m.hold = shadow.NewAnswerHold()
	r.st = &stats{start: time.Now(), mirror: r.m}
	initial := cfg.Rules
	if initial == nil && cfg.RulesPath != "" {
		// Whether answers are compared decides what the kernel copies:
		// read it before anything starts.
		f, err := config.Load(cfg.RulesPath)
		if err != nil {
			return err
		}
		initial = f
	}
	comparing, err := setupCompare(r.m, cfg.Compare, cfg.CompareAll, initial, false)
	if err != nil {
		return err
	}
	cfg.Capture.Answers = comparing
	if cfg.RulesPath == "" {
		return r.apply(cfg.Rules)
	}
	r.st.reloads = config.NewReloader(cfg.RulesPath, r.apply, r.log)
	f, err := r.st.reloads.Load()
	if err != nil {
		return err
	}
	cfg.Rules = f
	cfg.Capture.Ports, cfg.Capture.Destinations = f.Ports(), f.Destinations()
	return nil
}

// apply puts rules in force: they reach the routes first, then the kernel
// filter, so that new ports find their rule.
func (r *run) apply(f *config.File) error {
	if err := r.m.apply(f); err != nil {
		return err
	}
	if r.live == nil {
		return nil
	}
	return r.live.SetFilter(f.Ports(), f.Destinations())
}

// startCapture starts the pipeline and the capture that feeds it, then
// the watch of the rules file.
func (r *run) startCapture() error {
	cfg := r.cfg
	hold := r.m.hold
	if cfg.AdaptProcs {
		if r.procs = newProcsTuner(r.log); r.procs != nil {
			r.procs.begin()
		}
	}
	procs := r.procs
	// Both run at the end of each pass over the ring, so they cost no
	// wake-up of their own.
	onFlush := func() {
		hold.Tick(true)
		if procs != nil {
			procs.poke()
		}
	}
	r.pipe = NewPipeline(PipelineConfig{
		Shards:     cfg.Shards,
		Backlog:    cfg.Backlog,
		Live:       true,
		Reassembly: cfg.Limits.reassemblyConfig(&r.st.reassembly),
		Framing:    r.m.framingConfig(cfg.Limits),
		HTTP2:      r.m.http2Config(cfg.Limits),
		Answers:    r.m.answersConfig(cfg.Limits),
		Stats:      &r.st.capture,
		OnFlush:    onFlush,
		OnSleep:    func() { hold.Tick(false) },
	})
	live, err := cfg.StartCapture(cfg.Capture, r.pipe, r.log)
	if err != nil {
		r.pipe.Close()
		r.m.close(closedContext())
		if r.procs != nil {
			r.procs.end()
		}
		return err
	}
	r.live = live
	r.st.live, r.st.interfaces = live.Stats, live.Interfaces
	r.stopReload = watchRules(r.st.reloads, cfg.Hup, r.log)
	return nil
}

// announce serves the metrics and writes the ready file: the tee is up.
func (r *run) announce() error {
	cfg := r.cfg
	ready := Ready{PID: os.Getpid(), Interfaces: r.live.Interfaces()}
	if cfg.MetricsAddr != "" {
		metrics, err := startMetrics(cfg.MetricsAddr, newCollector(r.st.summary), cfg.Pprof, r.m.compareHandler())
		if err != nil {
			return fmt.Errorf("metrics on %s: %w", cfg.MetricsAddr, err)
		}
		r.metrics = metrics
		metrics.ready.Store(true)
		ready.MetricsAddr = metrics.addr
		r.log.Info("serving metrics", "addr", metrics.addr)
	}
	if cfg.ReadyFile != "" {
		if err := writeReady(cfg.ReadyFile, ready); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
	}
	for _, rule := range cfg.Rules.Rules {
		r.log.Info("mirroring", "rule", rule.Name, "shadow", rule.Shadow.URL, "percent", rule.Percentage, "ports", rule.Match.Ports)
	}
	return nil
}

// stop undoes everything in order and yields the summary.
func (r *run) stop() *Summary {
	cfg := r.cfg
	if r.metrics != nil {
		r.metrics.ready.Store(false)
	}
	r.stopReload()
	r.live.Stop()
	// Nothing ticks any more (the pipeline's last Flush may, and is
	// ignored): the answers of the drain wake the agent.
	r.m.hold.Stop()
	if r.procs != nil {
		// Nothing flushes any more, and draining may be heavy: every P.
		r.procs.end()
	}
	r.pipe.Close()
	drain, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := r.m.close(drain); err != nil {
		r.log.Warn("shadow drain", "err", err)
	}
	// Every exchange has its answers now: compare the last ones.
	r.m.closeCompare()
	if r.metrics != nil {
		r.metrics.close()
	}
	if cfg.ReadyFile != "" {
		os.Remove(cfg.ReadyFile)
	}
	sum := r.st.summary()
	r.live.Close()
	return sum
}

// watchRules reloads the rules on file change and SIGHUP until the returned
// func is called; without a rules file it does nothing.
func watchRules(rl *config.Reloader, hup <-chan os.Signal, log *slog.Logger) (stop func()) {
	if rl == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rl.Run(ctx, hup); err != nil && ctx.Err() == nil {
			log.Error("rules file watch", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// waitEnd waits for ctx or for the capture to fail, logging a one-line
// summary every interval (0: never).
func waitEnd(ctx context.Context, live Capture, st *stats, interval time.Duration, log *slog.Logger) error {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	last := st.summary()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "cause", context.Cause(ctx))
			return nil
		case <-live.Failed():
			return fmt.Errorf("capture stopped: %w", live.Err())
		case <-tick:
			cur := st.summary()
			logStats(log, last, cur)
			last = cur
		}
	}
}

// logStats writes the periodic one-line summary: totals and what changed.
func logStats(log *slog.Logger, prev, cur *Summary) {
	attrs := []any{
		"requests", cur.Requests.Framed,
		"mirrored", cur.Requests.Mirrored,
		"new_mirrored", cur.Requests.Mirrored - prev.Requests.Mirrored,
		"skipped", sum(cur.Requests.Skipped),
		"dropped", sum(cur.Requests.Dropped),
		"failed", sum(cur.Requests.Failed),
		"streams", cur.Segments.Streams,
		"gaps", cur.Segments.Gaps,
	}
	if p := cur.Packets; p != nil {
		attrs = append(attrs, "packets_copied", p.Copied, "packet_drops", sum(p.Dropped))
	}
	log.Info("stats", attrs...)
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// closedContext is a context that is already done: close without waiting.
func closedContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
