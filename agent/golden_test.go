package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/shadow"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden from the dry-run output of TestReplayGolden")

// Where the captures and their golden output live, from this package.
const (
	capturesDir   = "../testdata/captures"
	realCaptures  = "../pcapfile/testdata"
	h2Captures    = "../h2frame/testdata" // real HTTP/2 clients and servers
	goldenDir     = "../testdata/golden"
	captureServer = 8080 // the server port of every capture in the repository
)

// cliDryRunRules is the rule that `shadowtee replay --dry-run` makes from
// its flag defaults (cli.rulesConfig): one rule named "default" for every
// port, 100 %, Host suffix and X-Forwarded-For on, and a shadow that is
// never dialled.
func cliDryRunRules() *config.File {
	return &config.File{Name: "command line", Rules: []config.Rule{{
		Name:       "default",
		Percentage: 100,
		HostSuffix: true,
		Shadow:     config.Shadow{URL: "http://shadow.invalid", Timeout: 15 * time.Second, Queue: 64 << 20},
		Headers:    config.Headers{XForwardedFor: true},
	}}}
}

// cliLimits are the limits of the replay flag defaults (cli.limits).
func cliLimits() Limits {
	return Limits{MaxBody: 8 << 20, MaxHeader: DefaultMaxHeader, MaxStreams: 262144, GapTimeout: time.Second, IdleTimeout: 2 * time.Minute}
}

// dryRun replays path as `shadowtee replay --pcap path --dry-run` does,
// with ports as --port, and returns the output and the summary. A damaged
// file is not an error here: what came before the damage is the output.
func dryRun(t testing.TB, path string, ports []uint16) ([]byte, *Summary) {
	t.Helper()
	var out bytes.Buffer
	sum, err := Replay(context.Background(), ReplayConfig{
		Path: path, Ports: ports, DryRun: &out, Rules: cliDryRunRules(), Limits: cliLimits(),
		Logger: slog.New(slog.DiscardHandler),
	})
	var damaged *pcapfile.Error
	if err != nil && !errors.As(err, &damaged) {
		t.Fatalf("replay %s: %v", path, err)
	}
	return out.Bytes(), sum
}

// goldenCaptures returns every capture of the repository: the synthesised
// and recorded ones of testdata/captures and the tcpdump ones of pcapfile.
func goldenCaptures(t testing.TB) []string {
	t.Helper()
	var paths []string
	for _, dir := range []string{capturesDir, realCaptures, h2Captures} {
		for _, pattern := range []string{"*.pcap", "*.pcapng"} {
			m, err := filepath.Glob(filepath.Join(dir, pattern))
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, m...)
		}
	}
	if len(paths) == 0 {
		t.Fatal("no captures found")
	}
	slices.Sort(paths)
	return paths
}

// captureName is the file name without its extension: the name of its
// golden file and of its expectations.
func captureName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// TestReplayGolden replays every capture of the repository in dry-run mode
// and compares the JSON lines with testdata/golden/NAME.jsonl byte for byte
// (-update rewrites them). It checks the summary counters that each case
// is about, that finding the client side without --port gives the same
// requests as --port 8080, and that no golden file is left without its
// capture.
func TestReplayGolden(t *testing.T) {
	paths := goldenCaptures(t)
	seen := map[string]bool{}
	for _, path := range paths {
		name := captureName(path)
		if seen[name] {
			t.Fatalf("two captures named %s: golden files are named after the capture without extension", name)
		}
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			got, sum := dryRun(t, path, nil)
			golden := filepath.Join(goldenDir, name+".jsonl")
			if *updateGolden {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./agent -run Golden -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("dry-run output differs from %s (go test ./agent -run Golden -update rewrites it):\n%s", golden, lineDiff(want, got))
			}
			recs := parseDryRun(t, got)
			checkCommon(t, sum, recs)
			exp, ok := goldenExpectations[name]
			if !ok {
				t.Fatalf("no expectations for %s: add them to goldenExpectations", name)
			}
			exp.check(t, sum, recs)

			port := uint16(captureServer)
			if len(recs) > 0 {
				port = netip.MustParseAddrPort(recs[0].Server).Port()
			}
			byPort, _ := dryRun(t, path, []uint16{port})
			if !bytes.Equal(byPort, got) {
				t.Errorf("--port %d gives other requests than finding the client side:\n%s", port, lineDiff(got, byPort))
			}
		})
	}
	goldens, _ := filepath.Glob(filepath.Join(goldenDir, "*.jsonl"))
	for _, g := range goldens {
		if name := strings.TrimSuffix(filepath.Base(g), ".jsonl"); !seen[name] {
			t.Errorf("%s has no capture", g)
		}
	}
	for name := range goldenExpectations {
		if !seen[name] {
			t.Errorf("expectations for %s, which is not a capture", name)
		}
	}
}

