// Package agent wires the stages of shadowtee together and owns their
// lifecycle: capture (the BPF ring buffer, or a capture file), reassembly and
// HTTP framing in flow-sharded workers, then sampling, rewriting and sending
// to the shadow. It also serves metrics and health, and writes the summary.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/reassembly"
	"github.com/shadowtee/shadowtee/shadow"
)

// Config is everything a live tee needs. The CLI builds it from flags.
type Config struct {
	Interfaces []string
	Ports      []uint16
	AttachMode bpf.AttachMode

	Mirror MirrorConfig

	// Capture tuning.
	RingBytes   int           // kernel ring buffer size
	WakeupBytes uint32        // bytes waiting before the kernel wakes the reader
	Poll        time.Duration // longest wait between looks at the ring
	Shards      int           // reassembly workers; default GOMAXPROCS
	Backlog     int64         // bytes queued between capture and workers

	MetricsAddr   string        // "" disables the HTTP endpoint
	ReadyFile     string        // written once attached and running
	StatsInterval time.Duration // periodic one-line stats log; 0 disables
	DrainTimeout  time.Duration // how long shutdown waits for in-flight mirrors

	Logger *slog.Logger
}

// MirrorConfig is what happens to a request once framed: the part shared by
// the live tee and replay from a file.
type MirrorConfig struct {
	Shadow      string // URL of the shadow backend
	Percent     float64
	SampleKey   string // "" or "header:NAME"
	Rewrite     shadow.RewriteConfig
	Workers     int
	Timeout     time.Duration
	QueueBytes  int64
	MaxInFlight int
	Insecure    bool // skip TLS verification of an https shadow
	MaxBody     int64
	MaxHeader   int
	// Reassembly limits.
	MaxStreams  int
	GapTimeout  time.Duration
	IdleTimeout time.Duration
}

// Defaults.
const (
	DefaultDrainTimeout  = 5 * time.Second
	DefaultStatsInterval = 30 * time.Second
	DefaultMaxBody       = 8 << 20
	DefaultMaxHeader     = 64 << 10
)

// Validate checks the parts of the configuration that flags parsing cannot.
func (c *Config) Validate() error {
	if len(c.Interfaces) == 0 {
		return errors.New("no interface to attach to (--iface)")
	}
	if len(c.Ports) == 0 {
		return errors.New("no port to watch (--port)")
	}
	if len(c.Ports) > bpf.MaxPorts {
		return fmt.Errorf("%d ports: at most %d can be watched", len(c.Ports), bpf.MaxPorts)
	}
	return c.Mirror.validate()
}

func (m *MirrorConfig) validate() error {
	if m.Shadow == "" {
		return errors.New("no shadow backend (--shadow)")
	}
	if m.Percent < 0 || m.Percent > 100 || m.Percent != m.Percent {
		return fmt.Errorf("percent %v: must be between 0 and 100", m.Percent)
	}
	if m.MaxBody < 0 || m.MaxHeader < 0 {
		return errors.New("limits must not be negative")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.AttachMode == "" {
		c.AttachMode = bpf.AttachAuto
	}
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Mirror.setDefaults()
}

func (m *MirrorConfig) setDefaults() {
	if m.MaxBody == 0 {
		m.MaxBody = DefaultMaxBody
	}
	if m.MaxHeader == 0 {
		m.MaxHeader = DefaultMaxHeader
	}
}

// framingConfig returns the httpframe configuration of the mirror.
func (m *MirrorConfig) framingConfig(stats *httpframe.Stats) *httpframe.Config {
	return &httpframe.Config{
		MaxHeaderBytes: m.MaxHeader,
		MaxBodyBytes:   m.MaxBody,
		Stats:          stats,
	}
}

// reassemblyConfig returns the reassembly limits of the mirror.
func (m *MirrorConfig) reassemblyConfig(stats *reassembly.Stats) reassembly.Config {
	return reassembly.Config{
		MaxStreams:  m.MaxStreams,
		GapTimeout:  m.GapTimeout,
		IdleTimeout: m.IdleTimeout,
		Stats:       stats,
	}
}
