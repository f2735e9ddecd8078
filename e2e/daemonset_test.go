package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/deploy"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// pod is a network namespace joined to the node by a veth, as a CNI plugin
// would make it: nodeIf on the node, eth0 in the pod, a /24 per pod.
type pod struct {
	ns     *sandbox.Netns
	nodeIf string
	ip     string
}

func addPod(t *testing.T, sb *sandbox.Sandbox, node *sandbox.Netns, name string, subnet int) *pod {
	t.Helper()
	ns, err := sb.Netns(name)
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{ns: ns, nodeIf: "veth" + name, ip: fmt.Sprintf("198.18.%d.2", subnet)}
	gw := fmt.Sprintf("198.18.%d.1", subnet)
	if err := sb.Veth(node, p.nodeIf, []string{gw + "/24"}, ns, "eth0", []string{p.ip + "/24"}); err != nil {
		t.Fatal(err)
	}
	if err := ns.DefaultRoute(gw); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EDaemonSet runs the agent exactly as the DaemonSet of the
// product page's example runs it (the container's args and environment, the
// ConfigMap's rules at the mounted path, the Service name of the shadow
// resolved as the cluster would) in a namespace that plays the node, with
// pods joined by veths before and after the start. The probes must answer
// and a client pod's requests to httpbin must reach the shadow.
func TestE2EDaemonSet(t *testing.T) {
	requireRoot(t)
	objs, err := deploy.Render("../deploy/examples/shadowing")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := deploy.AgentSpec(objs)
	if err != nil {
		t.Fatal(err)
	}

	sb, err := sandbox.New("stee-node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	node, err := sb.Netns("node")
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	app := addPod(t, sb, node, "httpbin", 5)
	shadowPod := addPod(t, sb, node, "shadow", 6)
	primary, shadowed := recorder.New(httpbin.New()), recorder.New(nil)
	for _, s := range []struct {
		ns *sandbox.Netns
		h  http.Handler
	}{{app.ns, primary}, {shadowPod.ns, shadowed}} {
		ln, err := s.ns.Listen("tcp", ":8080")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: s.h}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}

	// The container's file system: /etc/shadowtee holds the ConfigMap the
	// way the kubelet lays it out, and /etc/hosts resolves the shadow's
	// Service as cluster DNS would.
	etc := t.TempDir()
	cmDir := filepath.Join(etc, "shadowtee")
	if err := os.MkdirAll(filepath.Join(cmDir, "..2026_11_25_00_00_00.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range spec.Files {
		writeFile(t, filepath.Join(cmDir, "..2026_11_25_00_00_00.1", name), content)
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(cmDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..2026_11_25_00_00_00.1", filepath.Join(cmDir, "..data")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(etc, "hosts"), "127.0.0.1 localhost\n"+shadowPod.ip+" httpbin.shadow.svc.cluster.local\n")
	if spec.ConfigDir != "/etc/shadowtee" {
		t.Fatalf("the ConfigMap is mounted at %s; this test mounts it at /etc/shadowtee", spec.ConfigDir)
	}

	// A private mount namespace puts that /etc in place for the agent only.
	script := `mount --bind "$1" /etc && shift && exec "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", etc, imageBinary}, spec.Args...)...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, spec.Env...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := node.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s\nstdout:\n%s", stderr.String(), stdout.String())
		}
	})

	// The kubelet's probes, on the port the container declares.
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: node.DialContext}}
	waitHTTP(t, probe, "http://127.0.0.1:9090/healthz", exited, &exitErr)
	waitHTTP(t, probe, "http://127.0.0.1:9090/readyz", exited, &exitErr)

	// A pod scheduled after the agent started: its veth must be attached.
	client := addPod(t, sb, node, "client", 7)
	waitMetricAt(t, probe, `shadowtee_attached{iface="vethclient",mode="tcx"}`)

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: client.ns.DialContext}}
	for i := range 5 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s:8080/anything/ds/%d", app.ip, i), nil)
		req.Host = "shadowing.example"
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("httpbin answered %d", resp.StatusCode)
		}
	}
	if !shadowed.Wait(t.Context(), 5, 10*time.Second) {
		t.Fatalf("the shadow received %d of 5 requests", shadowed.Len())
	}
	time.Sleep(300 * time.Millisecond) // duplicates, a loop through the shadow, would show now
	for _, r := range shadowed.Requests() {
		if r.Host != "shadowing.example-shadow" {
			t.Errorf("shadow saw Host %q", r.Host)
		}
	}
	if n := shadowed.Len(); n != 5 {
		t.Errorf("the shadow received %d requests, want 5", n)
	}

	// The kubelet stops a pod with SIGTERM.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("agent exited: %v", exitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop")
	}
	var sum agent.Summary // SHADOWTEE_SUMMARY=json in the DaemonSet
	if err := json.Unmarshal([]byte(stdout.String()), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, stdout.String())
	}
	if sum.Requests.Mirrored != 5 {
		t.Errorf("summary: %d mirrored, want 5", sum.Requests.Mirrored)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitHTTP waits until url answers 200, failing if the agent exits.
func waitHTTP(t *testing.T, c *http.Client, url string, exited <-chan struct{}, exitErr *error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("agent exited: %v", *exitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200", url)
		}
	}
}

// waitMetricAt waits until a metric line is present on the agent.
func waitMetricAt(t *testing.T, c *http.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := c.Get("http://127.0.0.1:9090/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), name+" 1") {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("metric %s never appeared", name)
}
