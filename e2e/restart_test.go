package e2e

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// TestE2EKilledAgentRestart kills the agent with SIGKILL while attached:
// traffic must keep flowing, and a restarted agent must replace what the
// dead one left, so that every request is mirrored once, not twice.
func TestE2EKilledAgentRestart(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.startAgent("--attach-mode", mode)
			get(t, e, "before", 3)
			if !e.shadow.Wait(t.Context(), 3, 10*time.Second) {
				t.Fatalf("shadow received %d of 3", e.shadow.Len())
			}

			e.agent.Kill()
			get(t, e, "while-dead", 20) // the primary must not notice
			left := ourFilters(t, e)
			if mode == "tc" && left != 1 {
				t.Errorf("tc mode: %d filters of ours after SIGKILL, want the 1 left behind", left)
			}
			if mode == "tcx" && left != 0 {
				t.Errorf("tcx mode: %d tc filters of ours", left)
			}

			e.shadow.Reset()
			e.startAgent("--attach-mode", mode)
			if n := ourFilters(t, e); mode == "tc" && n != 1 || mode == "tcx" && n != 0 {
				t.Errorf("%s mode: %d tc filters of ours after restart", mode, n)
			}
			get(t, e, "after", 10)
			if !e.shadow.Wait(t.Context(), 10, 10*time.Second) {
				t.Fatalf("after restart the shadow received %d of 10", e.shadow.Len())
			}
			time.Sleep(300 * time.Millisecond)
			seen := map[string]int{}
			for _, r := range e.shadow.Requests() {
				seen[r.Target]++
			}
			for target, n := range seen {
				if n != 1 || !strings.HasPrefix(target, "/anything/after/") {
					t.Errorf("after restart the shadow received %s %d times", target, n)
				}
			}
			if code := e.stopAgent(); code != 0 {
				t.Errorf("agent exited with %d", code)
			}
			if n := ourFilters(t, e); n != 0 {
				t.Errorf("%d filters of ours left after a clean exit", n)
			}
		})
	}
}

// get sends n GETs to the primary and requires 200 for each.
func get(t *testing.T, e *env, tag string, n int) {
	t.Helper()
	c := e.client()
	for i := range n {
		resp, err := c.Get(fmt.Sprintf("http://%s:8080/anything/%s/%d", sandbox.GatewayIPv4, tag, i))
		if err != nil {
			t.Fatalf("primary request %s/%d: %v", tag, i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("primary request %s/%d: status %d", tag, i, resp.StatusCode)
		}
	}
}

// ourFilters counts the shadowtee tc filters on the gateway's interface.
func ourFilters(t *testing.T, e *env) int {
	t.Helper()
	nl := e.topo.Gateway.Netlink()
	link, err := nl.LinkByName(sandbox.GatewayIface)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := nl.FilterList(link, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return 0 // no clsact qdisc at all
	}
	n := 0
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, "shadowtee") {
			n++
		}
	}
	return n
}
