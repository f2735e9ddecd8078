package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// configMap lays out a directory the way a Kubernetes ConfigMap volume
// does: rules.yaml -> ..data/rules.yaml, ..data -> a timestamped directory,
// and an update swaps the ..data symlink atomically.
type configMap struct {
	t   *testing.T
	dir string
	gen int
}

func newConfigMap(t *testing.T, content string) *configMap {
	cm := &configMap{t: t, dir: t.TempDir()}
	cm.update(content)
	if err := os.Symlink(filepath.Join("..data", "rules.yaml"), filepath.Join(cm.dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	return cm
}

func (cm *configMap) path() string { return filepath.Join(cm.dir, "rules.yaml") }

func (cm *configMap) update(content string) {
	cm.gen++
	ts := fmt.Sprintf("..2026_11_25_00_00_%02d.%d", cm.gen, cm.gen)
	if err := os.Mkdir(filepath.Join(cm.dir, ts), 0o755); err != nil {
		cm.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cm.dir, ts, "rules.yaml"), []byte(content), 0o644); err != nil {
		cm.t.Fatal(err)
	}
	tmp := filepath.Join(cm.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		cm.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(cm.dir, "..data")); err != nil {
		cm.t.Fatal(err)
	}
}

const rulesV1 = `rules:
  - name: api
    match: {ports: [8080], hosts: ["shadowing.example"]}
    shadow: {url: "http://198.18.1.3:8000"}
`

const rulesV2 = `rules:
  - name: api
    match: {ports: [8080], hosts: ["shadowing.example", "other.example"]}
    shadow: {url: "http://198.18.1.3:8000"}
  - name: admin
    match: {ports: [9090]}
    shadow: {url: "http://198.18.1.3:8000"}
    headers: {set: {x-shadow-rule: admin}}
`

const rulesBroken = `rules:
  - name: api
    match: {ports: [8080]}
    shadow: {url: "http://198.18.1.3:8000"}
    percentage: 150
`

// TestE2EConfigReload changes the rules of a running agent through a
// ConfigMap-style symlink swap while requests flow: the new rules apply to
// the next requests, the kernel filter follows their ports, none of the
// requests in flight is lost, and an invalid file leaves the rules in force.
func TestE2EConfigReload(t *testing.T) {
	e := newEnv(t)
	e.serve(e.topo.Gateway, "[::]:9090", e.primary)
	cm := newConfigMap(t, rulesV1)
	e.startAgent("--config", cm.path(), "--iface", sandbox.GatewayIface)

	send := func(port int, host, path string) {
		t.Helper()
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s:%d%s", sandbox.GatewayIPv4, port, path), nil)
		req.Host = host
		resp, err := e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// Requests in flight across every reload: one every 5 ms for 1.5 s.
	var wg sync.WaitGroup
	flowing := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := e.client()
		for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); flowing++ {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s:8080/anything/flow/%d", sandbox.GatewayIPv4, flowing), nil)
			req.Host = "shadowing.example"
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	send(8080, "other.example", "/anything/v1/other") // no rule yet
	send(9090, "admin.example", "/anything/v1/admin") // port not watched yet
	cm.update(rulesV2)
	waitMetric(t, e, `shadowtee_config_reloads_total{result="ok"}`, 1)
	send(8080, "other.example", "/anything/v2/other")
	send(9090, "admin.example", "/anything/v2/admin")

	cm.update(rulesBroken)
	waitMetric(t, e, `shadowtee_config_reloads_total{result="failed"}`, 1)
	if err := e.agent.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e, `shadowtee_config_reloads_total{result="failed"}`, 2)
	send(9090, "admin.example", "/anything/v3/admin") // the V2 rules are still in force
	wg.Wait()

	want := flowing + 3
	if !e.shadow.Wait(t.Context(), want, 10*time.Second) {
		t.Fatalf("shadow received %d of %d", e.shadow.Len(), want)
	}
	time.Sleep(300 * time.Millisecond)
	got := map[string]int{}
	for _, r := range e.shadow.Requests() {
		got[r.Target]++
		if strings.Contains(r.Target, "admin") && r.Header.Get("X-Shadow-Rule") != "admin" {
			t.Errorf("%s: the admin rule's header is missing", r.Target)
		}
	}
	for i := range flowing {
		if n := got[fmt.Sprintf("/anything/flow/%d", i)]; n != 1 {
			t.Errorf("request %d in flight during the reloads reached the shadow %d times", i, n)
		}
	}
	for path, n := range map[string]int{"/anything/v1/other": 0, "/anything/v1/admin": 0,
		"/anything/v2/other": 1, "/anything/v2/admin": 1, "/anything/v3/admin": 1} {
		if got[path] != n {
			t.Errorf("%s reached the shadow %d times, want %d", path, got[path], n)
		}
	}
	m := e.metrics()
	if m[`shadowtee_requests_skipped_total{reason="no_rule"}`] < 1 {
		t.Error("the request without a rule was not counted as no_rule")
	}
	if m[`shadowtee_rule_requests_total{result="mirrored",rule="admin"}`] != 2 {
		t.Errorf("rule admin mirrored %v, want 2", m[`shadowtee_rule_requests_total{result="mirrored",rule="admin"}`])
	}
}
