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
	log := cfg.Logger

	// The rules: from a file that is watched, or from the command line.
	m := newMirror(log, cfg.DrainTimeout)
	st := &stats{start: time.Now(), mirror: m}
	initial := cfg.Rules
	if initial == nil && cfg.RulesPath != "" {
		// Whether answers are compared decides what the kernel copies:
		// read it before anything starts.
		f, err := config.Load(cfg.RulesPath)
		if err != nil {
			return nil, err
		}
		initial = f
	}
	comparing, err := setupCompare(m, cfg.Compare, cfg.CompareAll, initial, false)
	if err != nil {
		return nil, err
	}
	cfg.Capture.Answers = comparing
	var live Capture
	apply := func(f *config.File) error {
		// New rules reach the routes first, then the kernel filter, so
		// that new ports find their rule.
		if err := m.apply(f); err != nil {
			return err
		}
		if live == nil {
			return nil
		}
		return live.SetFilter(f.Ports(), f.Destinations())
	}
	if cfg.RulesPath != "" {
		st.reloads = config.NewReloader(cfg.RulesPath, apply, log)
		f, err := st.reloads.Load()
		if err != nil {
			return nil, err
		}
		cfg.Rules = f
		cfg.Capture.Ports, cfg.Capture.Destinations = f.Ports(), f.Destinations()
	} else if err := apply(cfg.Rules); err != nil {
		return nil, err
	}

	// Kernel -> pipeline (reassembly, framing) -> mirror (rules, senders).
	pipe := NewPipeline(PipelineConfig{
		Shards:     cfg.Shards,
		Backlog:    cfg.Backlog,
		Live:       true,
		Reassembly: cfg.Limits.reassemblyConfig(&st.reassembly),
		Framing:    m.framingConfig(cfg.Limits),
		HTTP2:      m.http2Config(cfg.Limits),
		Answers:    m.answersConfig(cfg.Limits),
		Stats:      &st.capture,
	})
	live, err = cfg.StartCapture(cfg.Capture, pipe, log)
	if err != nil {
		pipe.Close()
		m.close(closedContext())
		return nil, err
	}
	st.live, st.interfaces = live.Stats, live.Interfaces

	stopReload := watchRules(st.reloads, cfg.Hup, log)
	var metrics *metricsServer
	// stop undoes everything in order and yields the summary.
	stop := func() *Summary {
		if metrics != nil {
			metrics.ready.Store(false)
		}
		stopReload()
		live.Stop()
		pipe.Close()
		drain, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		defer cancel()
		if err := m.close(drain); err != nil {
			log.Warn("shadow drain", "err", err)
		}
		// Every exchange has its answers now: compare the last ones.
		m.closeCompare()
		if metrics != nil {
			metrics.close()
		}
		if cfg.ReadyFile != "" {
			os.Remove(cfg.ReadyFile)
		}
		sum := st.summary()
		live.Close()
		return sum
	}

	ready := Ready{PID: os.Getpid(), Interfaces: live.Interfaces()}
	if cfg.MetricsAddr != "" {
		metrics, err = startMetrics(cfg.MetricsAddr, newCollector(st.summary), cfg.Pprof, m.compareHandler())
		if err != nil {
			return stop(), fmt.Errorf("metrics on %s: %w", cfg.MetricsAddr, err)
		}
		metrics.ready.Store(true)
		ready.MetricsAddr = metrics.addr
		log.Info("serving metrics", "addr", metrics.addr)
	}
	if cfg.ReadyFile != "" {
		if err := writeReady(cfg.ReadyFile, ready); err != nil {
			return stop(), fmt.Errorf("ready file: %w", err)
		}
	}
	for _, r := range cfg.Rules.Rules {
		log.Info("mirroring", "rule", r.Name, "shadow", r.Shadow.URL, "percent", r.Percentage, "ports", r.Match.Ports)
	}
	runErr := waitEnd(ctx, live, st, cfg.StatsInterval, log)
	return stop(), runErr
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
