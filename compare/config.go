package compare

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Config configures an Engine. Zero values take the defaults named on each
// field.
type Config struct {
	// NoiseHeaders are answer header fields not compared, added to
	// DefaultNoiseHeaders. A trailing "*" makes a prefix ("x-envoy-*").
	NoiseHeaders []string
	// CompareHeaders are fields compared even though a noise list names
	// them ("date", or "x-envoy-*" for all of those).
	CompareHeaders []string
	// RedactHeaders are header fields whose values are never shown,
	// added to DefaultRedactHeaders.
	RedactHeaders []string
	// RedactPaths are body field paths whose values are never shown, in
	// the report's path syntax: "body.password", "body.items[].token". A
	// path redacts everything below it. They apply to JSON and form
	// bodies of requests and answers.
	RedactPaths []string
	// Patterns are endpoint templates per rule name ("*" for every rule,
	// after the rule's own), tried in order before automatic folding:
	// "/users/{id}/orders", "/files/*".
	Patterns map[string][]string

	// MinSamples is how many compared pairs an endpoint needs before its
	// fields are judged (default 10).
	MinSamples int
	// RelativeThreshold: a field is different only when
	// (diff_rate - noise_rate) / (diff_rate + noise_rate) exceeds it
	// (default 0.20, Diffy's 20%).
	RelativeThreshold float64
	// AbsoluteThreshold: ... and diff_rate - noise_rate exceeds it
	// (default 0.0003, Diffy's 0.03%).
	AbsoluteThreshold float64
	// NoiseWindow: two answers of the primary to equal requests are
	// compared for noise when they came at most this far apart (default
	// 1 minute).
	NoiseWindow time.Duration
	// NoiseEntries and NoiseBytes bound the primary answers kept for that
	// (defaults 4096 and 16 MiB).
	NoiseEntries int
	NoiseBytes   int64

	// MaxEndpoints bounds the endpoints of one rule; beyond, exchanges go
	// to the endpoint "* {other}" (default 200).
	MaxEndpoints int
	// MaxFields bounds the field paths of one endpoint; beyond, they share
	// the path "{other}" (default 256).
	MaxFields int
	// Cardinality is how many distinct values one path position may take
	// before it folds into {id} (default 32).
	Cardinality int
	// SamplesPerField is how many instances of a difference each field
	// keeps (default 3).
	SamplesPerField int
	// MaxSampleBytes bounds the memory of all samples and examples
	// (default 16 MiB).
	MaxSampleBytes int64
	// BodyCap bounds a decoded body: past it, only the prefix is compared
	// (a decompression bomb costs at most this) (default 4 MiB).
	BodyCap int
	// QueueLen is the length of Submit's queue (default 1024).
	QueueLen int
	// MaxRules bounds the rules tracked; beyond, exchanges count under
	// the rule "{other}" (default 256).
	MaxRules int

	// Log, when set, gets one JSON line per pair judged different,
	// redacted (--compare-log). It is written on the engine's goroutine:
	// a slow writer slows comparing (and fills Submit's queue), never the
	// capture.
	Log io.Writer
	// Now is the clock for exchanges without Time and for the report
	// (default time.Now).
	Now func() time.Time
}

// Defaults.
const (
	DefaultMinSamples        = 10
	DefaultRelativeThreshold = 0.20
	DefaultAbsoluteThreshold = 0.0003
	DefaultNoiseWindow       = time.Minute
	DefaultNoiseEntries      = 4096
	DefaultNoiseBytes        = 16 << 20
	DefaultMaxEndpoints      = 200
	DefaultMaxFields         = 256
	DefaultCardinality       = 32
	DefaultSamplesPerField   = 3
	DefaultMaxSampleBytes    = 16 << 20
	DefaultBodyCap           = 4 << 20
	DefaultQueueLen          = 1024
	DefaultMaxRules          = 256
)

func orDefault[T int | int64 | float64 | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// normalize checks c and fills in the defaults.
func (c *Config) normalize() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.MinSamples < 0 || c.NoiseEntries < 0 || c.NoiseBytes < 0 || c.MaxEndpoints < 0 || c.MaxFields < 0 ||
		c.Cardinality < 0 || c.SamplesPerField < 0 || c.MaxSampleBytes < 0 || c.BodyCap < 0 || c.QueueLen < 0 ||
		c.MaxRules < 0 || c.NoiseWindow < 0 {
		bad("compare: sizes, counts and durations must not be negative")
	}
	if c.RelativeThreshold < 0 || c.RelativeThreshold >= 1 {
		bad("compare: relative threshold %v: want 0 <= t < 1 (0.20 is 20%%)", c.RelativeThreshold)
	}
	if c.AbsoluteThreshold < 0 || c.AbsoluteThreshold >= 1 {
		bad("compare: absolute threshold %v: want 0 <= t < 1 (0.0003 is 0.03%%)", c.AbsoluteThreshold)
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"noise headers", c.NoiseHeaders}, {"compared headers", c.CompareHeaders}, {"redacted headers", c.RedactHeaders}} {
		if err := checkHeaderNames("compare: "+l.what, l.names); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.RedactPaths {
		if err := checkRedactPath(p); err != nil {
			errs = append(errs, fmt.Errorf("compare: %w", err))
		}
	}
	for rule, ps := range c.Patterns {
		for _, p := range ps {
			if _, err := parsePattern(p); err != nil {
				errs = append(errs, fmt.Errorf("compare: rule %q: %w", rule, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	orDefault(&c.MinSamples, DefaultMinSamples)
	orDefault(&c.RelativeThreshold, DefaultRelativeThreshold)
	orDefault(&c.AbsoluteThreshold, DefaultAbsoluteThreshold)
	orDefault(&c.NoiseWindow, DefaultNoiseWindow)
	orDefault(&c.NoiseEntries, DefaultNoiseEntries)
	orDefault(&c.NoiseBytes, DefaultNoiseBytes)
	orDefault(&c.MaxEndpoints, DefaultMaxEndpoints)
	orDefault(&c.MaxFields, DefaultMaxFields)
	orDefault(&c.Cardinality, DefaultCardinality)
	orDefault(&c.SamplesPerField, DefaultSamplesPerField)
	orDefault(&c.MaxSampleBytes, DefaultMaxSampleBytes)
	orDefault(&c.BodyCap, DefaultBodyCap)
	orDefault(&c.QueueLen, DefaultQueueLen)
	orDefault(&c.MaxRules, DefaultMaxRules)
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
