package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	ucli "github.com/urfave/cli/v2"
)

// session is how every command that runs for a while starts: no stray
// argument, a logger, a summary format, and a context that ends on SIGINT
// or SIGTERM.
type session struct {
	ctx    context.Context
	stop   context.CancelFunc
	log    *slog.Logger
	format string // of the summary: text or json
}

// startSession checks what attach, record and replay check alike. argHint
// says where the stray argument should have gone.
func startSession(c *ucli.Context, argHint string) (*session, error) {
	if c.Args().Len() > 0 {
		return nil, usagef("unexpected argument %q (%s)", c.Args().First(), argHint)
	}
	log, err := newLogger(c)
	if err != nil {
		return nil, err
	}
	format := c.String("summary")
	if format != "text" && format != "json" {
		return nil, usagef("--summary %q: want text or json", format)
	}
	s := &session{log: log, format: format}
	s.ctx, s.stop = signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	return s, nil
}

// summarize writes v as indented JSON, or with text when the format is text.
func (s *session) summarize(w io.Writer, v any, text func(io.Writer)) {
	if s.format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return
	}
	text(w)
}

// summaryFlag is the --summary flag of every command that prints one.
func summaryFlag(category string) ucli.Flag {
	return &ucli.StringFlag{Name: "summary", Value: "text", Usage: "format of the summary printed at the end: text or json", EnvVars: env("SUMMARY"), Category: category}
}
