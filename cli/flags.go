package cli

import (
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

const (
	catShadow  = "Shadow backend"
	catRewrite = "Rewrite"
	catLimits  = "Limits"
)

// mirrorFlags configure what happens to a request once framed; attach and
// replay share them. maxBuffered is the default of --max-buffered: a live
// capture keeps it low against clients that announce large bodies, a file
// replay high, since a capture holds whatever uploads were in progress.
func mirrorFlags(maxBuffered string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "rules `FILE` (YAML): several rules, each with its match, shadow and rewrite; replaces the shadow and rewrite flags", EnvVars: env("CONFIG"), Category: catShadow},
		&ucli.StringFlag{Name: "shadow", Usage: "shadow backend `URL`: http://host:port or https://host:port", EnvVars: env("SHADOW"), Category: catShadow},
		&ucli.StringFlag{Name: "percent", Value: "100", Usage: "share of requests to mirror, 0 to 100 with decimals, decided per request", EnvVars: env("PERCENT"), Category: catShadow},
		&ucli.StringFlag{Name: "sample-key", Usage: "decide sampling from a hash of this request header (`header:NAME`, e.g. header:x-request-id), so every node of a fleet decides alike", EnvVars: env("SAMPLE_KEY"), Category: catShadow},
		&ucli.StringFlag{Name: "shadow-protocol", Usage: "http1 for a shadow that speaks only HTTP/1.1 (HTTP/2 requests are sent as HTTP/1.1, gRPC is skipped), http2 to send everything as HTTP/2; default: as captured", EnvVars: env("SHADOW_PROTOCOL"), Category: catShadow},
		&ucli.DurationFlag{Name: "shadow-timeout", Value: config.DefaultTimeout, Usage: "time allowed for each shadow answer, counted from the end of the request", EnvVars: env("SHADOW_TIMEOUT"), Category: catShadow},
		&ucli.DurationFlag{Name: "shadow-idle-timeout", Value: config.DefaultIdleTimeout, Usage: "close a connection to the shadow that has been unused this long", EnvVars: env("SHADOW_IDLE_TIMEOUT"), Category: catShadow},
		&ucli.IntFlag{Name: "shadow-max-connections", Value: config.DefaultMaxConnections, Usage: "connections to the shadow at most; the pool grows with the requests in flight (Envoy's circuit breaker)", EnvVars: env("SHADOW_MAX_CONNECTIONS"), Category: catShadow},
		&ucli.IntFlag{Name: "shadow-max-pending", Value: config.DefaultMaxPending, Usage: "requests that may wait for a connection; beyond, dropped and counted (overflow)", EnvVars: env("SHADOW_MAX_PENDING"), Category: catShadow},
		&ucli.IntFlag{Name: "shadow-max-requests", Value: config.DefaultMaxRequests, Usage: "requests in flight to the shadow at most; beyond, dropped and counted (overflow)", EnvVars: env("SHADOW_MAX_REQUESTS"), Category: catShadow},
		&ucli.StringFlag{Name: "shadow-queue", Value: "64MiB", Usage: "bytes of requests held for the shadow, waiting or in flight; beyond, dropped and counted", EnvVars: env("SHADOW_QUEUE"), Category: catShadow},
		&ucli.IntFlag{Name: "shadow-pipeline", Value: 1, Usage: "requests sent at once on one HTTP/1.1 connection, for shadows that handle pipelining (1: one at a time, as Envoy does)", EnvVars: env("SHADOW_PIPELINE"), Category: catShadow},
		&ucli.BoolFlag{Name: "ordered", Usage: "keep the mirrors of one client connection in order (each waits for the previous one's answer); default: sent at once, as Envoy does", EnvVars: env("ORDERED"), Category: catShadow},
		&ucli.BoolFlag{Name: "shadow-insecure", Usage: "do not verify the TLS certificate of an https shadow", EnvVars: env("SHADOW_INSECURE"), Category: catShadow},
		&ucli.IntFlag{Name: "shadow-workers", Hidden: true, EnvVars: env("SHADOW_WORKERS"), Category: catShadow},

		&ucli.BoolFlag{Name: "no-host-suffix", Usage: "send Host as the client sent it, without the -shadow suffix", EnvVars: env("NO_HOST_SUFFIX"), Category: catRewrite},
		&ucli.StringFlag{Name: "host", Usage: "set Host (and an absolute target's authority) to this `VALUE` instead of suffixing it", EnvVars: env("HOST"), Category: catRewrite},
		&ucli.StringSliceFlag{Name: "set-header", Usage: "set a header on mirrored requests, `NAME=VALUE` (repeatable; the environment twin takes one per line)", EnvVars: env("SET_HEADER"), Category: catRewrite},
		&ucli.StringSliceFlag{Name: "remove-header", Usage: "remove a header from mirrored requests, `NAME` (repeatable or comma-separated)", EnvVars: env("REMOVE_HEADER"), Category: catRewrite},
		&ucli.BoolFlag{Name: "no-xff", Usage: "do not append the client address to X-Forwarded-For", EnvVars: env("NO_XFF"), Category: catRewrite},
		&ucli.StringSliceFlag{Name: "pod-ip", Usage: "mirror only requests towards these addresses or CIDRs (`CIDR`, repeatable; filtered in the kernel)", EnvVars: env("POD_IP"), Category: catShadow},

		&ucli.StringFlag{Name: "max-body", Value: "8MiB", Usage: "largest request body mirrored; larger requests are skipped and counted", EnvVars: env("MAX_BODY"), Category: catLimits},
		&ucli.StringFlag{Name: "max-buffered", Value: maxBuffered, Usage: "bytes held for requests still arriving, over all connections; beyond, requests are skipped and counted (memory)", EnvVars: env("MAX_BUFFERED"), Category: catLimits},
		&ucli.IntFlag{Name: "max-streams", Value: 262144, Usage: "TCP connections followed at once; the least recently active is dropped beyond", EnvVars: env("MAX_STREAMS"), Category: catLimits},
		&ucli.DurationFlag{Name: "gap-timeout", Value: time.Second, Usage: "how long a hole in a TCP stream waits for its retransmission", EnvVars: env("GAP_TIMEOUT"), Category: catLimits},
		&ucli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "forget a TCP connection idle this long", EnvVars: env("IDLE_TIMEOUT"), Category: catLimits},
		&ucli.StringFlag{Name: "memory-limit", Value: "128MiB", Usage: "soft limit of the Go heap: the garbage collector works harder near it (0 turns it off; GOMEMLIMIT, when set, wins)", EnvVars: env("MEMORY_LIMIT"), Category: catLimits},
	}
}

