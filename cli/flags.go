package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/shadow"
)

const (
	catShadow  = "Shadow backend"
	catRewrite = "Rewrite"
	catLimits  = "Limits"
)

// mirrorFlags configure what happens to a request once framed; attach and
// replay share them.
func mirrorFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "shadow", Usage: "shadow backend `URL`: http://host:port or https://host:port", EnvVars: env("SHADOW"), Category: catShadow},
		&ucli.StringFlag{Name: "percent", Value: "100", Usage: "share of requests to mirror, 0 to 100 with decimals, decided per request", EnvVars: env("PERCENT"), Category: catShadow},
		&ucli.StringFlag{Name: "sample-key", Usage: "decide sampling from a hash of this request header (`header:NAME`, e.g. header:x-request-id), so every node of a fleet decides alike", EnvVars: env("SAMPLE_KEY"), Category: catShadow},
		&ucli.IntFlag{Name: "shadow-workers", Value: 4, Usage: "persistent connections to the shadow (requests are pipelined on each)", EnvVars: env("SHADOW_WORKERS"), Category: catShadow},
		&ucli.DurationFlag{Name: "shadow-timeout", Value: 15 * time.Second, Usage: "time allowed for each shadow answer", EnvVars: env("SHADOW_TIMEOUT"), Category: catShadow},
		&ucli.StringFlag{Name: "shadow-queue", Value: "64MiB", Usage: "bytes of requests that may wait for the shadow; beyond, requests are dropped and counted", EnvVars: env("SHADOW_QUEUE"), Category: catShadow},
		&ucli.BoolFlag{Name: "shadow-insecure", Usage: "do not verify the TLS certificate of an https shadow", EnvVars: env("SHADOW_INSECURE"), Category: catShadow},

		&ucli.BoolFlag{Name: "no-host-suffix", Usage: "send Host as the client sent it, without the -shadow suffix", EnvVars: env("NO_HOST_SUFFIX"), Category: catRewrite},
		&ucli.StringFlag{Name: "host", Usage: "set Host (and an absolute target's authority) to this `VALUE` instead of suffixing it", EnvVars: env("HOST"), Category: catRewrite},
		&ucli.StringSliceFlag{Name: "set-header", Usage: "set a header on mirrored requests, `NAME=VALUE` (repeatable; the environment twin takes one per line)", EnvVars: env("SET_HEADER"), Category: catRewrite},
		&ucli.StringSliceFlag{Name: "remove-header", Usage: "remove a header from mirrored requests, `NAME` (repeatable or comma-separated)", EnvVars: env("REMOVE_HEADER"), Category: catRewrite},
		&ucli.BoolFlag{Name: "no-xff", Usage: "do not append the client address to X-Forwarded-For", EnvVars: env("NO_XFF"), Category: catRewrite},

		&ucli.StringFlag{Name: "max-body", Value: "8MiB", Usage: "largest request body mirrored; larger requests are skipped and counted", EnvVars: env("MAX_BODY"), Category: catLimits},
		&ucli.IntFlag{Name: "max-streams", Value: 262144, Usage: "TCP connections followed at once; the least recently active is dropped beyond", EnvVars: env("MAX_STREAMS"), Category: catLimits},
		&ucli.DurationFlag{Name: "gap-timeout", Value: time.Second, Usage: "how long a hole in a TCP stream waits for its retransmission", EnvVars: env("GAP_TIMEOUT"), Category: catLimits},
		&ucli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "forget a TCP connection idle this long", EnvVars: env("IDLE_TIMEOUT"), Category: catLimits},
	}
}

// mirrorConfig reads the mirror flags.
func mirrorConfig(c *ucli.Context) (agent.MirrorConfig, error) {
	m := agent.MirrorConfig{
		Shadow:      c.String("shadow"),
		SampleKey:   c.String("sample-key"),
		Workers:     c.Int("shadow-workers"),
		Timeout:     c.Duration("shadow-timeout"),
		Insecure:    c.Bool("shadow-insecure"),
		MaxStreams:  c.Int("max-streams"),
		GapTimeout:  c.Duration("gap-timeout"),
		IdleTimeout: c.Duration("idle-timeout"),
		MaxHeader:   agent.DefaultMaxHeader,
	}
	if m.Shadow == "" {
		return m, usagef("--shadow is required: the URL of the shadow backend, e.g. --shadow http://198.18.1.3:8000")
	}
	if u, err := url.Parse(m.Shadow); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return m, usagef("--shadow %q: want http://host[:port] or https://host[:port]", m.Shadow)
	} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return m, usagef("--shadow %q: no path or query: mirrored requests keep their own target", m.Shadow)
	}
	var err error
	if m.Percent, err = shadow.ParsePercent(c.String("percent")); err != nil {
		return m, usagef("--percent: %v", err)
	}
	if m.SampleKey != "" && !strings.HasPrefix(m.SampleKey, "header:") {
		return m, usagef("--sample-key %q: want header:NAME, e.g. header:x-request-id", m.SampleKey)
	}
	if m.Workers < 1 || m.Workers > 1024 {
		return m, usagef("--shadow-workers %d: want 1 to 1024", m.Workers)
	}
	if m.Timeout <= 0 {
		return m, usagef("--shadow-timeout %v: must be positive", m.Timeout)
	}
	if m.QueueBytes, err = parseSize(c.String("shadow-queue")); err != nil || m.QueueBytes < 1 {
		return m, usagef("--shadow-queue: %v", orPositive(err, c.String("shadow-queue")))
	}
	if m.MaxBody, err = parseSize(c.String("max-body")); err != nil || m.MaxBody < 1 {
		return m, usagef("--max-body: %v", orPositive(err, c.String("max-body")))
	}
	if m.MaxStreams < 1 {
		return m, usagef("--max-streams %d: must be positive", m.MaxStreams)
	}
	if m.GapTimeout <= 0 || m.IdleTimeout <= 0 {
		return m, usagef("--gap-timeout and --idle-timeout must be positive")
	}

	m.Rewrite = shadow.RewriteConfig{
		NoHostSuffix: c.Bool("no-host-suffix"),
		Host:         c.String("host"),
		NoXFF:        c.Bool("no-xff"),
	}
	if c.IsSet("host") && m.Rewrite.Host == "" {
		return m, usagef("--host: the literal Host must not be empty")
	}
	for _, v := range c.StringSlice("set-header") {
		for _, line := range strings.Split(v, "\n") {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				return m, usagef("--set-header %q: want NAME=VALUE", line)
			}
			m.Rewrite.SetHeaders = append(m.Rewrite.SetHeaders, shadow.HeaderValue{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
		}
	}
	m.Rewrite.RemoveHeaders = splitList(c.StringSlice("remove-header"))
	if _, err := shadow.NewRewriter(m.Rewrite); err != nil {
		return m, usageError{err}
	}
	if _, err := shadow.NewSampler(m.Percent, m.SampleKey); err != nil {
		return m, usageError{err}
	}
	return m, nil
}

func orPositive(err error, s string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%q must be positive", s)
}

// parsePorts reads repeated or comma-separated TCP ports.
func parsePorts(values []string) ([]uint16, error) {
	var ports []uint16
	for _, p := range splitList(values) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, usagef("--port %q: want a TCP port from 1 to 65535", p)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}
