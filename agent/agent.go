package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/shadowtee/shadowtee/config"
)

// Run attaches the tee, mirrors until ctx is done, then detaches, drains
// and returns the summary. A summary is returned whenever the tee ran, also
// with an error.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger

	var err error
	m := newMirror(log, cfg.DrainTimeout)
	st := &stats{start: time.Now(), mirror: m}
	// New rules reach the routes first, then the kernel filter, so that
	// new ports find their rule.
	var live *liveCapture
	apply := func(f *config.File) error {
		if err := m.apply(f); err != nil {
			return err
		}
		if live == nil {
			return nil
		}
		return live.setFilter(f.Ports(), f.Destinations())
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
	pipe := NewPipeline(PipelineConfig{
		Shards:     cfg.Shards,
		Backlog:    cfg.Backlog,
		Reassembly: cfg.Limits.reassemblyConfig(&st.reassembly),
		Framing:    m.framingConfig(cfg.Limits),
		Live:       true,
		Stats:      &st.capture,
	})
	live, err = startCapture(cfg.Capture, pipe, log)
	if err != nil {
		pipe.Close()
		m.close(closedContext())
		return nil, err
	}
	st.kernel = live.counters
	st.ifaces = &live.ifaces

	// Reload the rules on file change and SIGHUP.
	reloadCtx, stopReload := context.WithCancel(context.Background())
	reloadDone := make(chan struct{})
	if st.reloads != nil {
		go func() {
			defer close(reloadDone)
			if err := st.reloads.Run(reloadCtx, cfg.Hup); err != nil && reloadCtx.Err() == nil {
				log.Error("rules file watch", "err", err)
			}
		}()
	} else {
		close(reloadDone)
	}

	var metrics *metricsServer
	// stop undoes everything in order and yields the summary.
	stop := func() *Summary {
		if metrics != nil {
			metrics.ready.Store(false)
		}
		stopReload()
		<-reloadDone
		live.stop()
		pipe.Close()
		drain, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		defer cancel()
		if err := m.close(drain); err != nil {
			log.Warn("shadow drain", "err", err)
		}
		if metrics != nil {
			metrics.close()
		}
		if cfg.ReadyFile != "" {
			os.Remove(cfg.ReadyFile)
		}
		sum := st.summary()
		live.close()
		return sum
	}

	ready := Ready{PID: os.Getpid(), Interfaces: live.interfaces()}
	if cfg.MetricsAddr != "" {
		metrics, err = startMetrics(cfg.MetricsAddr, newCollector(st, live.interfaces, pipe.Streams), cfg.Pprof)
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

	var runErr error
	statsTick := make(<-chan time.Time)
	if cfg.StatsInterval > 0 {
		t := time.NewTicker(cfg.StatsInterval)
		defer t.Stop()
		statsTick = t.C
	}
	last := st.summary()
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "cause", context.Cause(ctx))
			break wait
		case <-live.failed():
			runErr = fmt.Errorf("capture stopped: %w", live.err())
			break wait
		case <-statsTick:
			cur := st.summary()
			logStats(log, last, cur)
			last = cur
		}
	}
	return stop(), runErr
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
