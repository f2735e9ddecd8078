package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLiveQuick runs a short GET scenario in namespaces: the baseline,
// shadowtee, and shadowtee again as a peer command. At a low rate every
// request must be mirrored exactly once.
func TestLiveQuick(t *testing.T) {
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
	cfg, err := parseFlags([]string{"--quick", "--scenarios", "get", "--rates", "500", "--duration", "2s",
		"--quiet-wait", "0", "--binary", bin,
		"--peer", bin + " attach --iface {iface} --port {port} --shadow {shadow_url} --stats-interval 0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	e, err := newEnv(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	}()
	sc := cfg.scenarios()[0]
	if err := e.runScenario(ctx, sc, cfg.tools()); err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	writeScenario(&md, sc)
	t.Logf("\n%s", md.String())
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
		if r.StartupS == nil || r.CPUPerReqUS == nil || r.MaxRSSMiB == nil || *r.MaxRSSMiB <= 1 || r.Lag.N != r.Expected {
			t.Errorf("%s: start-up %v, cpu %v, rss %v, lag %+v", r.Tool, r.StartupS, r.CPUPerReqUS, r.MaxRSSMiB, r.Lag)
		}
		if r.Shadow.Conns < 1 || r.Shadow.Conns > 4 {
			t.Errorf("%s: %d connections to the shadow", r.Tool, r.Shadow.Conns)
		}
	}
	if tee := sc.Runs[1]; tee.Counters[`shadowtee_requests_total{result="mirrored"}`] < float64(tee.Expected) {
		t.Errorf("agent counted %v mirrored of %d", tee.Counters, tee.Expected)
	}
	if !strings.Contains(md.String(), "| peer 1 (shadowtee) |") {
		t.Error("no peer row")
	}
}

// TestLiveMemory runs short idle and soak scenarios in namespaces: a few
// hundred idle connections, then the shadow down and blackholed. Every
// connection must stay open, every request be mirrored once, and under
// each fault every request sent be accounted for.
func TestLiveMemory(t *testing.T) {
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
	faults := "down,blackhole"
	if _, err := exec.LookPath("iptables"); err != nil {
		faults = "down"
	}
	cfg, err := parseFlags([]string{"--quick", "--scenarios", "idle,soak", "--idle-conns", "300", "--idle-time", "1s",
		"--soak-duration", "2s", "--soak-rate", "500", "--soak-faults", faults, "--quiet-wait", "0", "--binary", bin,
		"--agent-args", "--drain-timeout 500ms"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	e, err := newEnv(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	}()
	var md bytes.Buffer
	scs := cfg.scenarios()
	for _, sc := range scs {
		if err := e.runScenario(ctx, sc, cfg.tools()); err != nil {
			t.Fatal(err)
		}
		writeScenario(&md, sc)
	}
	t.Logf("\n%s", md.String())
	idle := scs[0].Runs
	if len(idle) != 1 || idle[0].Idle == nil {
		t.Fatalf("idle runs %+v", idle)
	}
	if r := idle[0]; r.Idle.Open != 300 || r.Idle.Alive != 300 || r.Once != 300 || r.MaxRSSMiB == nil || r.Idle.IdleCPUPct == nil ||
		r.Idle.Memory == nil || r.Idle.Memory.Streams == nil || *r.Idle.Memory.Streams < 300 {
		t.Errorf("idle: open %d, alive %d, mirrored once %d, rss %v, memory %v, notes %v", r.Idle.Open, r.Idle.Alive, r.Once,
			r.MaxRSSMiB, r.Idle.Memory, r.Notes)
	}
	soak := scs[1].Runs
	if len(soak) != 1+len(cfg.SoakFaults) {
		t.Fatalf("%d soak runs", len(soak))
	}
	for _, r := range soak[1:] {
		if r.Soak == nil || r.Soak.Ledger == nil {
			t.Errorf("%s: no soak result, notes %v", r.label(), r.Notes)
			continue
		}
		l := r.Soak.Ledger
		if !l.Exact() || l.Sent != r.Load.Sent || l.Mirrored != 0 || r.Soak.ShadowArrived != 0 || len(r.Soak.Series) < 2 {
			t.Errorf("%s: ledger %+v, shadow received %d, %d RSS points", r.label(), l, r.Soak.ShadowArrived, len(r.Soak.Series))
		}
		if r.Load.Completed != r.Load.Sent || len(r.Load.Errors) != 0 {
			t.Errorf("%s: primary answered %d of %d, errors %v", r.label(), r.Load.Completed, r.Load.Sent, r.Load.Errors)
		}
	}
	// The shadow is mended after each fault.
	if err := e.resetShadow(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	c, err := e.topo.Gateway.DialContext(ctx, "tcp", shadowAddr)
	if err != nil {
		t.Fatalf("shadow not back after the faults: %v", err)
	}
	c.Close()
}
