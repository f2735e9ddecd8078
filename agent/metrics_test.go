package agent

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The endpoints answer as the probes and Prometheus expect; the profiler
// only when asked for.
func TestMetricsEndpoints(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		st := &stats{start: time.Now(), mirror: newMirror(slog.Default(), time.Second)}
		c := newCollector(st, func() []ReadyInterface { return []ReadyInterface{{Name: "g0", Mode: "tcx"}} }, func() int { return 3 })
		m, err := startMetrics("127.0.0.1:0", c, pprof)
		if err != nil {
			t.Fatal(err)
		}
		get := func(path string) (int, string) {
			resp, err := http.Get("http://" + m.addr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := get("/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
		if code, _ := get("/readyz"); code != 503 {
			t.Errorf("/readyz before ready: %d, want 503", code)
		}
		m.ready.Store(true)
		if code, _ := get("/readyz"); code != 200 {
			t.Errorf("/readyz when ready: %d", code)
		}
		code, body := get("/metrics")
		if code != 200 || !strings.Contains(body, `shadowtee_attached{iface="g0",mode="tcx"} 1`) || !strings.Contains(body, "shadowtee_streams_active 3") {
			t.Errorf("/metrics: %d\n%s", code, body)
		}
		want := 404
		if pprof {
			want = 200
		}
		if code, _ := get("/debug/pprof/"); code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", pprof, code, want)
		}
		m.close()
	}
}