// ruleFlags are the mirror flags that describe one rule; --config replaces
// them with a rules file.
var ruleFlags = []string{"shadow", "percent", "sample-key", "shadow-protocol", "shadow-timeout", "shadow-idle-timeout",
	"shadow-max-connections", "shadow-max-pending", "shadow-max-requests", "shadow-queue", "shadow-pipeline", "ordered",
	"shadow-insecure", "no-host-suffix", "host", "set-header", "remove-header", "no-xff", "pod-ip"}

// rulesConfig returns the rules to apply: those of --config, or one rule,
// named "default", made of the mirror flags and the given ports (none
// matches every port). The shadow URL may be left out only when nothing is
// sent (replay --dry-run). It returns the path of the rules file, if any.
func rulesConfig(c *ucli.Context, ports []uint16, needShadow bool) (*config.File, string, error) {
	if path := c.String("config"); path != "" {
		for _, name := range ruleFlags {
			if c.IsSet(name) {
				return nil, "", usagef("--%s and --config exclude each other: with a rules file, write it in the rule", name)
			}
		}
		f, err := config.Load(path)
		if err != nil {
			return nil, "", fmt.Errorf("rules file: %w", err)
		}
		return f, path, nil
	}
	r := config.Rule{
		Name:       "default",
		Match:      config.Match{Ports: ports},
		SampleKey:  c.String("sample-key"),
		HostSuffix: !c.Bool("no-host-suffix"),
		Host:       c.String("host"),
		Shadow: config.Shadow{
			URL:                c.String("shadow"),
			Protocol:           c.String("shadow-protocol"),
			Timeout:            c.Duration("shadow-timeout"),
			IdleTimeout:        c.Duration("shadow-idle-timeout"),
			MaxConnections:     c.Int("shadow-max-connections"),
			MaxPending:         c.Int("shadow-max-pending"),
			MaxRequests:        c.Int("shadow-max-requests"),
			Pipeline:           c.Int("shadow-pipeline"),
			Ordered:            c.Bool("ordered"),
			InsecureSkipVerify: c.Bool("shadow-insecure"),
		},
		Headers: config.Headers{XForwardedFor: !c.Bool("no-xff")},
	}
	if c.IsSet("shadow-workers") {
		return nil, "", usagef("--shadow-workers is not a flag: connections to the shadow grow with the requests in flight; cap them with --shadow-max-connections")
	}
	switch {
	case r.Shadow.URL == "" && needShadow:
		return nil, "", usagef("--shadow is required: the URL of the shadow backend, e.g. --shadow http://198.18.1.3:8000 (or give a rules file with --config)")
	case r.Shadow.URL == "":
		r.Shadow.URL = "http://shadow.invalid" // nothing will be sent
	default:
		if _, err := httpsyntax.ParseOrigin(r.Shadow.URL); err != nil {
			return nil, "", usagef("--shadow: %v: want http://host[:port] or https://host[:port]; mirrored requests keep their own target", err)
		}
	}
	var err error
	if r.Percentage, err = config.ParsePercent(c.String("percent")); err != nil {
		return nil, "", usagef("--percent: %v", err)
	}
	if err := config.CheckSampleKey(r.SampleKey); err != nil {
		return nil, "", usagef("--sample-key: %v; want header:NAME, e.g. header:x-request-id", err)
	}
	switch r.Shadow.Protocol {
	case "", config.ProtocolHTTP1, config.ProtocolHTTP2:
	default:
		return nil, "", usagef("--shadow-protocol %q: want http1 or http2 (or leave it out: as captured)", r.Shadow.Protocol)
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"--shadow-max-connections", r.Shadow.MaxConnections}, {"--shadow-max-pending", r.Shadow.MaxPending},
		{"--shadow-max-requests", r.Shadow.MaxRequests}, {"--shadow-pipeline", r.Shadow.Pipeline}} {
		if l.v < 1 || l.v > config.MaxLimit {
			return nil, "", usagef("%s %d: want 1 to %d", l.name, l.v, config.MaxLimit)
		}
	}
	if r.Shadow.Timeout <= 0 || r.Shadow.IdleTimeout <= 0 {
		return nil, "", usagef("--shadow-timeout and --shadow-idle-timeout must be positive")
	}
	if r.Shadow.Queue, err = config.ParseSize(c.String("shadow-queue")); err != nil || r.Shadow.Queue < 1 {
		return nil, "", usagef("--shadow-queue: %v", orPositive(err, c.String("shadow-queue")))
	}
	if c.IsSet("host") && r.Host == "" {
		return nil, "", usagef("--host: the literal Host must not be empty")
	}
	if r.Host != "" {
		if err := httpsyntax.CheckAuthority(r.Host); err != nil {
			return nil, "", usagef("--host: %v", err)
		}
	}
	if r.Host != "" {
		r.HostSuffix = false
	}
	for _, v := range c.StringSlice("set-header") {
		for _, line := range strings.Split(v, "\n") {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				return nil, "", usagef("--set-header %q: want NAME=VALUE", line)
			}
			r.Headers.Set = append(r.Headers.Set, config.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
		}
	}
	r.Headers.Remove = splitList(c.StringSlice("remove-header"))
	for _, p := range splitList(c.StringSlice("pod-ip")) {
		prefix, err := parsePrefix(p)
		if err != nil {
			return nil, "", usagef("--pod-ip %q: want an address or a CIDR such as 10.244.1.0/24", p)
		}
		r.Match.Destinations = append(r.Match.Destinations, prefix)
	}
	if err := config.CheckHeaders(r.Headers); err != nil {
		return nil, "", usageError{err}
	}
	return &config.File{Name: "command line", Rules: []config.Rule{r}}, "", nil
}

