package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// The fault tests break the shadow, the kernel buffer or an interface in
// one way each, while real clients use the primary. In every one the
// primary answers every request with 200, the agent stays up, its memory
// stays bounded, every request it saw has exactly one end in its metrics
// (mirrored, dropped, failed or skipped, by reason), its exit summary says
// the same, and SIGTERM ends it with status 0.

// agentFaultFlags keep the shadow's failures quick to show.
var agentFaultFlags = []string{"--summary", "json", "--drain-timeout", "1s"}

// TestE2EShadowFaults runs a burst of requests against a shadow that
// misbehaves in one way per case.
func TestE2EShadowFaults(t *testing.T) {
	const requests = 1000
	cases := []struct {
		name    string
		shadow  func(*faultShadow, net.Conn) // nil: nothing listens
		timeout string                       // --shadow-timeout
		n       int                          // requests, when not the default
		wait    time.Duration                // for every request to end
		// allowed are the reasons the ledger may show; mirrored says
		// whether every request must be mirrored (true) or none (false).
		allowed  []string
		mirrored bool
		must     string // a reason that must show
	}{
		{name: "refused", timeout: "1s", wait: 5 * time.Second,
			allowed: []string{"failed/connect", "failed/backoff", "dropped/overflow"}, must: "failed/connect"},
		{name: "never-answers", shadow: silentShadow, timeout: "1s", wait: 8 * time.Second,
			allowed: []string{"failed/timeout", "failed/aborted", "failed/connect", "failed/backoff", "dropped/overflow"}, must: "failed/timeout"},
		{name: "answers-in-200ms/timeout-1s", shadow: slowShadow(200 * time.Millisecond), timeout: "1s", wait: 8 * time.Second,
			mirrored: true},
		{name: "answers-in-200ms/timeout-100ms", shadow: slowShadow(200 * time.Millisecond), timeout: "100ms", wait: 8 * time.Second,
			allowed: []string{"failed/timeout", "failed/aborted", "failed/connect", "failed/backoff", "dropped/overflow"}, must: "failed/timeout"},
		{name: "answers-in-5s/timeout-6s", shadow: slowShadow(5 * time.Second), timeout: "6s", n: 40, wait: 12 * time.Second,
			mirrored: true},
		{name: "answers-in-5s/timeout-1s", shadow: slowShadow(5 * time.Second), timeout: "1s", wait: 8 * time.Second,
			allowed: []string{"failed/timeout", "failed/aborted", "failed/connect", "failed/backoff", "dropped/overflow"}, must: "failed/timeout"},
		{name: "resets-mid-response", shadow: resettingShadow, timeout: "1s", wait: 8 * time.Second,
			allowed: []string{"failed/reset", "failed/aborted", "failed/connect", "failed/backoff", "failed/write", "dropped/overflow"}, must: "failed/reset"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := requests
			if tc.n > 0 {
				n = tc.n
			}
			e := newEnv(t)
			fs := replaceShadow(t, e, tc.shadow)
			e.startAgent(append([]string{"--shadow-timeout", tc.timeout}, agentFaultFlags...)...)
			rss := e.rssKiB()

			took := burst(t, e, "fault", n, 8, true, noBody)
			if took > 5*time.Second {
				t.Errorf("the primary took %v for %d requests: the shadow's fault reached it", took, n)
			}
			l := waitAccounted(t, e, n, tc.wait)
			t.Logf("%d requests in %v; %v; shadow read %d", n, took.Round(time.Millisecond), l, fs.requests.Load())
			if tc.mirrored {
				if l.mirrored != float64(n) {
					t.Errorf("%v of %d mirrored, want all: %v", l.mirrored, n, l)
				}
				// A slow shadow gets a connection per request in flight, as
				// an in-proxy mirror's pool does, and never more than the
				// circuit breaker allows.
				c := sumPrefix(e.metrics(), "shadowtee_shadow_connections_opened_total")
				if c < 2 || c > 1024 {
					t.Errorf("%v connections opened to a slow shadow; want more than one, at most the 1024 of the circuit breaker", c)
				}
				if got := fs.requests.Load(); got != int64(n) {
					t.Errorf("the shadow read %d requests, want %d: one each, none twice", got, n)
				}
			} else {
				if l.mirrored != 0 {
					t.Errorf("%v mirrored, want none: %v", l.mirrored, l)
				}
				onlyReasons(t, l, tc.allowed...)
				if l.reasons[tc.must] == 0 {
					t.Errorf("no %s counted: %v", tc.must, l)
				}
			}
			checkRSS(t, e, rss)
			checkSummary(t, stopWithSummary(t, e), l)
		})
	}
}

