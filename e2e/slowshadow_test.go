package e2e

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// TestE2ESlowShadow mirrors to a shadow that behaves like a real service:
// every answer takes 20 to 200 ms, some close the connection, and every
// connection is closed after 50 answers (nginx's keepalive_requests). Every
// request must reach the shadow exactly once, with the Envoy-form Host, and
// the mirrors must not wait for each other's answers.
func TestE2ESlowShadow(t *testing.T) {
	e := newEnv(t)
	e.shadowServer.Close()
	var perConn sync.Map // remote address -> *atomic.Int64
	var inFlight, peak atomic.Int64
	slow := recorder.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20*time.Millisecond + rand.N(180*time.Millisecond))
		v, _ := perConn.LoadOrStore(r.RemoteAddr, new(atomic.Int64))
		if served := v.(*atomic.Int64).Add(1); served >= 50 || rand.N(20) == 0 {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte("ok"))
	}))
	serveWhenFree(t, e.topo.Shadow, sandbox.ShadowIPv4+":8000", slow)
	e.startAgent("--summary", "json")

	const n = 2000
	took := burst(t, e, "slow", n, 16, true, noBody)
	l := waitAccounted(t, e, n, 20*time.Second)
	t.Logf("%d requests in %v; %v; peak %d in flight at the shadow", n, took.Round(time.Millisecond), l, peak.Load())
	if l.mirrored != n {
		t.Errorf("%v of %d mirrored: %v", l.mirrored, n, l)
	}
	seen := map[string]int{}
	for _, r := range slow.Requests() {
		seen[r.Target]++
		if r.Host != "shadowing.example-shadow" {
			t.Errorf("%s: Host %q, want shadowing.example-shadow", r.Target, r.Host)
		}
	}
	for target, k := range seen {
		if k != 1 || !strings.HasPrefix(target, "/anything/slow/") {
			t.Errorf("%s reached the shadow %d times", target, k)
		}
	}
	if len(seen) != n {
		t.Errorf("the shadow saw %d distinct requests, want %d", len(seen), n)
	}
	if peak.Load() < 2 {
		t.Errorf("the shadow never had two requests at once: mirrors waited for each other")
	}
	checkSummary(t, stopWithSummary(t, e), l)
}