// parsePrefix reads a CIDR, or an address as a prefix of its full length.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// setMemoryLimit applies --memory-limit, unless GOMEMLIMIT is set: the
// environment is how a container states its own limit.
func setMemoryLimit(c *ucli.Context) error {
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	n, err := config.ParseSize(c.String("memory-limit"))
	if err != nil {
		return usagef("--memory-limit: %v", err)
	}
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}

// limits reads the flags that bound reassembly and framing.
func limits(c *ucli.Context) (agent.Limits, error) {
	l := agent.Limits{
		MaxHeader:   agent.DefaultMaxHeader,
		MaxStreams:  c.Int("max-streams"),
		GapTimeout:  c.Duration("gap-timeout"),
		IdleTimeout: c.Duration("idle-timeout"),
	}
	var err error
	if l.MaxBody, err = config.ParseSize(c.String("max-body")); err != nil || l.MaxBody < 1 {
		return l, usagef("--max-body: %v", orPositive(err, c.String("max-body")))
	}
	if l.MaxBuffered, err = config.ParseSize(c.String("max-buffered")); err != nil || l.MaxBuffered < l.MaxBody {
		if err == nil {
			err = fmt.Errorf("%s is less than --max-body", c.String("max-buffered"))
		}
		return l, usagef("--max-buffered: %v", err)
	}
	if l.MaxStreams < 1 {
		return l, usagef("--max-streams %d: must be positive", l.MaxStreams)
	}
	if l.GapTimeout <= 0 || l.IdleTimeout <= 0 {
		return l, usagef("--gap-timeout and --idle-timeout must be positive")
	}
	return l, setMemoryLimit(c)
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

const catCompare = "Compare"

// compareFlags configure the comparison of the shadow's answers with the
// primary's; attach and replay share them.
func compareFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "compare", Usage: "compare the shadow's answers with the primary's (captured from the wire, nothing sent twice), per endpoint; see /compare on --metrics-addr", EnvVars: env("COMPARE"), Category: catCompare},
		&ucli.StringFlag{Name: "compare-secondary", Usage: "also send each compared request to `URL`, a second copy of the current release: what differs between it and the primary is noise", EnvVars: env("COMPARE_SECONDARY"), Category: catCompare},
		&ucli.StringFlag{Name: "compare-log", Usage: "append one JSON line per pair of answers judged different to `FILE` (secrets redacted)", EnvVars: env("COMPARE_LOG"), Category: catCompare},
		&ucli.StringFlag{Name: "compare-body-cap", Value: "64KiB", Usage: "bytes of each answer's body kept for comparing", EnvVars: env("COMPARE_BODY_CAP"), Category: catCompare},
		&ucli.StringSliceFlag{Name: "compare-endpoint", Usage: "an endpoint `TEMPLATE` such as /users/{id}/orders or /files/* (repeatable), tried before ids are folded automatically", EnvVars: env("COMPARE_ENDPOINT"), Category: catCompare},
		&ucli.StringSliceFlag{Name: "compare-ignore-header", Usage: "an answer header `NAME` not compared, beyond Date, Server, ETag and the other defaults (repeatable; a trailing * makes a prefix)", EnvVars: env("COMPARE_IGNORE_HEADER"), Category: catCompare},
		&ucli.StringSliceFlag{Name: "compare-redact-header", Usage: "a header `NAME` whose value is never shown, beyond Authorization, Cookie and Set-Cookie (repeatable)", EnvVars: env("COMPARE_REDACT_HEADER"), Category: catCompare},
	}
}