// TestE2EShadowBlackholed drops every packet towards the shadow's port in
// the shadow's namespace (SYNs included), so that connecting hangs: the
// primary must not notice, the mirrors fail (connect, timeout) or are
// dropped past the circuit breakers, and nothing reaches the shadow.
func TestE2EShadowBlackholed(t *testing.T) {
	requireRoot(t)
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		t.Skip("iptables is not installed")
	}
	e := newEnv(t)
	cmd := exec.CommandContext(timeoutCtx(t, 10*time.Second), ipt, "-w", "-A", "INPUT", "-p", "tcp", "--dport", "8000", "-j", "DROP")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := e.topo.Shadow.Start(cmd); err != nil {
		t.Skipf("iptables: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Skipf("iptables in the shadow namespace: %v: %s", err, out.String())
	}
	// The rule is in force: a connection attempt from the gateway hangs.
	if c, err := e.topo.Gateway.DialContext(timeoutCtx(t, 300*time.Millisecond), "tcp", sandbox.ShadowIPv4+":8000"); err == nil {
		c.Close()
		t.Fatal("the shadow still accepts connections through the DROP rule")
	}

	e.startAgent(append([]string{"--shadow-timeout", "1s"}, agentFaultFlags...)...)
	rss := e.rssKiB()
	const n = 1000
	if took := burst(t, e, "blackhole", n, 8, true, noBody); took > 5*time.Second {
		t.Errorf("the primary took %v for %d requests with the shadow blackholed", took, n)
	}
	l := waitAccounted(t, e, n, 8*time.Second)
	t.Log(l)
	if l.mirrored != 0 || e.shadow.Len() != 0 {
		t.Errorf("%v mirrored, shadow received %d, through a DROP rule", l.mirrored, e.shadow.Len())
	}
	// Connecting hangs until the request's timeout, or fails: either way,
	// counted against the shadow.
	onlyReasons(t, l, "failed/connect", "failed/timeout", "failed/backoff", "dropped/overflow")
	if l.reasons["failed/connect"]+l.reasons["failed/timeout"] == 0 {
		t.Errorf("no connect failure or timeout counted: %v", l)
	}
	checkRSS(t, e, rss)
	checkSummary(t, stopWithSummary(t, e), l)
}

// TestE2ERingOverflow gives the kernel a tiny ring buffer (4 KiB, the
// minimum, where no record of a 4 KiB payload fits; and 128 KiB, where one
// 64 KiB record does) and sends a burst of concurrent POSTs of 16 to
// 64 KiB, one connection each. The primary must not notice, the kernel
// must count its drops, and the metrics must explain every request that
// did not reach the shadow: a framed one ends as skipped (incomplete), one
// never framed lost its head in the kernel; each lost at least one copy
// there (ring_full) and shows in its stream (a gap, a start or an end
// missing, or no stream at all).
func TestE2ERingOverflow(t *testing.T) {
	for _, ring := range []string{"4KiB", "128KiB"} {
		t.Run(ring, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.startAgent(append([]string{"--ring-size", ring, "--shadow-timeout", "1s",
				"--gap-timeout", "200ms", "--idle-timeout", "1s"}, agentFaultFlags...)...)
			rss := e.rssKiB()
			const n = 64
			bodies := make([][]byte, n)
			for i := range bodies {
				bodies[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, 16<<10+i*(48<<10)/n)
			}
			if took := burst(t, e, "ring", n, 16, false, func(i int) []byte { return bodies[i] }); took > 10*time.Second {
				t.Errorf("the primary took %v for %d POSTs", took, n)
			}
			if got := e.primary.Len(); got != n {
				t.Fatalf("primary received %d of %d requests", got, n)
			}
			// Wait until every stream has ended (idle expiry at the latest)
			// and every framed request with it.
			var m map[string]float64
			var l ledger
			deadline := time.Now().Add(10 * time.Second)
			for {
				m = e.metrics()
				l = readLedger(m)
				if m["shadowtee_streams_active"] == 0 && l.accounted() == l.framed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("streams still active or requests without an end: %v active, %v", m["shadowtee_streams_active"], l)
				}
				time.Sleep(50 * time.Millisecond)
			}
			ringFull := m[`shadowtee_packet_drops_total{reason="ring_full"}`]
			gaps := m["shadowtee_stream_gaps_total"]
			t.Logf("ring_full %v, streams opened %v (mid-stream %v, expired %v), gaps %v; %v; shadow received %d",
				ringFull, m[`shadowtee_streams_total{event="opened"}`], m[`shadowtee_streams_total{event="joined_mid_stream"}`],
				m[`shadowtee_streams_total{event="expired"}`], gaps, l, e.shadow.Len())
			if ringFull == 0 {
				t.Error("no ring_full drop counted")
			}
			if l.framed > n || l.mirrored != float64(e.shadow.Len()) {
				t.Errorf("framed %v of %d sent, mirrored %v, shadow received %d", l.framed, n, l.mirrored, e.shadow.Len())
			}
			onlyReasons(t, l, "skipped/incomplete")
			// Each connection carried one request. One never framed lost its
			// head in the kernel, and its stream shows it: a hole before
			// later bytes or the FIN (a gap), a SYN lost before later bytes
			// (joined mid-stream), nothing after the SYN or the last bytes
			// (expired idle), or nothing at all (never opened).
			opened := m[`shadowtee_streams_total{event="opened"}`]
			mid := m[`shadowtee_streams_total{event="joined_mid_stream"}`]
			expired := m[`shadowtee_streams_total{event="expired"}`]
			// A request framed but cut (incomplete) shows it the same way.
			unframed := n - l.framed
			lost := unframed + l.reasons["skipped/incomplete"]
			if lost != n-l.mirrored {
				t.Errorf("%v requests lost, %v not mirrored", lost, n-l.mirrored)
			}
			if lost > ringFull {
				t.Errorf("%v requests lost, more than the %v copies the kernel dropped", lost, ringFull)
			}
			if signs := gaps + mid + expired + max(0, n-opened); lost > signs {
				t.Errorf("%v requests lost (%v never framed), only %v show in the streams (gaps %v, mid-stream %v, expired %v, unseen %v)",
					lost, unframed, signs, gaps, mid, expired, max(0, n-opened))
			}
			checkRSS(t, e, rss)
			sum := stopWithSummary(t, e)
			if sum.Packets == nil || sum.Packets.Dropped["ring_full"] == 0 {
				t.Errorf("the summary does not show the kernel's drops: %+v", sum.Packets)
			}
			checkSummary(t, sum, l)
		})
	}
}

