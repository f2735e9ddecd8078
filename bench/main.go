package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if role := os.Getenv(roleEnv); role != "" {
		err = runRole(ctx, role, os.Args[1:])
	} else {
		err = run(ctx, os.Args[1:])
	}
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "shadowtee-bench:", err)
		os.Exit(1)
	}
}

// Config is the bench's command line.
type Config struct {
	Scenarios   []string      `json:"scenarios"`
	Rates       []float64     `json:"rates"`
	PostRate    float64       `json:"post_rate"`
	PostKiB     int           `json:"post_kib"`
	NewConnRate float64       `json:"newconn_rate"`
	Conns       int           `json:"conns"`
	Passes      int           `json:"passes"`
	Warmup      time.Duration `json:"warmup_ns"`
	Duration    time.Duration `json:"duration_ns"`
	Grace       time.Duration `json:"grace_ns"`
	Settle      time.Duration `json:"settle_ns"`
	// ShadowDelay is how long the shadow waits before each answer, in
	// every scenario but slow (SlowDelay) and soak (its faults).
	ShadowDelay delayRange `json:"shadow_delay"`
	Pipeline    bool       `json:"pipeline"`
	// PrimaryWork is CPU time the primary spends on each request.
	PrimaryWork time.Duration `json:"primary_work_ns"`
	// ShadowServer is how the shadow answers: serverHTTP or serverSink.
	ShadowServer string `json:"shadow_server"`

	SatStart     float64       `json:"sat_start"`
	SatMax       float64       `json:"sat_max"`
	SatFactor    float64       `json:"sat_factor"`
	SatSteps     int           `json:"sat_steps"`
	RampWarmup   time.Duration `json:"ramp_warmup_ns"`
	RampDuration time.Duration `json:"ramp_duration_ns"`
	// Pin runs the saturation scenario with the primary alone on one CPU
	// and the generator, the shadow and the tee on another.
	Pin bool `json:"pin"`

	SlowRates  []float64     `json:"slow_rates"`
	SlowDelay  delayRange    `json:"slow_delay"`
	H2Rate     float64       `json:"h2_rate"`
	H2Clients  int           `json:"h2_clients"`
	H2Streams  int           `json:"h2_streams"`
	H2Load     string        `json:"h2load"`
	CompareKiB []int         `json:"compare_kib"`
	CompRate   float64       `json:"compare_rate"`
	QuietTime  time.Duration `json:"quiet_time_ns"`

	IdleConns int           `json:"idle_conns"`
	IdleRate  float64       `json:"idle_rate"`
	IdleTime  time.Duration `json:"idle_time_ns"`

	SoakDuration time.Duration `json:"soak_duration_ns"`
	SoakRate     float64       `json:"soak_rate"`
	SoakFaults   []string      `json:"soak_faults"`
	SoakDelay    time.Duration `json:"soak_delay_ns"`

	Binary         string        `json:"binary"`
	AgentArgs      []string      `json:"agent_args,omitempty"`
	Variants       []string      `json:"variants,omitempty"`
	Peers          []string      `json:"peers,omitempty"`
	StartupTimeout time.Duration `json:"startup_timeout_ns"`
	QuietWait      time.Duration `json:"quiet_wait_ns"`
	BPFStats       bool          `json:"bpf_stats"`
	Perf           string        `json:"perf_dir,omitempty"`
	Quick          bool          `json:"quick"`

	Out  string `json:"-"`
	JSON string `json:"-"`
}

// allScenarios are the names --scenarios takes; idle is the old name of
// idle-conns.
var allScenarios = []string{scGet, scPost, scNewConn, scSaturation, scSlow, scCompare, scH2, scQuiet, scIdleConns, scSoak}

