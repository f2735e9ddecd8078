package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// TestE2ERecordReplayRoundTrip records live traffic with `shadowtee record`
// while `shadowtee attach` mirrors it, then replays the recording to another
// shadow: that shadow must receive the same requests as the live one.
func TestE2ERecordReplayRoundTrip(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			// --ordered, live and replayed, so that the order of each
			// connection's requests can be compared too.
			e.startAgent("--attach-mode", mode, "--ordered")
			out := filepath.Join(t.TempDir(), "live.pcapng")
			var recOut, recErr lockedBuffer
			rec, err := agentproc.Start(e.topo.Gateway, binary, []string{"record",
				"--iface", sandbox.GatewayIface, "--port", "8080", "--attach-mode", mode,
				"--out", out, "--summary", "json", "--log-format", "json"}, &recOut, &recErr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rec.WaitReady(t.Context(), 15*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, recErr.String())
			}

			sendMix(t, e)
			want := e.primary.Len()
			if !e.shadow.Wait(t.Context(), want, 10*time.Second) {
				t.Fatalf("live shadow received %d of %d", e.shadow.Len(), want)
			}
			if code, err := rec.Stop(20 * time.Second); err != nil || code != 0 {
				t.Fatalf("record exited %d, %v\n%s", code, err, recErr.String())
			}
			var sum agent.RecordSummary
			if err := json.Unmarshal([]byte(recOut.String()), &sum); err != nil {
				t.Fatalf("record summary: %v\n%s", err, recOut.String())
			}
			if sum.Segments == 0 || sum.Stopped != "signal" {
				t.Errorf("record summary %+v", sum)
			}

			// Replay to a second shadow on the shadow host.
			replayed := recorder.New(nil)
			e.serve(e.topo.Shadow, sandbox.ShadowIPv4+":8001", replayed)
			cmd := exec.Command(binary, "replay", "--pcap", out, "--speed", "max", "--ordered",
				"--shadow", "http://"+sandbox.ShadowIPv4+":8001", "--progress", "none", "--summary", "json")
			var stdout, stderr lockedBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := e.topo.Gateway.Start(cmd); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("replay: %v\n%s", err, stderr.String())
			}
			// Replay returns once every request was answered: no waiting.
			sameRequests(t, e.shadow.Requests(), replayed.Requests())
		})
	}
}

// sameRequests checks that two shadows received the same requests, and in
// the same order for each original connection (identified by the client
// address the shadow saw in X-Forwarded-For plus the order of arrival).
func sameRequests(t *testing.T, live, replayed []recorder.Request) {
	t.Helper()
	key := func(r recorder.Request) string {
		return r.Method + " " + r.Target + " " + r.Host + " " + r.Proto + " " + r.BodySHA256
	}
	count := map[string]int{}
	for _, r := range live {
		count[key(r)]++
	}
	for _, r := range replayed {
		count[key(r)]--
	}
	for k, n := range count {
		if n != 0 {
			t.Errorf("%s: live %+d compared with the replay", k, n)
		}
	}
	if len(live) != len(replayed) {
		t.Errorf("live shadow %d requests, replay %d", len(live), len(replayed))
	}
	// Keep-alive requests of one connection stay in order: the /get?n=
	// sequence of the first connection.
	order := func(rs []recorder.Request) []string {
		var out []string
		for _, r := range rs {
			if strings.HasPrefix(r.Target, "/get?n=") {
				out = append(out, r.Target)
			}
		}
		return out
	}
	if a, b := strings.Join(order(live), ","), strings.Join(order(replayed), ","); a != b {
		t.Errorf("keep-alive order differs: live %s, replay %s", a, b)
	}
}
