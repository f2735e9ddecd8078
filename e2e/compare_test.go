package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/shadowtee/shadowtee/compare"
	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/browser"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// api is a small JSON service. The release (changed false) is the primary;
// the candidate (changed true) is the shadow: /users/{id} answers its age as
// a string instead of a number, /orders/{id} fails with 500, and /health is
// the same but for its timestamps and request ids, which differ on every
// answer of either.
func api(changed bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Date", time.Now().Format(http.TimeFormat))
		stamp := time.Now().Format(time.RFC3339Nano)
		reqID := fmt.Sprintf("%x", time.Now().UnixNano())
		var body any
		switch {
		case strings.HasPrefix(r.URL.Path, "/users/"):
			id := strings.TrimPrefix(r.URL.Path, "/users/")
			var age any = 30
			if changed {
				age = "30"
			}
			body = map[string]any{"id": id, "name": "user " + id, "age": age, "updated": stamp, "request_id": reqID}
		case strings.HasPrefix(r.URL.Path, "/orders/"):
			if changed {
				w.WriteHeader(500)
				body = map[string]any{"error": "boom"}
				break
			}
			body = map[string]any{"id": strings.TrimPrefix(r.URL.Path, "/orders/"), "total": 12.5, "items": []any{map[string]any{"sku": "a", "qty": 1}}}
		case r.URL.Path == "/health":
			body = map[string]any{"ok": true, "time": stamp, "request_id": reqID}
		default:
			w.WriteHeader(404)
			body = map[string]any{}
		}
		json.NewEncoder(w).Encode(body)
	})
}

// apiTraffic sends rounds of requests to every endpoint, each request
// repeated so that the primary's own noise can be learned.
func apiTraffic(t *testing.T, c *http.Client, rounds int) int {
	t.Helper()
	n := 0
	for round := range rounds {
		for _, path := range []string{"/users/1", "/users/2", "/orders/7", "/orders/8", "/health"} {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+sandbox.GatewayIPv4+":8080"+path, nil)
			req.Host = "api.example"
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("round %d %s: %v", round, path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if tr, ok := c.Transport.(*http.Transport); ok && tr.Protocols != nil && tr.Protocols.UnencryptedHTTP2() && resp.ProtoMajor != 2 {
				t.Fatalf("round %d %s: answered over %s, not HTTP/2", round, path, resp.Proto)
			}
			n++
		}
	}
	return n
}

// checkCompareReport checks what the comparison found: the changed field
// type and the changed status, each on its endpoint, and nothing on the
// endpoint whose answers differ only in timestamps and ids.
func checkCompareReport(t *testing.T, r *compare.Report) {
	t.Helper()
	byPath := map[string]compare.EndpointReport{}
	for _, ep := range r.Endpoints {
		byPath[ep.Method+" "+ep.Path] = ep
	}
	fields := func(ep compare.EndpointReport) []string {
		var out []string
		for _, f := range ep.Fields {
			out = append(out, f.Path+":"+f.Kind)
		}
		return out
	}
	users, orders, health := byPath["GET /users/{id}"], byPath["GET /orders/{id}"], byPath["GET /health"]
	if users.Compared == 0 || orders.Compared == 0 || health.Compared == 0 {
		t.Fatalf("endpoints compared: %+v", r.Endpoints)
	}
	if got := fields(users); len(got) != 1 || got[0] != "body.age:type" {
		t.Errorf("/users/{id}: fields %v, want body.age:type", got)
	}
	if got := fields(orders); len(got) == 0 || !strings.Contains(strings.Join(got, ","), "status") {
		t.Errorf("/orders/{id}: fields %v, want status", got)
	}
	if got := fields(health); len(got) != 0 {
		t.Errorf("/health: fields %v, want none (only timestamps and ids differ)", got)
	}
	if orders.Status.Shadow["500"] == 0 || orders.Status.Primary["200"] == 0 {
		t.Errorf("/orders/{id} status counts %+v", orders.Status)
	}
}

