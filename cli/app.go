package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Version is set at build time with -ldflags "-X .../cli.Version=...".
var Version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in the command line itself.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// Run runs the command line and returns the process exit status.
func Run(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	var exit ucli.ExitCoder
	if errors.As(err, &exit) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "shadowtee:", msg)
		}
		return exit.ExitCode()
	}
	fmt.Fprintln(stderr, "shadowtee:", err)
	var usage usageError
	if errors.As(err, &usage) || strings.Contains(err.Error(), "flag provided but not defined") ||
		strings.HasPrefix(err.Error(), "Required flag") || strings.HasPrefix(err.Error(), "invalid value") {
		fmt.Fprintln(stderr, "Run 'shadowtee --help' or 'shadowtee COMMAND --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

func newApp(stdout, stderr io.Writer) *ucli.App {
	return &ucli.App{
		Name:  "shadowtee",
		Usage: "mirror live HTTP traffic to a shadow backend, from outside the request path",
		Description: `shadowtee copies the HTTP requests that reach a gateway with a TC eBPF program
(read-only: it never alters, delays or drops a packet), reassembles them in user
space, and replays them to a shadow copy of your service with "-shadow" appended to
the Host header, as Envoy, Istio and kgateway shadowing do. The shadow's answers
are read and thrown away; a slow or dead shadow costs production nothing.

First time? Run 'sudo shadowtee demo' to watch it mirror traffic in a sandbox.

Every flag has an environment twin: --shadow-timeout is SHADOWTEE_SHADOW_TIMEOUT.`,
		Version:                   Version,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		HideHelpCommand:           true,
		Suggest:                   true,
		DisableSliceFlagSeparator: true, // header values contain commas; lists are split by us
		ExitErrHandler:            func(*ucli.Context, error) {},
		OnUsageError: func(_ *ucli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: []*ucli.Command{
			attachCommand(),
			replayCommand(),
			recordCommand(),
			checkConfigCommand(),
			demoCommand(),
			versionCommand(),
		},
	}
}

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *ucli.Context) error {
			fmt.Fprintln(c.App.Writer, "shadowtee", Version)
			return nil
		},
	}
}

// logFlags are the logging flags every long-running command takes.
func logFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "log-format", Value: "auto", Usage: "text, json, or auto (text on a terminal, json otherwise)", EnvVars: env("LOG_FORMAT"), Category: "Logging"},
		&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("LOG_LEVEL"), Category: "Logging"},
	}
}

func newLogger(c *ucli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	w := c.App.ErrWriter
	switch format := c.String("log-format"); format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef("--log-format %q: want text, json or auto", format)
	}
}

// env names the environment twin of a flag.
func env(name string) []string { return []string{"SHADOWTEE_" + name} }

// splitList splits repeated, comma-separated flag values into one list.
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}
