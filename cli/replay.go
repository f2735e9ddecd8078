package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/pcapfile"
)

// exitPartial says that a damaged capture was replayed only up to the damage.
const exitPartial = 3

func replayCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "pcap", Aliases: []string{"r"}, Usage: "capture `FILE` to replay: pcap or pcapng", EnvVars: env("PCAP"), Category: "Input"},
		&ucli.StringSliceFlag{Name: "port", Aliases: []string{"p"}, Usage: "server `PORT` (repeatable); without it the server side is found from SYNs and request lines", EnvVars: env("PORT"), Category: "Input"},
		&ucli.StringFlag{Name: "speed", Value: "1", Usage: "1 keeps the capture's pace, 2.5 is 2.5 times faster, max sends as fast as the shadow takes them", EnvVars: env("SPEED"), Category: "Input"},
		&ucli.IntFlag{Name: "loop", Value: 1, Usage: "replay the file `N` times", EnvVars: env("LOOP"), Category: "Input"},
		&ucli.BoolFlag{Name: "dry-run", Usage: "send nothing: print what would be sent, one JSON line per request", EnvVars: env("DRY_RUN"), Category: "Output"},
		&ucli.StringFlag{Name: "output", Value: "jsonl", Usage: "format of --dry-run output (jsonl)", EnvVars: env("OUTPUT"), Category: "Output"},
		&ucli.StringFlag{Name: "report", Usage: "write the comparison of the shadow's answers with the capture's to `FILE` as an HTML page (implies --compare)", EnvVars: env("REPORT"), Category: "Output"},
		&ucli.StringFlag{Name: "report-json", Usage: "write the comparison to `FILE` as JSON, the schema of /api/compare (implies --compare)", EnvVars: env("REPORT_JSON"), Category: "Output"},
		&ucli.StringFlag{Name: "progress", Value: "auto", Usage: "auto (a bar on a terminal, lines otherwise), bar, lines or none", EnvVars: env("PROGRESS"), Category: "Output"},
		summaryFlag("Output"),
	}
	flags = append(flags, mirrorFlags("512MiB")...)
	flags = append(flags, compareFlags()...)
	flags = append(flags, logFlags()...)
	return &ucli.Command{
		Name:      "replay",
		Usage:     "replay the requests of a capture file to a shadow",
		UsageText: "shadowtee replay --pcap FILE --shadow URL [--port 8080] [--speed 1|2.5|max] [--loop N]\n   shadowtee replay --pcap FILE --dry-run [--output jsonl]",
		Description: `Reads a pcap or pcapng capture (Ethernet, raw IP, Linux cooked v1/v2, BSD
loopback; IPv4 and IPv6; VLAN tags), reassembles its TCP streams, frames the
HTTP/1.x requests of the client-to-server direction and mirrors them to the shadow
with the same rewrite rules as attach. Requests of one original connection reach
the shadow in their original order. Replay ends when every request sent has been
answered or has timed out, so a script can inspect the shadow right after.

A damaged file replays everything before the damage, names the file and the
offset of the damage, and exits with status 3.

Examples:
  shadowtee replay --pcap yesterday.pcapng --shadow http://10.0.0.7:8000 --speed max
  shadowtee replay --pcap bug.pcap --dry-run | jq .shadow_host`,
		Flags:  flags,
		Action: runReplay,
	}
}

