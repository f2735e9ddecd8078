package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

var updateTestdata = flag.Bool("update-testdata", false, "record testdata/captures/recorded-mix.pcapng again (root)")

// recordedMix is the capture of real traffic kept in testdata, and the
// most it may weigh.
const (
	recordedMix    = "../testdata/captures/recorded-mix.pcapng"
	recordedMaxLen = 200 << 10
)

// TestE2ERecordTestdata makes testdata/captures/recorded-mix.pcapng with
// the project's own tool: `shadowtee record` on the gateway while real Go
// clients send a mix of requests to go-httpbin. It runs only when asked to
// (-update-testdata, or SHADOWTEE_UPDATE_TESTDATA=1), because the new file
// has new ports and times and so needs new golden output
// (go test ./agent -run Golden -update). Before replacing the file it
// checks that replaying the recording gives every request the primary
// received, each once and whole.
func TestE2ERecordTestdata(t *testing.T) {
	if !*updateTestdata && os.Getenv("SHADOWTEE_UPDATE_TESTDATA") != "1" {
		t.Skip("rewrites " + recordedMix + ": run with -update-testdata or SHADOWTEE_UPDATE_TESTDATA=1")
	}
	e := newEnv(t)
	out := filepath.Join(t.TempDir(), "recorded-mix.pcapng")
	var recOut, recErr lockedBuffer
	rec, err := agentproc.Start(e.topo.Gateway, binary, []string{"record",
		"--iface", sandbox.GatewayIface, "--port", "8080", "--out", out,
		"--summary", "json", "--log-format", "json"}, &recOut, &recErr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-rec.Exited():
		default:
			rec.Kill()
		}
	})
	if _, err := rec.WaitReady(t.Context(), 15*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, recErr.String())
	}
	sendRecordedMix(t, e)
	// The last segments (FINs) leave the ring buffer shortly after.
	time.Sleep(200 * time.Millisecond)
	if code, err := rec.Stop(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("record exited %d, %v\n%s", code, err, recErr.String())
	}

	replayed := replayDryRun(t, out)
	checkSameAsPrimary(t, e.primary.Requests(), replayed)
	if t.Failed() {
		t.FailNow()
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > recordedMaxLen {
		t.Fatalf("%s: %d bytes, keep it under %d", out, fi.Size(), recordedMaxLen)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordedMix, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d bytes, %d requests; now run go test ./agent -run Golden -update", recordedMix, len(b), len(replayed))
}

// sendRecordedMix sends, in this order: 3 keep-alive GETs, a POST with a
// JSON body and a chunked POST (on the same kept-alive connection), a GET
// over IPv6, 3 pipelined requests in one write on a raw connection, and an
// HTTP/1.0 GET without Host. Bodies are fixed, so that the recording
// differs from the last only in ports, sequence numbers and times.
func sendRecordedMix(t *testing.T, e *env) {
	t.Helper()
	c := e.client()
	base := "http://" + sandbox.GatewayIPv4 + ":8080"
	do := func(method, url string, body io.Reader) {
		t.Helper()
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "shadowing.example"
		req.Header.Set("User-Agent", "shadowtee-e2e/1.0")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: primary answered %d", method, url, resp.StatusCode)
		}
	}
	for i := range 3 {
		do("GET", fmt.Sprintf("%s/get?n=%d", base, i), nil)
	}
	do("POST", base+"/post", strings.NewReader(`{"items":[`+strings.Repeat(`"recorded",`, 180)+`"last"]}`))
	// A reader of unknown length makes the client send chunks.
	do("POST", base+"/anything/chunked", io.MultiReader(strings.NewReader("first part of a streamed body\n"),
		strings.NewReader(strings.Repeat("streamed line\n", 40))))
	do("GET", "http://["+sandbox.GatewayIPv6+"]:8080/get?ipv6=1", nil)

	conn := e.dial(sandbox.GatewayIPv4 + ":8080")
	io.WriteString(conn, "GET /anything/p1 HTTP/1.1\r\nHost: shadowing.example\r\n\r\n"+
		"POST /anything/p2 HTTP/1.1\r\nHost: shadowing.example\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /anything/p3 HTTP/1.1\r\nHost: shadowing.example\r\n\r\n")
	readResponses(t, conn, 3)
	conn.Close()
	conn = e.dial(sandbox.GatewayIPv4 + ":8080")
	io.WriteString(conn, "GET /anything/http10 HTTP/1.0\r\n\r\n")
	readResponses(t, conn, 1)
	conn.Close()
	c.CloseIdleConnections()
}

// replayDryRun replays a capture in dry-run mode with the rule of
// `shadowtee replay --dry-run` and returns what it would send.
func replayDryRun(t *testing.T, path string) []agent.DryRunRecord {
	t.Helper()
	var out bytes.Buffer
	rules := &config.File{Rules: []config.Rule{{Name: "default", Percentage: 100, HostSuffix: true,
		Shadow: config.Shadow{URL: "http://shadow.invalid"}, Headers: config.Headers{XForwardedFor: true}}}}
	sum, err := agent.Replay(context.Background(), agent.ReplayConfig{Path: path, DryRun: &out, Rules: rules,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("replay %s: %v", path, err)
	}
	if len(sum.Requests.Skipped) != 0 || sum.Segments.Gaps != 0 {
		t.Errorf("replay of the recording: skipped %v, %d gaps", sum.Requests.Skipped, sum.Segments.Gaps)
	}
	var recs []agent.DryRunRecord
	for line := range bytes.Lines(out.Bytes()) {
		var r agent.DryRunRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

// checkSameAsPrimary checks that a replay holds every request the primary
// received, once, with the same method, target, protocol, Host and body.
func checkSameAsPrimary(t *testing.T, primary []recorder.Request, replayed []agent.DryRunRecord) {
	t.Helper()
	var want, got []string
	for _, r := range primary {
		want = append(want, strings.Join([]string{r.Method, r.Target, r.Proto, r.Host, r.BodySHA256}, " "))
	}
	for _, r := range replayed {
		got = append(got, strings.Join([]string{r.Method, r.Target, r.Proto, r.Host, r.BodySHA256}, " "))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("replay of the recording:\n%s\nprimary received:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestE2EReplayGoldenCLI runs the built binary, `shadowtee replay --pcap
// FILE --dry-run`, on every capture of the repository: its output must be
// the golden file that agent.TestReplayGolden checks, which shows that the
// rule that test builds is the one the command line makes.
func TestE2EReplayGoldenCLI(t *testing.T) {
	requireRoot(t)
	var paths []string
	for _, pattern := range []string{"../testdata/captures/*.pcap*", "../pcapfile/testdata/*.pcap*"} {
		m, _ := filepath.Glob(pattern)
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Fatal("no captures")
	}
	for _, path := range paths {
		base := filepath.Base(path)
		name := strings.TrimSuffix(base, filepath.Ext(base))
		want, err := os.ReadFile(filepath.Join("../testdata/golden", name+".jsonl"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		cmd := exec.Command(binary, "replay", "--pcap", path, "--dry-run", "--progress", "none")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, stderr.String())
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the command line prints other requests than the golden file:\n%s", name, got)
		}
	}
}
