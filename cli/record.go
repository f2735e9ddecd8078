package cli

import (
	"fmt"
	"io"

	ucli "github.com/urfave/cli/v2"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/config"
)

func recordCommand() *ucli.Command {
	flags := append(captureFlags(),
		&ucli.StringFlag{Name: "out", Aliases: []string{"w"}, Usage: "pcapng `FILE` to write", EnvVars: env("OUT"), Category: "Output"},
		&ucli.DurationFlag{Name: "duration", Usage: "stop after this long (default: until SIGINT or SIGTERM)", EnvVars: env("DURATION"), Category: "Output"},
		&ucli.StringFlag{Name: "max-bytes", Usage: "stop once this many bytes were written (e.g. 1GiB)", EnvVars: env("MAX_BYTES"), Category: "Output"},
		&ucli.StringFlag{Name: "rotate-bytes", Usage: "start a new file (FILE.1.pcapng, ...) once the current one holds this many bytes", EnvVars: env("ROTATE_BYTES"), Category: "Output"},
		&ucli.StringFlag{Name: "ready-file", Usage: "write this `FILE` once attached (removed on exit)", EnvVars: env("READY_FILE"), Category: "Output"},
		&ucli.BoolFlag{Name: "answers", Usage: "record the servers' answers too, so that a replay can compare a new release's with them (replay --report)", EnvVars: env("ANSWERS"), Category: "Output"},
		summaryFlag("Output"),
	)
	flags = append(flags, logFlags()...)
	return &ucli.Command{
		Name:      "record",
		Usage:     "save what the tee copies to a pcapng file, for replay later",
		UsageText: "sudo shadowtee record --iface IFACE --port PORT --out FILE.pcapng [--duration 30s] [--max-bytes 1GiB] [--answers]",
		Description: `Attaches the same kernel program as attach and writes the client-to-server
segments it copies to a pcapng file (Ethernet frames, nanosecond timestamps, one
interface block per interface), so that 'shadowtee replay' of the recording
reproduces what attach would have mirrored, HTTP/1 and HTTP/2 alike. With
--answers it records the servers' answers too: replaying such a recording with
--report compares a new release's answers with them. It can run next to a
running attach.

Example:
  sudo shadowtee record --iface eth0 --port 8080 --out traffic.pcapng --duration 1m`,
		Flags:  flags,
		Action: runRecord,
	}
}

func runRecord(c *ucli.Context) error {
	s, err := startSession(c, "flags start with --")
	if err != nil {
		return err
	}
	defer s.stop()
	cfg := agent.RecordConfig{Out: c.String("out"), Duration: c.Duration("duration"), ReadyFile: c.String("ready-file"), Logger: s.log}
	if cfg.Capture, err = captureConfig(c, true); err != nil {
		return err
	}
	cfg.Capture.Answers = c.Bool("answers")
	if cfg.Out == "" {
		return usagef("--out is required: the pcapng file to write")
	}
	if cfg.Duration < 0 {
		return usagef("--duration must not be negative")
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"max-bytes", &cfg.MaxBytes}, {"rotate-bytes", &cfg.RotateBytes}} {
		if v := c.String(f.name); v != "" {
			if *f.dst, err = config.ParseSize(v); err != nil || *f.dst <= 0 {
				return usagef("--%s: %v", f.name, orPositive(err, v))
			}
		}
	}
	sum, err := agent.Record(s.ctx, cfg)
	if sum != nil {
		s.summarize(c.App.Writer, sum, func(w io.Writer) {
			fmt.Fprintf(w, "recorded %d segments, %s, in %v to %v (stopped: %s)\n",
				sum.Segments, mib(sum.Bytes), sum.Duration, sum.Files, sum.Stopped)
			if p := sum.Packets; p != nil {
				fmt.Fprintf(w, "packets seen %d, matched %d, copied %d, dropped %v\n", p.Seen, p.Matched, p.Copied, p.Dropped)
			}
		})
	}
	return err
}
