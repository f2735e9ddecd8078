package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// TestE2EQuietAgentWakesForOneRequest attaches the tee, lets it go quiet
// (its ring reader asleep until the kernel rings), then sends one request:
// the kernel wakes the reader and the request is mirrored, in both attach
// modes. An idle agent costs nothing, and still misses nothing.
func TestE2EQuietAgentWakesForOneRequest(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.startAgent("--attach-mode", mode)
			counter := func(name string) float64 { return e.metrics()[name] }
			const sleeps, wakeups = `shadowtee_ring_reader_total{event="sleeps"}`, `shadowtee_ring_reader_total{event="wakeups"}`
			for deadline := time.Now().Add(10 * time.Second); counter(sleeps) == 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the ring reader never went to sleep")
				}
			}
			// Quiet: no look at the ring while nothing comes.
			polls := counter(`shadowtee_ring_reader_total{event="polls"}`)
			time.Sleep(200 * time.Millisecond)
			if p := counter(`shadowtee_ring_reader_total{event="polls"}`); p != polls {
				t.Errorf("the reader looked at the ring %v times while nothing came", p-polls)
			}
			woken := counter(wakeups)

			sent := time.Now()
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+sandbox.GatewayIPv4+":8080/get?one", nil)
			req.Host = "shadowing.example"
			resp, err := e.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if !e.shadow.Wait(t.Context(), 1, 10*time.Second) {
				t.Fatal("the request was not mirrored")
			}
			got := e.shadow.Requests()[0]
			t.Logf("%s: mirrored %v after the request was sent", mode, got.Time.Sub(sent).Round(10*time.Microsecond))
			if got.Host != "shadowing.example-shadow" || got.Target != "/get?one" {
				t.Errorf("mirrored %s with Host %s", got.Target, got.Host)
			}
			if w := counter(wakeups); w <= woken {
				t.Errorf("wake-ups %v then %v: the kernel did not wake the reader", woken, w)
			}
		})
	}
}
