package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowtee/shadowtee/bpf"
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

	m, err := newMirror(cfg.Mirror)
	if err != nil {
		return nil, err
	}
	tee, err := bpf.Load(bpf.Options{Ports: cfg.Ports, RingBytes: cfg.RingBytes, WakeupBytes: cfg.WakeupBytes})
	if err != nil {
		m.close(closedContext())
		return nil, explainPermission(err)
	}
	defer tee.Close()
	rd, err := tee.NewReader(cfg.Poll)
	if err != nil {
		m.close(closedContext())
		return nil, err
	}

	st := &stats{start: time.Now(), kernel: tee.Counters, mirror: m}
	m.start()
	pipe := NewPipeline(PipelineConfig{
		Shards:     cfg.Shards,
		Backlog:    cfg.Backlog,
		Reassembly: cfg.Mirror.reassemblyConfig(&st.reassembly),
		Framing:    m.framingConfig(cfg.Mirror),
		Tick:       100 * time.Millisecond,
		Stats:      &st.capture,
	})

	// From here on, stop() undoes everything in order and yields the summary.
	var (
		attachments []*bpf.Attachment
		attachedMu  sync.Mutex
		readDone    = make(chan error, 1)
		metrics     *metricsServer
	)
	interfaces := func() []ReadyInterface {
		attachedMu.Lock()
		defer attachedMu.Unlock()
		out := make([]ReadyInterface, 0, len(attachments))
		for _, a := range attachments {
			out = append(out, ReadyInterface{Name: a.Iface, Mode: string(a.Mode)})
		}
		return out
	}
	go func() { readDone <- rd.Run(pipe) }()
	stop := func() *Summary {
		if metrics != nil {
			metrics.ready.Store(false)
		}
		attachedMu.Lock()
		for _, a := range attachments {
			if err := a.Close(); err != nil {
				log.Warn("detach", "iface", a.Iface, "err", err)
			} else {
				log.Info("detached", "iface", a.Iface, "mode", a.Mode)
			}
		}
		attachments = nil
		attachedMu.Unlock()
		// Records already in the ring were copied before the detach: read
		// them before closing the reader.
		deadline := time.Now().Add(time.Second)
		for rd.Pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(cfg.Poll)
		}
		time.Sleep(2 * cfg.Poll)
		rd.Close()
		if err := <-readDone; err != nil {
			log.Error("ring buffer reader", "err", err)
		}
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
		return st.summary()
	}

	for _, iface := range cfg.Interfaces {
		a, err := tee.Attach(iface, cfg.AttachMode)
		if err != nil {
			sum := stop()
			return sum, explainPermission(err)
		}
		attachedMu.Lock()
		attachments = append(attachments, a)
		attachedMu.Unlock()
		log.Info("attached", "iface", a.Iface, "mode", a.Mode, "ports", cfg.Ports)
	}

	ready := Ready{PID: os.Getpid(), Interfaces: interfaces()}
	if cfg.MetricsAddr != "" {
		metrics, err = startMetrics(cfg.MetricsAddr, newCollector(st, interfaces, pipe.Streams))
		if err != nil {
			sum := stop()
			return sum, fmt.Errorf("metrics on %s: %w", cfg.MetricsAddr, err)
		}
		metrics.ready.Store(true)
		ready.MetricsAddr = metrics.addr
		log.Info("serving metrics", "addr", metrics.addr)
	}
	if cfg.ReadyFile != "" {
		if err := writeReady(cfg.ReadyFile, ready); err != nil {
			sum := stop()
			return sum, fmt.Errorf("ready file: %w", err)
		}
	}
	log.Info("mirroring", "shadow", cfg.Mirror.Shadow, "percent", cfg.Mirror.Percent)

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
		case err := <-readDone:
			readDone <- err // stop() waits for it again
			runErr = fmt.Errorf("capture stopped: %w", err)
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

// explainPermission adds what to do to an error caused by missing
// privileges.
func explainPermission(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", err)
	}
	return err
}

// closedContext is a context that is already done: close without waiting.
func closedContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
