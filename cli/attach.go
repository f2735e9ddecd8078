package cli

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/capture"
	"github.com/shadowtee/shadowtee/config"
)

const catCapture = "Capture"

// captureFlags say where and what the kernel program copies; attach and
// record share them.
func captureFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "interface whose ingress traffic is copied: a `NAME`, a glob such as veth* (interfaces that appear later are attached too), or auto (every interface that is up, loopback excepted); repeatable or comma-separated", EnvVars: env("IFACE"), Category: catCapture},
		&ucli.StringSliceFlag{Name: "port", Aliases: []string{"p"}, Usage: "TCP port of the service to mirror, `PORT` (repeatable or comma-separated, up to 64)", EnvVars: env("PORT"), Category: catCapture},
		&ucli.StringFlag{Name: "attach-mode", Value: "auto", Usage: "auto (TCX where the kernel has it, else tc), tcx, or tc (clsact qdisc + filter)", EnvVars: env("ATTACH_MODE"), Category: catCapture},
		&ucli.StringFlag{Name: "ring-size", Value: "8MiB", Usage: "kernel ring buffer size, a power of two", EnvVars: env("RING_SIZE"), Category: catCapture},
		&ucli.DurationFlag{Name: "poll-interval", Value: bpf.DefaultPoll, Usage: "how often the ring buffer is read while traffic flows (with none, the reader sleeps until the kernel wakes it): longer saves CPU at low rates, shorter lowers the mirroring delay", EnvVars: env("POLL_INTERVAL"), Category: catCapture},
	}
}

// captureConfig reads the capture flags. Ports may be left out when a rules
// file gives them.
func captureConfig(c *ucli.Context, needPorts bool) (capture.Config, error) {
	cfg := capture.Config{
		Interfaces: splitList(c.StringSlice("iface")),
		Poll:       c.Duration("poll-interval"),
	}
	if len(cfg.Interfaces) == 0 {
		return cfg, usagef("--iface is required: the interface where requests arrive (see `ip link`)")
	}
	ports, err := parsePorts(c.StringSlice("port"))
	if err != nil {
		return cfg, err
	}
	if len(ports) == 0 && needPorts {
		return cfg, usagef("--port is required: the TCP port of the service to mirror")
	}
	if len(ports) > bpf.MaxPorts {
		return cfg, usagef("--port: %d ports given, at most %d can be watched", len(ports), bpf.MaxPorts)
	}
	cfg.Ports = ports
	if cfg.AttachMode, err = bpf.ParseAttachMode(c.String("attach-mode")); err != nil {
		return cfg, usageError{err}
	}
	ring, err := config.ParseSize(c.String("ring-size"))
	if err != nil {
		return cfg, usagef("--ring-size: %v", err)
	}
	if ring < int64(os.Getpagesize()) || ring&(ring-1) != 0 || ring > 1<<30 {
		return cfg, usagef("--ring-size %s: want a power of two from 4KiB to 1GiB", c.String("ring-size"))
	}
	cfg.RingBytes = int(ring)
	if cfg.Poll < 100*time.Microsecond || cfg.Poll > time.Second {
		return cfg, usagef("--poll-interval %v: want 100µs to 1s", cfg.Poll)
	}
	return cfg, nil
}

func attachCommand() *ucli.Command {
	flags := append(captureFlags(),
		&ucli.StringFlag{Name: "metrics-addr", Usage: "serve /metrics, /healthz and /readyz on this `ADDR` (e.g. :9090)", EnvVars: env("METRICS_ADDR"), Category: "Operations"},
		&ucli.StringFlag{Name: "ready-file", Usage: "write this `FILE` once attached and running (removed on exit)", EnvVars: env("READY_FILE"), Category: "Operations"},
		&ucli.BoolFlag{Name: "pprof", Usage: "also serve the Go profiler on --metrics-addr, under /debug/pprof/", EnvVars: env("PPROF"), Category: "Operations"},
		&ucli.DurationFlag{Name: "stats-interval", Value: agent.DefaultStatsInterval, Usage: "log a one-line summary this often (0: never)", EnvVars: env("STATS_INTERVAL"), Category: "Operations"},
		&ucli.DurationFlag{Name: "drain-timeout", Value: agent.DefaultDrainTimeout, Usage: "on exit, how long to wait for mirrored requests still in flight", EnvVars: env("DRAIN_TIMEOUT"), Category: "Operations"},
		summaryFlag("Operations"),
	)
	flags = append(flags, mirrorFlags("64MiB")...)
	flags = append(flags, compareFlags()...)
	flags = append(flags, logFlags()...)
	return &ucli.Command{
		Name:      "attach",
		Usage:     "copy live requests from interfaces and mirror them to a shadow",
		UsageText: "sudo shadowtee attach --iface IFACE --port PORT --shadow URL [options]",
		Description: `Attaches a read-only TC program to the ingress of each interface, copies the
client-to-server bytes of connections to the given ports, frames the HTTP/1.x
requests and replays them to the shadow with Host "foo" sent as "foo-shadow".

Runs until SIGINT or SIGTERM, then detaches, waits up to --drain-timeout for
mirrored requests in flight, prints a summary and exits 0.

Example:
  sudo shadowtee attach --iface eth0 --port 8080 --shadow http://10.0.0.7:8000 \
      --percent 10 --metrics-addr :9090

Needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON.`,
		Flags:  flags,
		Action: runAttach,
	}
}

func runAttach(c *ucli.Context) error {
	s, err := startSession(c, "flags start with --")
	if err != nil {
		return err
	}
	defer s.stop()
	cfg, err := attachConfig(c)
	if err != nil {
		return err
	}
	cfg.Logger = s.log
	var closeLog func() error
	if cfg.Compare, closeLog, err = compareConfig(c, false); err != nil {
		return err
	}
	defer closeLog()
	cfg.CompareAll = c.Bool("compare")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg.Hup = hup
	sum, err := agent.Run(s.ctx, cfg)
	if sum != nil {
		s.summarize(c.App.Writer, sum, sum.WriteText)
	}
	return err
}

func attachConfig(c *ucli.Context) (agent.Config, error) {
	cfg := agent.Config{
		MetricsAddr:   c.String("metrics-addr"),
		Pprof:         c.Bool("pprof"),
		ReadyFile:     c.String("ready-file"),
		StatsInterval: c.Duration("stats-interval"),
		// One P while light, all when busy, unless the operator chose.
		AdaptProcs:   os.Getenv("GOMAXPROCS") == "",
		DrainTimeout: c.Duration("drain-timeout"),
	}
	withFile := c.String("config") != ""
	if withFile && c.IsSet("port") {
		return cfg, usagef("--port and --config exclude each other: the rules file lists the ports of each rule")
	}
	var err error
	if cfg.Capture, err = captureConfig(c, !withFile); err != nil {
		return cfg, err
	}
	if cfg.StatsInterval < 0 || cfg.DrainTimeout < 0 {
		return cfg, usagef("durations must not be negative")
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = time.Millisecond
	}
	if cfg.Rules, cfg.RulesPath, err = rulesConfig(c, cfg.Capture.Ports, true); err != nil {
		return cfg, err
	}
	if cfg.Limits, err = limits(c); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}
