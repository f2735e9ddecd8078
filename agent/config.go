package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/reassembly"
)

// Config is everything a live tee needs. The CLI builds it from flags.
type Config struct {
	Capture capture.Config
	// StartCapture starts the live capture; nil: the kernel's
	// (capture.Start). Tests give a fake.
	StartCapture StartCapture
	// Rules say what is mirrored where. With RulesPath set they were loaded
	// from that file, which is then watched: a change (or SIGHUP on Hup)
	// replaces them without detaching, and the kernel filter follows.
	Rules     *config.File
	RulesPath string
	Hup       <-chan os.Signal
	Limits    Limits

	// Compare, when not nil, compares the shadow's answers with the
	// primary's for every rule with CompareAll, or for the rules that ask
	// (config.Rule.Compare); they may ask without it too. The capture then
	// copies the servers' answers as well.
	Compare    *CompareConfig
	CompareAll bool

	Shards  int   // reassembly workers; default GOMAXPROCS
	Backlog int64 // bytes queued between capture and workers

	MetricsAddr   string        // "" disables the HTTP endpoint
	Pprof         bool          // serve /debug/pprof/ next to the metrics
	ReadyFile     string        // written once attached and running
	StatsInterval time.Duration // periodic one-line stats log; 0 disables
	// AdaptProcs runs the process on one P while it is light, and on
	// every P once it is busy (procs.go). For a process of its own: it
	// sets GOMAXPROCS.
	AdaptProcs   bool
	DrainTimeout time.Duration // how long shutdown waits for in-flight mirrors

	Logger *slog.Logger
}

// Limits bound what reassembly and framing hold, for every rule.
type Limits struct {
	MaxBody int64
	// MaxBuffered caps the bytes held for requests still arriving, over all
	// connections: beyond it, the request that needs more is skipped
	// (memory) rather than memory growing with what clients announce.
	MaxBuffered int64
	MaxHeader   int
	MaxStreams  int
	GapTimeout  time.Duration
	IdleTimeout time.Duration
}

// Defaults.
const (
	DefaultDrainTimeout  = 5 * time.Second
	DefaultStatsInterval = 30 * time.Second
	DefaultMaxBody       = 8 << 20
	DefaultMaxBuffered   = 64 << 20
	DefaultMaxHeader     = 64 << 10
)

// Validate checks the parts of the configuration that flags parsing cannot.
func (c *Config) Validate() error {
	if (c.Rules == nil || len(c.Rules.Rules) == 0) && c.RulesPath == "" {
		return errors.New("no rule: give --shadow (and --port), or --config")
	}
	if len(c.Capture.Interfaces) == 0 {
		return errors.New("no interface to attach to (--iface)")
	}
	if len(c.Capture.Ports) > bpf.MaxPorts {
		return fmt.Errorf("%d ports: at most %d can be watched", len(c.Capture.Ports), bpf.MaxPorts)
	}
	if c.Pprof && c.MetricsAddr == "" {
		return errors.New("--pprof needs --metrics-addr: the profiler is served there")
	}
	return c.Limits.validate()
}

func (l *Limits) validate() error {
	if l.MaxBody < 0 || l.MaxBuffered < 0 || l.MaxHeader < 0 || l.MaxStreams < 0 || l.GapTimeout < 0 || l.IdleTimeout < 0 {
		return errors.New("limits must not be negative")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.StartCapture == nil {
		c.StartCapture = startLive
	}
	if c.Rules != nil {
		// The kernel copies what the rules name.
		c.Capture.Ports = c.Rules.Ports()
		c.Capture.Destinations = c.Rules.Destinations()
	}
	c.Limits.setDefaults()
}

func (l *Limits) setDefaults() {
	if l.MaxBody == 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.MaxBuffered == 0 {
		l.MaxBuffered = max(DefaultMaxBuffered, 2*l.MaxBody)
	}
	if l.MaxHeader == 0 {
		l.MaxHeader = DefaultMaxHeader
	}
}

// reassemblyConfig returns the reassembly limits.
func (l *Limits) reassemblyConfig(stats *reassembly.Stats) reassembly.Config {
	return reassembly.Config{
		MaxStreams:  l.MaxStreams,
		GapTimeout:  l.GapTimeout,
		IdleTimeout: l.IdleTimeout,
		Stats:       stats,
	}
}