func parseDryRun(t *testing.T, out []byte) []DryRunRecord {
	t.Helper()
	var recs []DryRunRecord
	for line := range bytes.Lines(out) {
		var r DryRunRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("dry-run line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// checkCommon checks what holds for every capture: one pass, nothing
// sent, every printed request framed, its rule and its shadow Host.
func checkCommon(t *testing.T, sum *Summary, recs []DryRunRecord) {
	t.Helper()
	if sum.File == nil || sum.File.Passes != 1 {
		t.Errorf("file summary %+v, want one pass", sum.File)
	}
	if q := sum.Requests; q.Queued != 0 || q.Mirrored != 0 || len(q.Dropped) != 0 || len(q.Failed) != 0 {
		t.Errorf("a dry run sent something: %+v", q)
	}
	if uint64(len(recs)) > sum.Requests.Framed {
		t.Errorf("%d requests printed, %d framed", len(recs), sum.Requests.Framed)
	}
	for _, r := range recs {
		if r.Rule != "default" {
			t.Errorf("%s %s: rule %q", r.Method, r.Target, r.Rule)
		}
		if r.Host != "" && r.ShadowHost != shadow.ShadowHost(r.Host) {
			t.Errorf("%s %s: shadow Host %q for Host %q", r.Method, r.Target, r.ShadowHost, r.Host)
		}
		if r.Time.IsZero() || r.Client == "" || netip.MustParseAddrPort(r.Server).Port() != netip.MustParseAddrPort(recs[0].Server).Port() {
			t.Errorf("%s %s: time %v, client %q, server %q", r.Method, r.Target, r.Time, r.Client, r.Server)
		}
	}
}

// lineDiff shows the first lines where two outputs differ.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 5; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			shown++
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want " + wl + "\n  got  " + gl + "\n")
		}
	}
	if len(w) != len(g) {
		b.WriteString("want " + strconv.Itoa(len(w)-1) + " lines, got " + strconv.Itoa(len(g)-1) + "\n")
	}
	return b.String()
}

// sameSkips reports whether the summary's skip reasons are exactly want.
func sameSkips(sum *Summary, want map[string]uint64) bool {
	if want == nil {
		want = map[string]uint64{}
	}
	return maps.Equal(sum.Requests.Skipped, want)
}

// The summary of a dry run says what was printed, and that nothing was
// sent, in text and in JSON.
func TestDryRunSummary(t *testing.T) {
	out, sum := dryRun(t, filepath.Join(capturesDir, "pipelined.pcap"), nil)
	lines := bytes.Count(out, []byte("\n"))
	if lines == 0 || sum.Requests.Printed != uint64(lines) {
		t.Fatalf("printed %d, %d lines of output", sum.Requests.Printed, lines)
	}
	if sum.Requests.Mirrored != 0 || sum.Requests.Queued != 0 || sum.Shadow.ConnectionsOpened != 0 {
		t.Errorf("a dry run sent something: %+v", sum.Requests)
	}
	var text bytes.Buffer
	sum.WriteText(&text)
	want := "printed " + strconv.Itoa(lines) + " (dry run: nothing sent)"
	if !strings.Contains(text.String(), want) || strings.Contains(text.String(), "mirrored") {
		t.Errorf("text summary lacks %q (or speaks of mirrors):\n%s", want, text.String())
	}
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Requests struct {
			Framed  uint64 `json:"framed"`
			Printed uint64 `json:"printed"`
		} `json:"requests"`
		File struct {
			Passes int `json:"passes"`
		} `json:"file"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Requests.Printed != uint64(lines) || back.Requests.Framed != uint64(lines) || back.File.Passes != 1 {
		t.Errorf("JSON summary %s", b)
	}
}