// compareConfig reads the compare flags. It returns nil when none asks for
// a comparison (a rule of a rules file still may).
func compareConfig(c *ucli.Context, force bool) (*agent.CompareConfig, func() error, error) {
	set := force || c.Bool("compare")
	for _, f := range []string{"compare-secondary", "compare-log", "compare-endpoint", "compare-ignore-header", "compare-redact-header"} {
		set = set || c.IsSet(f)
	}
	if !set {
		return nil, func() error { return nil }, nil
	}
	cc := &agent.CompareConfig{Secondary: c.String("compare-secondary")}
	if cc.Secondary != "" {
		if _, err := httpsyntax.ParseOrigin(cc.Secondary); err != nil {
			return nil, nil, usagef("--compare-secondary: %v", err)
		}
	}
	n, err := config.ParseSize(c.String("compare-body-cap"))
	if err != nil || n < 1 || n > 1<<30 {
		return nil, nil, usagef("--compare-body-cap %q: want a size from 1 to 1GiB", c.String("compare-body-cap"))
	}
	cc.BodyCap = int(n)
	for _, p := range c.StringSlice("compare-endpoint") {
		if !strings.HasPrefix(p, "/") {
			return nil, nil, usagef("--compare-endpoint %q: want a path template such as /users/{id}/orders", p)
		}
		if cc.Engine.Patterns == nil {
			cc.Engine.Patterns = map[string][]string{}
		}
		cc.Engine.Patterns["*"] = append(cc.Engine.Patterns["*"], p)
	}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"compare-ignore-header", &cc.Engine.NoiseHeaders}, {"compare-redact-header", &cc.Engine.RedactHeaders}} {
		for _, h := range splitList(c.StringSlice(f.name)) {
			if !httpsyntax.IsToken(strings.TrimSuffix(h, "*")) {
				return nil, nil, usagef("--%s %q: not a header name", f.name, h)
			}
			*f.dst = append(*f.dst, strings.ToLower(h))
		}
	}
	closeLog := func() error { return nil }
	if path := c.String("compare-log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--compare-log: %w", err)
		}
		cc.Engine.Log = f
		closeLog = f.Close
	}
	return cc, closeLog, nil
}
