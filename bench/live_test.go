package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// liveEnv builds shadowtee and the bench's topology for a live test, with
// the command line args (--binary and --quiet-wait added), and runs its
// scenarios; it skips without root.
func liveEnv(t *testing.T, args ...string) (*env, []*Scenario) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and BPF")
	}
	if testing.Short() {
		t.Skip("runs for about ten seconds")
	}
	bin := filepath.Join(t.TempDir(), "shadowtee")
	build := exec.Command("go", "build", "-o", bin, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build shadowtee: %v\n%s", err, out)
	}
	var cfg *Config
	var err error
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{bin}", bin)
	}
	if cfg, err = parseFlags(append(args, "--quiet-wait", "0", "--binary", bin)); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	e, err := newEnv(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	})
	var md bytes.Buffer
	scs := cfg.scenarios()
	for _, sc := range scs {
		if err := e.runScenario(ctx, sc, cfg.tools()); err != nil {
			t.Fatal(err)
		}
		writeScenario(&md, sc)
	}
	writeSummary(&md, scs)
	t.Logf("\n%s", md.String())
	checkTables(t, md.String())
	return e, scs
}

// TestLiveQuick runs a short GET scenario in namespaces, with a shadow
// that takes 1 to 3 ms to answer: the baseline, shadowtee, and shadowtee
// again as a peer command. At a low rate every request must be mirrored
// exactly once.
func TestLiveQuick(t *testing.T) {
	_, scs := liveEnv(t, "--quick", "--scenarios", "get", "--rates", "500", "--duration", "2s", "--shadow-delay", "1ms-3ms",
		"--peer", "{bin} attach --iface {iface} --port {port} --shadow {shadow_url} --stats-interval 0")
	sc := scs[0]
	if len(sc.Runs) != 3 {
		t.Fatalf("%d runs", len(sc.Runs))
	}
	for _, r := range sc.Runs {
		l := r.Load
		if l.Sent != l.Scheduled || l.Completed != l.Sent || len(l.Errors) != 0 {
			t.Errorf("%s: sent %d of %d, answered %d, errors %v, notes %v", r.Tool, l.Sent, l.Scheduled, l.Completed, l.Errors, r.Notes)
		}
		// A loaded CI machine may delay some sends; the rate must hold.
		if l.Achieved < 0.8*sc.Rate || l.Achieved > 1.2*sc.Rate {
			t.Errorf("%s: achieved %.0f req/s of %.0f", r.Tool, l.Achieved, sc.Rate)
		}
		if r.Kind == kindBaseline {
			continue
		}
		if r.CompletePct == nil || *r.CompletePct != 100 || r.Missing != 0 || r.Duplicated != 0 {
			t.Errorf("%s: mirrored once %v, missing %d, duplicated %d", r.Tool, r.CompletePct, r.Missing, r.Duplicated)
		}
		if r.StartupS == nil || r.CPUPerReqUS == nil || r.MaxRSSMiB == nil || *r.MaxRSSMiB <= 1 || r.Lag.N != r.Expected ||
			r.WakeupsPerS == nil || *r.WakeupsPerS <= 0 {
			t.Errorf("%s: start-up %v, cpu %v, rss %v, lag %+v, wake-ups %v", r.Tool, r.StartupS, r.CPUPerReqUS, r.MaxRSSMiB, r.Lag, r.WakeupsPerS)
		}
		// The pool follows rate × latency: at 500 req/s and at most 3 ms,
		// a few connections, 2 × 500 × 3 ms + 8 at the most.
		if r.Shadow.Conns < 1 || r.Shadow.Conns > 11 || r.Shadow.Peak < 1 || r.Shadow.Peak > r.Shadow.Conns {
			t.Errorf("%s: %d connections to the shadow, %d at once", r.Tool, r.Shadow.Conns, r.Shadow.Peak)
		}
	}
	if tee := sc.Runs[1]; tee.Counters[`shadowtee_requests_total{result="mirrored"}`] < float64(tee.Expected) {
		t.Errorf("agent counted %v mirrored of %d", tee.Counters, tee.Expected)
	}
	if sc.Runs[2].Tool != "peer 1 (shadowtee)" {
		t.Error("no peer row")
	}
}