func runReplay(c *ucli.Context) error {
	s, err := startSession(c, "the capture is given with --pcap")
	if err != nil {
		return err
	}
	defer s.stop()
	cfg := agent.ReplayConfig{Path: c.String("pcap"), Loop: c.Int("loop"), Logger: s.log}
	if cfg.Path == "" {
		return usagef("--pcap is required: the capture file to replay")
	}
	if cfg.Ports, err = parsePorts(c.StringSlice("port")); err != nil {
		return err
	}
	switch s := c.String("speed"); s {
	case "max":
		cfg.Speed = 0
	default:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 || f != f || f > 1e6 {
			return usagef("--speed %q: want a positive factor such as 1 or 2.5, or max", s)
		}
		cfg.Speed = f
	}
	if cfg.Loop < 1 {
		return usagef("--loop %d: want 1 or more", cfg.Loop)
	}
	dry := c.Bool("dry-run")
	if dry && !c.IsSet("speed") {
		cfg.Speed = 0 // nothing is sent: no reason to wait
	}
	if dry {
		if out := c.String("output"); out != "jsonl" {
			return usagef("--output %q: only jsonl is supported", out)
		}
		cfg.DryRun = c.App.Writer
	}
	if c.String("config") != "" && c.IsSet("port") {
		return usagef("--port and --config exclude each other: the rules file lists the ports of each rule")
	}
	if cfg.Rules, _, err = rulesConfig(c, cfg.Ports, !dry); err != nil {
		return err
	}
	if cfg.Ports == nil {
		// The file's server side follows the rules' ports when there is a
		// rules file; otherwise it is found from SYNs and request lines.
		cfg.Ports = cfg.Rules.Ports()
	}
	if cfg.Limits, err = limits(c); err != nil {
		return err
	}
	if err := setupProgress(c, &cfg, dry); err != nil {
		return err
	}
	cfg.Report, cfg.ReportJSON = c.String("report"), c.String("report-json")
	report := cfg.Report != "" || cfg.ReportJSON != ""
	if report && dry {
		return usagef("--report and --dry-run exclude each other: a report compares the shadow's answers, and a dry run sends nothing")
	}
	var closeLog func() error
	if cfg.Compare, closeLog, err = compareConfig(c, report); err != nil {
		return err
	}
	defer closeLog()
	cfg.CompareAll = c.Bool("compare") || report

	sum, err := agent.Replay(s.ctx, cfg)
	if sum != nil {
		// With --dry-run, stdout holds the requests: the summary goes to
		// stderr there.
		w := c.App.Writer
		if dry {
			w = c.App.ErrWriter
		}
		s.summarize(w, sum, sum.WriteText)
	}
	var damaged *pcapfile.Error
	if errors.As(err, &damaged) {
		return ucli.Exit(fmt.Sprintf("%v (partial replay: everything before the damage was replayed)", err), exitPartial)
	}
	return err
}

// setupProgress chooses how progress is shown: a bar redrawn in place on a
// terminal, a plain line every few seconds otherwise.
func setupProgress(c *ucli.Context, cfg *agent.ReplayConfig, dry bool) error {
	w := c.App.ErrWriter
	mode := c.String("progress")
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	var last agent.Progress
	switch mode {
	case "none":
	case "bar":
		cfg.ProgressEvery = 200 * time.Millisecond
		cfg.Progress = func(p agent.Progress) {
			fmt.Fprintf(w, "\r\033[K%s", progressLine(p, &last, true, dry))
			if p.Done {
				fmt.Fprintln(w)
			}
			last = p
		}
	case "lines":
		cfg.ProgressEvery = 5 * time.Second
		cfg.Progress = func(p agent.Progress) {
			fmt.Fprintln(w, progressLine(p, &last, false, dry))
			last = p
		}
	default:
		return usagef("--progress %q: want auto, bar, lines or none", mode)
	}
	return nil
}

func progressLine(p agent.Progress, last *agent.Progress, bar, dry bool) string {
	var b strings.Builder
	pct := 0.0
	if p.Size > 0 {
		pct = 100 * float64(p.Bytes) / float64(p.Size)
	}
	if bar {
		const width = 24
		n := min(width, int(pct/100*width))
		b.WriteString("[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] ")
	} else {
		b.WriteString("replay: ")
	}
	fmt.Fprintf(&b, "%3.0f%% %s/%s", pct, mib(p.Bytes), mib(p.Size))
	if p.Loops > 1 {
		fmt.Fprintf(&b, " pass %d/%d", p.Loop, p.Loops)
	}
	fmt.Fprintf(&b, "  requests %d", p.Framed)
	if !dry {
		secs := (p.Elapsed - last.Elapsed).Seconds()
		rate := 0.0
		if secs > 0 {
			rate = float64(p.Mirrored-last.Mirrored) / secs
		}
		fmt.Fprintf(&b, "  sent %d  answered %d  %.0f req/s", p.Queued, p.Mirrored, rate)
	}
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