// checkPage renders a page in headless Chromium and checks that a user
// sees the endpoints, their counts and a highlighted difference.
func checkPage(t *testing.T, url string, start func(*exec.Cmd) error) {
	t.Helper()
	bin, err := browser.Find()
	if err != nil {
		t.Skip(err)
	}
	dom, err := browser.DumpDOM(t.Context(), bin, url, start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes of DOM", url, len(dom))
	for _, want := range []string{"/users/{id}", "/orders/{id}", "body.age", `class="diff`} {
		if !strings.Contains(dom, want) {
			t.Errorf("%s: the rendered page lacks %q", url, want)
		}
	}
}

// TestE2ECompare mirrors a real API to a changed release of it with
// --compare: /api/compare and the /compare page name exactly the changed
// endpoints. A recording of the same traffic, answers included, replayed
// to the changed release writes a report that says the same. So over
// HTTP/1.1, and over h2c, where answers pair with requests by stream.
func TestE2ECompare(t *testing.T) {
	t.Run("http1", func(t *testing.T) { testCompare(t, false) })
	t.Run("h2c", func(t *testing.T) { testCompare(t, true) })
}

func testCompare(t *testing.T, h2 bool) {
	e := newEnv(t)
	primary, shadowAPI := api(false), api(true)
	c := e.client()
	if h2 {
		primary, shadowAPI = h2c.NewHandler(primary, &http2.Server{}), h2c.NewHandler(shadowAPI, &http2.Server{})
		protocols := new(http.Protocols)
		protocols.SetUnencryptedHTTP2(true)
		c = &http.Client{Timeout: 20 * time.Second,
			Transport: &http.Transport{DialContext: e.topo.Client.DialContext, Protocols: protocols}}
	}
	e.primaryServer.Close()
	serveWhenFree(t, e.topo.Gateway, "[::]:8080", primary)
	e.shadowServer.Close()
	serveWhenFree(t, e.topo.Shadow, sandbox.ShadowIPv4+":8000", shadowAPI)
	e.startAgent("--compare", "--summary", "json")
	rec := filepath.Join(t.TempDir(), "api.pcapng")
	var recOut, recErr lockedBuffer
	recorder, err := agentproc.Start(e.topo.Gateway, binary, []string{"record", "--answers",
		"--iface", sandbox.GatewayIface, "--port", "8080", "--out", rec, "--summary", "json", "--log-format", "json"}, &recOut, &recErr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recorder.WaitReady(t.Context(), 15*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, recErr.String())
	}

	n := apiTraffic(t, c, 20)
	waitAccounted(t, e, n, 15*time.Second)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: e.topo.Gateway.DialContext}}
	var report compare.Report
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := hc.Get("http://" + e.ready.MetricsAddr + "/api/compare")
		if err != nil {
			t.Fatal(err)
		}
		report = compare.Report{}
		err = json.NewDecoder(resp.Body).Decode(&report)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if report.Totals.Compared+report.Totals.Unpaired >= uint64(n) || time.Now().After(deadline) {
			break
		}
	}
	if report.Totals.Compared != uint64(n) {
		t.Errorf("%d of %d compared (%d unpaired)", report.Totals.Compared, n, report.Totals.Unpaired)
	}
	t.Logf("live: %+v", report.Totals)
	checkCompareReport(t, &report)
	checkPage(t, "http://"+e.ready.MetricsAddr+"/compare", e.topo.Gateway.Start)
	m := e.metrics()
	if sumPrefix(m, `shadowtee_compare_total{endpoint="GET /users/{id}",rule="default",verdict="different"}`) == 0 {
		t.Errorf("shadowtee_compare_total has no different /users/{id}")
	}
	proto := "http1"
	if h2 {
		proto = "http2"
	}
	if got := m[`shadowtee_requests_framed_total{proto="`+proto+`"}`]; got != float64(n) {
		t.Errorf("%v requests framed as %s, want %d", got, proto, n)
	}
	if got := m[`shadowtee_rule_shadow_requests_total{proto="`+proto+`",result="mirrored",rule="default"}`]; got != float64(n) {
		t.Errorf("%v requests mirrored over %s, want %d", got, proto, n)
	}
	if code, err := recorder.Stop(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("record exited %d, %v\n%s", code, err, recErr.String())
	}
	sum := stopWithSummary(t, e)
	if sum.Compare == nil || sum.Compare.Compared != uint64(n) {
		t.Errorf("summary compare %+v", sum.Compare)
	}

	// Capture once, test every release: the recording holds the primary's
	// answers.
	dir := t.TempDir()
	html, js := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
	cmd := exec.Command(binary, "replay", "--pcap", rec, "--speed", "max",
		"--shadow", "http://"+sandbox.ShadowIPv4+":8000", "--report", html, "--report-json", js,
		"--progress", "none", "--summary", "json")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := e.topo.Gateway.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var replayed compare.Report
	if err := json.Unmarshal(b, &replayed); err != nil {
		t.Fatal(err)
	}
	if replayed.Totals.Compared != uint64(n) {
		t.Errorf("replay compared %d of %d", replayed.Totals.Compared, n)
	}
	t.Logf("replay: %+v", replayed.Totals)
	checkCompareReport(t, &replayed)
	checkPage(t, "file://"+html, nil)
}