// parseFlags reads the command line. --quick shortens every duration the
// command line does not set itself.
func parseFlags(args []string) (*Config, error) {
	c := &Config{SlowDelay: delayRange{20 * time.Millisecond, 200 * time.Millisecond}}
	fs := flag.NewFlagSet("shadowtee-bench", flag.ContinueOnError)
	scenarios := fs.String("scenarios", "get,post,newconn,saturation", "scenarios to run, comma-separated: "+strings.Join(allScenarios, ", "))
	rates := fs.String("rates", "1000,5000,10000", "rates of the get scenario, requests/s")
	fs.Float64Var(&c.PostRate, "post-rate", 2000, "rate of the post scenario, and of the slow scenario's POST")
	fs.IntVar(&c.PostKiB, "post-kib", 16, "body size of the post scenario, KiB")
	fs.Float64Var(&c.NewConnRate, "newconn-rate", 2000, "rate of the newconn scenario")
	fs.IntVar(&c.Conns, "conns", 16, "keep-alive connections of the load generator")
	fs.IntVar(&c.Passes, "passes", 1, "run each scenario's baseline and tees this many times, interleaved")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time of each run")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "warm-up of each run, not measured")
	fs.DurationVar(&c.Grace, "grace", 3*time.Second, "time allowed for the primary's last answers")
	fs.DurationVar(&c.Settle, "settle", time.Second, "after the load, wait until the shadow has seen nothing new for this long")
	fs.Var(&c.ShadowDelay, "shadow-delay", "the shadow waits this long before each answer: a duration, or MIN-MAX drawn uniformly per request (20ms-200ms)")
	fs.DurationVar(&c.PrimaryWork, "primary-work", 0, "CPU time the primary spends on each request before answering (0: answer at once)")
	fs.StringVar(&c.ShadowServer, "shadow-server", "", "how the shadow answers: http (net/http, HTTP/1.1 and h2c), or sink (a framer of its own, several times cheaper, HTTP/1.1 only); default http, sink with --pin")
	fs.BoolVar(&c.Pipeline, "pipeline", false, "pipeline requests on busy connections instead of waiting for the answer")
	fs.Float64Var(&c.SatStart, "sat-start", 10000, "first rate of the saturation ramp")
	fs.Float64Var(&c.SatMax, "sat-max", 80000, "highest rate of the saturation ramp")
	fs.Float64Var(&c.SatFactor, "sat-factor", 1.25, "each ramp step multiplies the rate by this")
	fs.IntVar(&c.SatSteps, "sat-steps", 10, "at most this many ramp steps")
	fs.DurationVar(&c.RampWarmup, "ramp-warmup", time.Second, "warm-up of each ramp step")
	fs.DurationVar(&c.RampDuration, "ramp-duration", 3*time.Second, "measured time of each ramp step")
	fs.BoolVar(&c.Pin, "pin", false, "saturation scenario: run the primary alone on the first CPU, the generator, the shadow and the tee on the second")
	slowRates := fs.String("slow-rates", "1000,5000", "slow scenario: rates of its GET loads; a POST at --post-rate follows")
	fs.Var(&c.SlowDelay, "slow-delay", "slow scenario: the shadow's delay before each answer, a duration or MIN-MAX")
	fs.Float64Var(&c.H2Rate, "h2-rate", 2000, "h2 scenario: requests per second, all clients together")
	fs.IntVar(&c.H2Clients, "h2-clients", 8, "h2 scenario: h2load clients, one connection each")
	fs.IntVar(&c.H2Streams, "h2-streams", 16, "h2 scenario: concurrent streams per client")
	fs.StringVar(&c.H2Load, "h2load", "h2load", "h2 scenario: the h2load `program` (Debian: nghttp2-client)")
	compareKiB := fs.String("compare-kib", "1,16", "compare scenario: sizes of the JSON answers, KiB, a run each")
	fs.Float64Var(&c.CompRate, "compare-rate", 2000, "compare scenario: GETs per second")
	fs.DurationVar(&c.QuietTime, "quiet-time", 20*time.Second, "quiet scenario: how long the tee is watched attached with no traffic at all")
	fs.IntVar(&c.IdleConns, "idle-conns", 10000, "idle-conns scenario: keep-alive connections opened, one request each, then kept open")
	fs.Float64Var(&c.IdleRate, "idle-rate", 2000, "idle-conns scenario: connections opened per second")
	fs.DurationVar(&c.IdleTime, "idle-time", 20*time.Second, "idle-conns scenario: how long the connections stay open and silent")
	fs.DurationVar(&c.SoakDuration, "soak-duration", 60*time.Second, "soak scenario: length of each run under a shadow fault")
	fs.Float64Var(&c.SoakRate, "soak-rate", 2000, "soak scenario: keep-alive GETs per second")
	soakFaults := fs.String("soak-faults", strings.Join(allFaults, ","), "soak scenario: shadow faults, each a run: down (nothing listens), blackhole (packets dropped), slow (answers after --soak-delay)")
	fs.DurationVar(&c.SoakDelay, "soak-delay", 5*time.Second, "soak scenario: how long the slow shadow takes to answer")
	fs.StringVar(&c.Binary, "binary", "bin/shadowtee", "shadowtee binary; built with go build if missing")
	agentArgs := fs.String("agent-args", "", "extra flags for every shadowtee attach, space-separated")
	fs.Func("variant", "run shadowtee once more with these extra flags (space-separated), for a row of its own next to the run without them (repeatable); e.g. '--compare'",
		func(s string) error { c.Variants = append(c.Variants, s); return nil })
	fs.Func("peer", "another tee to compare, a shell command run on the gateway (repeatable); placeholders {iface} {port} {primary} {shadow} {shadow_url} {shadow_host} {shadow_port}",
		func(s string) error { c.Peers = append(c.Peers, s); return nil })
	fs.DurationVar(&c.StartupTimeout, "startup-timeout", 15*time.Second, "how long a tee may take to mirror its first request")
	fs.DurationVar(&c.QuietWait, "quiet-wait", 30*time.Second, "before each run, wait up to this long for the host to idle")
	fs.BoolVar(&c.BPFStats, "bpf-stats", true, "turn on the kernel's BPF run-time statistics to measure the tee's BPF program")
	fs.StringVar(&c.Perf, "perf", "", "record each tee run's measured window with perf into this `dir`")
	fs.BoolVar(&c.Quick, "quick", false, "short runs, for a smoke test")
	fs.StringVar(&c.Out, "out", "", "append the markdown report to this `file`")
	fs.StringVar(&c.JSON, "json", "", "write the raw results as JSON to this `file`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for s := range strings.SplitSeq(*scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "idle" {
			s = scIdleConns
		}
		switch {
		case slices.Contains(allScenarios, s):
			c.Scenarios = append(c.Scenarios, s)
		case s != "":
			return nil, fmt.Errorf("--scenarios: unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
	}
	for s := range strings.SplitSeq(*soakFaults, ",") {
		switch s = strings.TrimSpace(s); s {
		case faultDown, faultBlackhole, faultSlow:
			c.SoakFaults = append(c.SoakFaults, s)
		case "":
		default:
			return nil, fmt.Errorf("--soak-faults: unknown fault %q (want down, blackhole, slow)", s)
		}
	}
	switch c.ShadowServer {
	case "":
		// Pinned, the shadow shares a CPU with the generator and the tee:
		// net/http's cost there would starve the generator.
		c.ShadowServer = serverHTTP
		if c.Pin {
			c.ShadowServer = serverSink
		}
	case serverHTTP, serverSink:
	default:
		return nil, fmt.Errorf("--shadow-server %q: want http or sink", c.ShadowServer)
	}
	var err error
	if c.Rates, err = parseList(*rates, "--rates", strconv.ParseFloat); err != nil {
		return nil, err
	}
	if c.SlowRates, err = parseList(*slowRates, "--slow-rates", strconv.ParseFloat); err != nil {
		return nil, err
	}
	if c.CompareKiB, err = parseList(*compareKiB, "--compare-kib", func(s string, _ int) (int, error) { return strconv.Atoi(s) }); err != nil {
		return nil, err
	}
	c.AgentArgs = strings.Fields(*agentArgs)
	if c.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]*time.Duration{"duration": &c.Duration, "warmup": &c.Warmup, "grace": &c.Grace,
			"settle": &c.Settle, "ramp-warmup": &c.RampWarmup, "ramp-duration": &c.RampDuration,
			"idle-time": &c.IdleTime, "soak-duration": &c.SoakDuration, "quiet-time": &c.QuietTime}
		short := map[string]time.Duration{"duration": 2 * time.Second, "warmup": 500 * time.Millisecond,
			"grace": 2 * time.Second, "settle": 300 * time.Millisecond, "ramp-warmup": 300 * time.Millisecond,
			"ramp-duration": time.Second, "idle-time": 3 * time.Second, "soak-duration": 6 * time.Second,
			"quiet-time": 3 * time.Second}
		for name, d := range quick {
			if !set[name] {
				*d = short[name]
			}
		}
	}
	switch {
	case c.Conns <= 0 || c.Passes <= 0:
		return nil, errors.New("--conns and --passes must be positive")
	case c.Duration <= 0 || c.Warmup < 0:
		return nil, errors.New("--duration must be positive and --warmup not negative")
	case c.PrimaryWork < 0 || c.PrimaryWork > time.Second:
		return nil, errors.New("--primary-work must be 0 to 1s")
	case c.PostRate <= 0 || c.NewConnRate <= 0 || c.PostKiB < 0 || c.CompRate <= 0:
		return nil, errors.New("--post-rate, --newconn-rate and --compare-rate must be positive")
	case c.SatFactor <= 1:
		return nil, errors.New("--sat-factor must be above 1")
	case c.H2Rate <= 0 || c.H2Clients <= 0 || c.H2Streams <= 0:
		return nil, errors.New("--h2-rate, --h2-clients and --h2-streams must be positive")
	case c.QuietTime <= 0:
		return nil, errors.New("--quiet-time must be positive")
	case slices.ContainsFunc(c.CompareKiB, func(k int) bool { return k <= 0 || k > maxAnswer>>10 }):
		return nil, fmt.Errorf("--compare-kib: sizes must be 1 to %d", maxAnswer>>10)
	case c.IdleConns <= 0 || c.IdleConns > idleMaxConns || c.IdleRate <= 0 || c.IdleTime <= 0:
		return nil, fmt.Errorf("--idle-conns must be 1 to %d, --idle-rate and --idle-time positive", idleMaxConns)
	case c.SoakDuration < 2*time.Second || c.SoakRate <= 0 || c.SoakDelay < 0:
		return nil, errors.New("--soak-duration must be at least 2s, --soak-rate positive")
	case slices.Contains(c.Scenarios, scSoak) && len(c.SoakFaults) == 0:
		return nil, errors.New("--soak-faults: no fault to run")
	}
	return c, nil
}

