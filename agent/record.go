package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/reassembly"
)

// RecordConfig configures Record.
type RecordConfig struct {
	Capture capture.Config
	Out     string
	// Duration stops the recording after this long; 0 records until ctx ends.
	Duration time.Duration
	// MaxBytes stops the recording once this many bytes were written over
	// all files; 0 means no limit.
	MaxBytes int64
	// RotateBytes starts a new file (OUT, then OUT with .1, .2 ... before
	// its extension) once the current one holds this many bytes; 0 never.
	RotateBytes int64
	ReadyFile   string
	Logger      *slog.Logger
}

// RecordSummary is what Record wrote.
type RecordSummary struct {
	Duration time.Duration  `json:"duration_ns"`
	Files    []string       `json:"files"`
	Segments uint64         `json:"segments"`
	Bytes    int64          `json:"bytes"`
	Packets  *PacketSummary `json:"packets,omitempty"`
	Stopped  string         `json:"stopped"` // why: signal, duration, max_bytes, error
}

// Record copies what the kernel program copies into pcapng files (link type
// Ethernet, one interface block per captured interface), so that `replay` of a
// recording reproduces what `attach` would have mirrored.
func Record(ctx context.Context, cfg RecordConfig) (*RecordSummary, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == "" {
		return nil, errors.New("no output file (--out)")
	}
	if len(cfg.Capture.Interfaces) == 0 || len(cfg.Capture.Ports) == 0 {
		return nil, errors.New("record needs interfaces (--iface) and ports (--port)")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cfg.Duration > 0 {
		var stopTimer context.CancelFunc
		ctx, stopTimer = context.WithTimeoutCause(ctx, cfg.Duration, errDuration)
		defer stopTimer()
	}

	w := &recordSink{cfg: cfg, stop: cancel, start: time.Now()}
	if err := w.open(); err != nil {
		return nil, err
	}
	live, err := capture.Start(cfg.Capture, w, cfg.Logger)
	if err != nil {
		w.finish()
		os.Remove(w.files[0])
		return nil, err
	}
	if cfg.ReadyFile != "" {
		if err := writeReady(cfg.ReadyFile, Ready{PID: os.Getpid(), Interfaces: live.Interfaces()}); err != nil {
			cancel(err)
		}
	}
	cfg.Logger.Info("recording", "out", cfg.Out)
	select {
	case <-ctx.Done():
	case <-live.Failed():
		cancel(fmt.Errorf("capture stopped: %w", live.Err()))
	}
	live.Stop()
	sum := &RecordSummary{Duration: time.Since(w.start).Round(time.Millisecond), Segments: w.segments}
	if cs, err := live.Stats(); err == nil {
		sum.Packets = packetSummary(cs)
	}
	live.Close()
	if cfg.ReadyFile != "" {
		os.Remove(cfg.ReadyFile)
	}
	werr := w.finish()
	sum.Files, sum.Bytes = w.files, w.written+w.cur()
	cause := context.Cause(ctx)
	switch {
	case w.err != nil:
		sum.Stopped = "error"
		return sum, w.err
	case werr != nil:
		sum.Stopped = "error"
		return sum, werr
	case errors.Is(cause, errDuration):
		sum.Stopped = "duration"
	case errors.Is(cause, errMaxBytes):
		sum.Stopped = "max_bytes"
	case errors.Is(cause, context.Canceled):
		sum.Stopped = "signal"
	default:
		sum.Stopped = "error"
		return sum, cause
	}
	return sum, nil
}

var (
	errDuration = errors.New("duration reached")
	errMaxBytes = errors.New("max bytes reached")
)

// recordSink writes segments as the reader delivers them. It runs on the
// reader's goroutine; a slow disk holds the reader back, and the kernel then
// counts what no longer fits in its ring.
type recordSink struct {
	cfg   RecordConfig
	stop  context.CancelCauseFunc
	start time.Time

	f       *os.File
	w       *pcapfile.Writer
	ifaces  map[int]int // ifindex -> interface block of the current file
	files   []string
	written int64 // bytes in files already closed
	err     error
	full    bool // MaxBytes reached: write nothing more

	segments uint64
}

func (s *recordSink) cur() int64 {
	if s.w == nil {
		return 0
	}
	return s.w.BytesWritten()
}

func (s *recordSink) open() error {
	name := s.cfg.Out
	if n := len(s.files); n > 0 {
		ext := filepath.Ext(name)
		name = strings.TrimSuffix(name, ext) + fmt.Sprintf(".%d", n) + ext
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	s.f = f
	if s.w, err = pcapfile.NewWriter(f); err != nil {
		f.Close()
		return fmt.Errorf("record %s: %w", name, err)
	}
	s.files = append(s.files, name)
	s.ifaces = map[int]int{}
	return nil
}

// Segment writes one segment; it implements bpf.Sink.
func (s *recordSink) Segment(seg *reassembly.Segment, ifindex int) {
	if s.err != nil || s.full {
		return
	}
	id, ok := s.ifaces[ifindex]
	if !ok {
		var err error
		if id, err = s.w.AddInterface(ifaceName(ifindex)); err != nil {
			s.fail(err)
			return
		}
		s.ifaces[ifindex] = id
	}
	if err := s.w.WriteSegment(id, seg); err != nil {
		s.fail(err)
		return
	}
	s.segments++
	n := s.cur()
	if s.cfg.MaxBytes > 0 && s.written+n >= s.cfg.MaxBytes {
		s.full = true
		s.stop(errMaxBytes)
		return
	}
	if s.cfg.RotateBytes > 0 && n >= s.cfg.RotateBytes {
		if err := s.closeFile(); err != nil {
			s.fail(err)
			return
		}
		if err := s.open(); err != nil {
			s.fail(err)
		}
	}
}

// Flush implements bpf.Sink; the file is flushed when closed.
func (s *recordSink) Flush() {}

func (s *recordSink) fail(err error) {
	s.err = fmt.Errorf("record %s: %w", s.files[len(s.files)-1], err)
	s.stop(s.err)
}

func (s *recordSink) closeFile() error {
	if s.f == nil {
		return nil
	}
	s.written += s.cur()
	err := errors.Join(s.w.Flush(), s.f.Close())
	s.f, s.w = nil, nil
	return err
}

// finish closes the current file.
func (s *recordSink) finish() error { return s.closeFile() }

// ifaceName names an interface by index for the capture file.
func ifaceName(ifindex int) string {
	if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
		return ifi.Name
	}
	return fmt.Sprintf("if%d", ifindex)
}