// TestE2EInterfaceGone attaches to two interfaces by name, sends traffic
// over both, then deletes one in the middle of a request: the agent goes on
// mirroring the other, counts the request cut, and exits 0 on SIGTERM, in
// both attach modes.
func TestE2EInterfaceGone(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			if err := e.topo.Veth(e.topo.Gateway, "late0", []string{"198.18.2.2/24"}, e.topo.Client, "clate0", []string{"198.18.2.1/24"}); err != nil {
				t.Fatal(err)
			}
			e.startAgent(append([]string{"--iface", "g0,late0", "--attach-mode", mode, "--shadow-timeout", "1s"}, agentFaultFlags...)...)
			if len(e.ready.Interfaces) != 2 {
				t.Fatalf("attached to %v, want g0 and late0", e.ready.Interfaces)
			}
			c := e.client()
			getOK := func(url string) {
				t.Helper()
				resp, err := c.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("%s: %d", url, resp.StatusCode)
				}
			}
			for i := range 5 {
				getOK(fmt.Sprintf("http://198.18.2.2:8080/anything/late/%d", i))
				getOK(fmt.Sprintf("http://%s:8080/anything/g0/%d", sandbox.GatewayIPv4, i))
			}
			if !e.shadow.Wait(t.Context(), 10, 10*time.Second) {
				t.Fatalf("shadow received %d of 10", e.shadow.Len())
			}
			c.CloseIdleConnections()
			// A request half sent over late0 when it goes is lost; it must
			// be counted (incomplete) by the exit at the latest.
			half := e.dial("198.18.2.2:8080")
			defer half.Close()
			io.WriteString(half, "POST /anything/half HTTP/1.1\r\nHost: shadowing.example\r\nContent-Length: 100\r\n\r\nonly part")
			waitMetric(t, e, `shadowtee_requests_total{result="framed"}`, 11)

			if err := e.topo.Gateway.LinkDel("late0"); err != nil {
				t.Fatal(err)
			}
			e.shadow.Reset()
			get(t, e, "after", 20)
			if !e.shadow.Wait(t.Context(), 20, 10*time.Second) {
				t.Fatalf("after late0 went, the shadow received %d of 20 requests over g0", e.shadow.Len())
			}
			// The agent counts a mirror once it has read the shadow's answer,
			// a moment after the shadow saw the request.
			waitMetric(t, e, `shadowtee_requests_total{result="mirrored"}`, 30)
			m := e.metrics()
			if got := m[`shadowtee_requests_total{result="mirrored"}`]; got != 30 {
				t.Errorf("%v mirrored, want 30", got)
			}
			sum := stopWithSummary(t, e)
			q := sum.Requests
			if q.Framed != 31 || q.Mirrored != 30 || q.Skipped["incomplete"] != 1 || len(q.Skipped) != 1 {
				t.Errorf("summary: framed %d, mirrored %d, skipped %v; want 31, 30 and 1 incomplete", q.Framed, q.Mirrored, q.Skipped)
			}
			if n := ourFilters(t, e); n != 0 {
				t.Errorf("%d filters of ours left on g0", n)
			}

		})
	}
}
