package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/compare"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/reassembly"
)

// ReplayConfig configures Replay.
type ReplayConfig struct {
	Path  string
	Ports []uint16 // server ports; empty: found from SYNs and request lines
	// Speed scales the capture's pace: 1 keeps the original gaps between
	// packets, 2.5 replays 2.5 times faster, 0 sends as fast as the shadow
	// takes the requests.
	Speed float64
	Loop  int // times to replay the file; default 1
	// DryRun, when set, receives one JSON line per request that would be
	// sent, and nothing is sent.
	DryRun io.Writer
	// Rules say what is mirrored where; a rule without ports matches every
	// port of the capture.
	Rules  *config.File
	Limits Limits
	// Compare, when not nil, compares the shadow's answers with the
	// primary's answers that the capture holds, for every rule with
	// CompareAll, or for the rules that ask (they may without it too).
	Compare    *CompareConfig
	CompareAll bool
	// Report and ReportJSON, when set, are where the comparison's report is
	// written once every answer is in: a static HTML page, and the JSON
	// of /api/compare.
	Report, ReportJSON string
	// Progress, when set, is called every ProgressEvery and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Progress is a replay's state for a progress display.
type Progress struct {
	Loop, Loops int
	Bytes, Size int64 // of the current pass over the file
	Framed      uint64
	Queued      uint64
	Mirrored    uint64
	Elapsed     time.Duration
	Done        bool
}

// Replay frames the requests of a capture file and mirrors them to the
// shadow (or prints them, with DryRun). It returns when every request sent
// has been answered or has timed out. A damaged file ends the replay with a
// *pcapfile.Error after everything before the damage was replayed; the
// summary is returned with it.
func Replay(ctx context.Context, cfg ReplayConfig) (*Summary, error) {
	if cfg.Loop < 1 {
		cfg.Loop = 1
	}
	if cfg.Speed < 0 || cfg.Speed != cfg.Speed {
		return nil, fmt.Errorf("speed %v: must be positive, or 0 for as fast as possible", cfg.Speed)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	cfg.Limits.setDefaults()
	if err := cfg.Limits.validate(); err != nil {
		return nil, err
	}
	if cfg.Rules == nil || len(cfg.Rules.Rules) == 0 {
		return nil, errors.New("no rule: give --shadow, or --config")
	}
	// Open once up front, so that a missing or unreadable file is an error
	// before anything starts.
	first, err := pcapfile.Open(cfg.Path)
	if err != nil {
		return nil, err
	}

	m := newMirror(cfg.Logger, time.Second)
	if cfg.DryRun == nil {
		// A file can wait for the shadow: nothing is dropped for speed.
		m.wait, m.waitCtx = true, ctx
	}
	comparing, err := setupCompare(m, cfg.Compare, cfg.CompareAll, cfg.Rules, true)
	if err != nil {
		first.Close()
		return nil, err
	}
	if (cfg.Report != "" || cfg.ReportJSON != "") && !comparing {
		first.Close()
		return nil, errors.New("a report needs a comparison: give --compare, or compare: in a rule")
	}
	if err := m.apply(cfg.Rules); err != nil {
		first.Close()
		return nil, err
	}
	st := &stats{start: time.Now(), mirror: m, file: &fileStats{}}
	framing, http2 := m.framingConfig(cfg.Limits), m.http2Config(cfg.Limits)
	shards := runtime.GOMAXPROCS(0)
	var printer *dryRunPrinter
	if cfg.DryRun != nil {
		// One shard keeps the output in the file's order, run after run.
		shards = 1
		printer = newDryRunPrinter(cfg.DryRun)
		st.printed = &printer.printed
		framing.Emit = func(r *httpframe.Request, tag any) { printer.emit(r, tag.(*route)) }
		http2.Emit = func(r httpmsg.Request, tag any) { printer.emit(r, tag.(*route)) }
		// A dry run prints requests whole: nothing streams.
		http2.HoldBody, http2.StreamAfter = -1, -1
	}

	prog := &progressState{loops: cfg.Loop}
	stopProgress := startProgress(cfg, st, prog)

	var fileErr error
	src := first
	for loop := 1; loop <= cfg.Loop && ctx.Err() == nil; loop++ {
		if src == nil {
			if src, err = pcapfile.Open(cfg.Path); err != nil {
				fileErr = err
				break
			}
		}
		prog.loop.Store(int64(loop))
		prog.size.Store(src.Size())
		pipe := NewPipeline(PipelineConfig{
			Shards: shards,
			Block:  true,
			// Reading a file never drops, so the backlog only needs to
			// keep the workers busy; more would only hold memory.
			Backlog:    4 << 20,
			Reassembly: cfg.Limits.reassemblyConfig(&st.reassembly),
			Framing:    framing,
			HTTP2:      http2,
			Answers:    m.answersConfig(cfg.Limits),
			Stats:      &st.capture,
		})
		sides := pcapfile.NewSides(cfg.Ports)
		err := feed(ctx, src, sides, pipe, cfg.Speed, comparing, prog)
		pipe.Close()
		st.file.add(src.Stats())
		st.file.addSides(sides.Stats())
		src.Close()
		src = nil
		if err != nil {
			fileErr = err
			break
		}
	}

	if printer != nil {
		if err := printer.flush(); err != nil && fileErr == nil {
			fileErr = fmt.Errorf("dry-run output: %w", err)
		}
	}
	if err := m.close(ctx); err != nil && ctx.Err() == nil {
		cfg.Logger.Warn("shadow drain", "err", err)
	}
	m.closeCompare()
	if err := writeReports(m, cfg.Report, cfg.ReportJSON); err != nil && fileErr == nil {
		fileErr = err
	}
	stopProgress()
	if ctx.Err() != nil && fileErr == nil {
		fileErr = context.Cause(ctx)
	}
	return st.summary(), fileErr
}

// feed reads every segment of src into pipe, paced by speed: the
// client-to-server direction, and the answers too when they are compared.
func feed(ctx context.Context, src *pcapfile.Reader, sides *pcapfile.Sides, pipe *Pipeline, speed float64, answers bool, prog *progressState) error {
	var (
		seg   reassembly.Segment
		pace  pacer
		polls int
	)
	pace.speed = speed
	for {
		err := src.Next(&seg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		prog.bytes.Store(src.Offset())
		if polls++; polls&1023 == 0 && ctx.Err() != nil {
			return nil
		}
		if !sides.Direction(&seg) || seg.Dir != reassembly.ToServer && !answers {
			continue
		}
		if pace.wait(ctx, seg.Time, pipe.Flush) != nil {
			return nil
		}
		pipe.Segment(&seg, 0)
	}
	prog.bytes.Store(src.Offset())
	return nil
}

// pacer maps capture time to wall-clock time: the first segment is sent at
// once, each later one when as much time has passed as in the capture,
// divided by speed.
type pacer struct {
	speed     float64
	started   bool
	wallStart time.Time
	capStart  time.Time
}

// wait sleeps until the segment captured at t is due; before sleeping it
// calls flush, so that what was read so far is processed in time.
func (p *pacer) wait(ctx context.Context, t time.Time, flush func()) error {
	if p.speed == 0 || t.IsZero() {
		return nil
	}
	if !p.started {
		p.started, p.wallStart, p.capStart = true, time.Now(), t
		return nil
	}
	due := p.wallStart.Add(time.Duration(float64(t.Sub(p.capStart)) / p.speed))
	d := time.Until(due)
	if d < time.Millisecond {
		return nil
	}
	flush()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type progressState struct {
	loops int
	loop  atomic.Int64
	bytes atomic.Int64
	size  atomic.Int64
}

// startProgress calls cfg.Progress periodically until the returned func is
// called, which makes a last, final call.
func startProgress(cfg ReplayConfig, st *stats, prog *progressState) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	snapshot := func(done bool) Progress {
		queued, mirrored := st.mirror.totals()
		return Progress{
			Loop: int(prog.loop.Load()), Loops: prog.loops,
			Bytes: prog.bytes.Load(), Size: prog.size.Load(),
			Framed:   st.mirror.framing.Requests.Load(),
			Queued:   queued,
			Mirrored: mirrored,
			Elapsed:  time.Since(st.start),
			Done:     done,
		}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				cfg.Progress(snapshot(false))
			case <-stop:
				return
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
		cfg.Progress(snapshot(true))
	}
}

// writeReports writes the comparison's report, as a page and as JSON, to
// the paths that are set.
func writeReports(m *mirror, html, js string) error {
	if m.cmp == nil || html == "" && js == "" {
		return nil
	}
	r := m.cmp.engine.Report()
	for _, out := range []struct {
		path  string
		write func(io.Writer, *compare.Report) error
	}{{html, compare.WriteHTML}, {js, compare.WriteJSON}} {
		if out.path == "" {
			continue
		}
		f, err := os.Create(out.path)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		err = out.write(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("report %s: %w", out.path, err)
		}
	}
	return nil
}