// parseList reads a comma-separated list of positive numbers.
func parseList[T int | float64](s, flagName string, parse func(string, int) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: bad value %q", flagName, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// tools lists the rows of every scenario: the baseline, shadowtee, its
// variants, peers.
func (c *Config) tools() []tool {
	ts := []tool{{Name: kindBaseline, Kind: kindBaseline}, {Name: kindShadowtee, Kind: kindShadowtee}}
	for _, v := range c.Variants {
		ts = append(ts, tool{Name: kindShadowtee + " " + strings.Join(strings.Fields(v), " "), Kind: kindShadowtee, Args: strings.Fields(v)})
	}
	for i, p := range c.Peers {
		cmd := expandPeer(p)
		ts = append(ts, tool{Name: peerName(i, cmd), Kind: kindPeer, Command: cmd})
	}
	return ts
}

// ensureBinary builds the shadowtee binary if it is missing.
func ensureBinary(ctx context.Context, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err == nil {
		return abs, nil
	}
	slog.Info("building shadowtee", "binary", abs)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", abs, "github.com/shadowtee/shadowtee")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", abs, err)
	}
	return abs, nil
}

func run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errNoRoot
	}
	if cfg.Binary, err = ensureBinary(ctx, cfg.Binary); err != nil {
		return err
	}
	rep := &Report{Command: strings.Join(append([]string{"shadowtee-bench"}, args...), " "), Started: time.Now(),
		Machine: describeMachine(), Binary: cfg.Binary, Config: cfg}
	if out, err := exec.CommandContext(ctx, cfg.Binary, "version").Output(); err == nil {
		rep.Version = strings.TrimSpace(string(out))
	}
	if cfg.BPFStats {
		// Counting costs each BPF program two clock reads per run, which
		// the numbers then include.
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			slog.Warn("BPF run-time statistics unavailable", "err", err)
		} else {
			defer stats.Close()
		}
	}
	e, err := newEnv(ctx, cfg)
	if err != nil {
		return err
	}
	defer e.close()

	writeHeader(os.Stdout, rep)
	tools := cfg.tools()
	for _, sc := range cfg.scenarios() {
		if err := e.runScenario(ctx, sc, tools); err != nil {
			return err
		}
		rep.Scenarios = append(rep.Scenarios, sc)
		writeScenario(os.Stdout, sc)
	}
	writeSummary(os.Stdout, rep.Scenarios)
	rep.Elapsed = time.Since(rep.Started).Seconds()
	return writeOutputs(cfg, rep)
}

func writeOutputs(cfg *Config, rep *Report) error {
	var errs []error
	if cfg.Out != "" {
		errs = append(errs, appendFile(cfg.Out, rep))
	}
	if cfg.JSON != "" {
		errs = append(errs, writeJSON(cfg.JSON, rep))
	}
	return errors.Join(errs...)
}