// TestLiveMemory runs short quiet, idle-conns, soak and h2 scenarios in
// namespaces: no traffic, a few hundred idle connections, then the shadow
// down and blackholed, then h2load. Every connection must stay open,
// every request be mirrored once, under each fault every request sent be
// accounted for, and h2load's requests reach the primary.
func TestLiveMemory(t *testing.T) {
	faults := "down,blackhole"
	if _, err := exec.LookPath("iptables"); err != nil {
		faults = "down"
	}
	scenarios := "quiet,idle-conns,soak"
	if _, err := exec.LookPath("h2load"); err == nil {
		scenarios += ",h2"
	}
	e, scs := liveEnv(t, "--quick", "--scenarios", scenarios, "--quiet-time", "1s", "--idle-conns", "300", "--idle-time", "1s",
		"--soak-duration", "2s", "--soak-rate", "500", "--soak-faults", faults, "--h2-rate", "400", "--h2-clients", "2",
		"--duration", "1s", "--agent-args", "--drain-timeout 500ms")
	if q := scs[0].Runs; len(q) != 1 || q[0].CPUCorePct == nil || q[0].WakeupsPerS == nil || q[0].MaxRSSMiB == nil ||
		slices.ContainsFunc(q[0].Notes, func(n string) bool { return strings.Contains(n, "reached the shadow") }) {
		t.Errorf("quiet runs %+v", q[0])
	}
	scs = scs[1:]
	idle := scs[0].Runs
	if len(idle) != 1 || idle[0].Idle == nil {
		t.Fatalf("idle runs %+v", idle)
	}
	if r := idle[0]; r.Idle.Open != 300 || r.Idle.Alive != 300 || r.Once != 300 || r.MaxRSSMiB == nil || r.CPUCorePct == nil ||
		r.Idle.Memory == nil || r.Idle.Memory.Streams == nil || *r.Idle.Memory.Streams < 300 {
		t.Errorf("idle: open %d, alive %d, mirrored once %d, rss %v, memory %v, notes %v", r.Idle.Open, r.Idle.Alive, r.Once,
			r.MaxRSSMiB, r.Idle.Memory, r.Notes)
	}
	soak := scs[1].Runs
	if len(soak) != 1+len(e.cfg.SoakFaults) {
		t.Fatalf("%d soak runs", len(soak))
	}
	for _, r := range soak[1:] {
		if r.Soak == nil || r.Ledger == nil {
			t.Errorf("%s: no soak result, notes %v", r.label(), r.Notes)
			continue
		}
		l := r.Ledger
		if !l.Exact() || l.Sent != r.Load.Sent || l.Mirrored != 0 || r.Soak.ShadowArrived != 0 || len(r.Soak.Series) < 2 {
			t.Errorf("%s: ledger %+v, shadow received %d, %d RSS points", r.label(), l, r.Soak.ShadowArrived, len(r.Soak.Series))
		}
		if r.Load.Completed != r.Load.Sent || len(r.Load.Errors) != 0 {
			t.Errorf("%s: primary answered %d of %d, errors %v", r.label(), r.Load.Completed, r.Load.Sent, r.Load.Errors)
		}
	}
	if len(scs) > 2 {
		for _, r := range scs[2].Runs {
			if l := r.Load; l.Sent != l.Scheduled || l.Completed != l.Sent || l.Repeat != 2 || l.WindowSent == 0 || l.Latency.N == 0 {
				t.Errorf("h2 %s: load %+v", r.label(), l)
			}
		}
	}
	// The shadow is mended after each fault.
	ctx := t.Context()
	if err := e.resetShadow(ctx, 0, delayRange{}); err != nil {
		t.Fatal(err)
	}
	c, err := e.topo.Gateway.DialContext(ctx, "tcp", shadowAddr)
	if err != nil {
		t.Fatalf("shadow not back after the faults: %v", err)
	}
	c.Close()
}
