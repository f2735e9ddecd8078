package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// TestE2EMissingCapabilities runs the agent without the capabilities that
// open the kernel to it: it must fail at once, saying which ones it lacks.
func TestE2EMissingCapabilities(t *testing.T) {
	requireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	topo, err := sandbox.NewTopology("stee-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Without CAP_SYS_ADMIN too, which would stand in for the others.
	cmd := exec.CommandContext(ctx, setpriv, "--bounding-set", "-bpf,-perfmon,-sys_admin",
		binary, "attach", "--iface", sandbox.GatewayIface, "--port", "8080",
		"--shadow", "http://"+sandbox.ShadowIPv4+":8000", "--log-format", "text")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := topo.Gateway.Start(cmd); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d (%v), want 1:\n%s", code, err, stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "lacks CAP_BPF, CAP_PERFMON") {
		t.Errorf("the error does not name the missing capabilities:\n%s", msg)
	}
}
