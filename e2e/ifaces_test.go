package e2e

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// TestE2EInterfaceAppears starts the agent on a glob that matches nothing
// yet, then creates a matching interface, as a pod's veth appears: it must
// be attached and its traffic mirrored; when it goes, it is detached.
func TestE2EInterfaceAppears(t *testing.T) {
	e := newEnv(t)
	e.startAgent("--iface", "late*")
	if n := len(e.ready.Interfaces); n != 0 {
		t.Fatalf("attached to %d interfaces at start, want none", n)
	}
	if err := e.topo.Veth(e.topo.Gateway, "late0", []string{"198.18.2.2/24"}, e.topo.Client, "clate0", []string{"198.18.2.1/24"}); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e, `shadowtee_attached{iface="late0",mode="tcx"}`, 1)

	c := e.client()
	for i := range 5 {
		resp, err := c.Get(fmt.Sprintf("http://198.18.2.2:8080/anything/late/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if !e.shadow.Wait(t.Context(), 5, 10*time.Second) {
		t.Fatalf("shadow received %d of 5 requests sent over the new interface", e.shadow.Len())
	}

	if err := e.topo.Gateway.LinkDel("late0"); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e, `shadowtee_interface_events_total{event="detached"}`, 1)
	if code := e.stopAgent(); code != 0 {
		t.Errorf("agent exited with %d", code)
	}
}

// TestE2EAutoInterfaces attaches to every interface that is up.
func TestE2EAutoInterfaces(t *testing.T) {
	e := newEnv(t)
	e.startAgent("--iface", "auto")
	names := map[string]bool{}
	for _, i := range e.ready.Interfaces {
		names[i.Name] = true
	}
	if len(names) != 2 || !names["g0"] || !names["g1"] {
		t.Errorf("auto attached to %v, want g0 and g1 (lo excluded)", e.ready.Interfaces)
	}
	get(t, e, "auto", 3)
	if !e.shadow.Wait(t.Context(), 3, 10*time.Second) {
		t.Fatalf("shadow received %d of 3", e.shadow.Len())
	}
}

// waitMetric waits until a metric reaches at least want.
func waitMetric(t *testing.T, e *env, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := e.metrics()
		if m[name] >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", name, m[name], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
