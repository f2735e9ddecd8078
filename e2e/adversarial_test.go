package e2e

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// TestE2EMalformedInput sends what no client should over real TCP
// connections to the primary: random bytes, a header block of 1 MiB, a
// chunked body with an invalid chunk size, and a request whose head
// announces a body of 1 GiB followed by 2 MiB of it. The primary may refuse
// them; the agent must survive, count each by reason, mirror none of them,
// keep its memory, and go on mirroring the valid request that follows.
func TestE2EMalformedInput(t *testing.T) {
	e := newEnv(t)
	e.startAgent(append([]string{"--shadow-timeout", "1s"}, agentFaultFlags...)...)
	rss := e.rssKiB()
	addr := sandbox.GatewayIPv4 + ":8080"

	// send writes each part on a new connection, then reads whatever the
	// primary answers (it may answer an error and close, or reset).
	send := func(parts ...[]byte) {
		t.Helper()
		c := e.dial(addr)
		defer c.Close()
		for _, p := range parts {
			if _, err := c.Write(p); err != nil {
				break // the primary refused and closed: expected
			}
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite() // the primary sees the end of what is coming
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, bufio.NewReader(c))
	}

	garbage := make([]byte, 4096)
	rand.Read(garbage)
	garbage[0] = 0x16 // not a letter: no request line can start here
	send(garbage)

	send([]byte("GET /anything/bighead HTTP/1.1\r\nHost: shadowing.example\r\nX-Big: "),
		[]byte(strings.Repeat("a", 1<<20)), []byte("\r\n\r\n"))

	send([]byte("POST /anything/badchunk HTTP/1.1\r\nHost: shadowing.example\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"zz\r\nhello\r\n0\r\n\r\n"))

	// The primary reads a body as its handler asks; go-httpbin's /anything
	// reads it whole, so give it only a slice of the announced 1 GiB and
	// close.
	send([]byte("POST /anything/huge HTTP/1.1\r\nHost: shadowing.example\r\nContent-Length: 1073741824\r\n\r\n"),
		[]byte(strings.Repeat("b", 2<<20)))

	// A valid request after all that is mirrored.
	resp, err := e.client().Get("http://" + addr + "/anything/valid")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("valid request: primary answered %d", resp.StatusCode)
	}
	if !e.shadow.Wait(t.Context(), 1, 10*time.Second) {
		t.Fatal("the valid request after the malformed ones was not mirrored")
	}

	var l ledger
	deadline := time.Now().Add(5 * time.Second)
	for {
		l = readLedger(e.metrics())
		if l.mirrored >= 1 && l.reasons["skipped/header_too_large"] >= 1 && l.reasons["skipped/malformed"] >= 2 && l.reasons["skipped/body_too_large"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the malformed input is not counted by reason: %v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let a wrongly mirrored request show
	t.Log(l)
	for _, r := range e.shadow.Requests() {
		if r.Target != "/anything/valid" {
			t.Errorf("the shadow received %s %s", r.Method, r.Target)
		}
	}
	if e.shadow.Len() != 1 || l.mirrored != 1 {
		t.Errorf("shadow received %d requests, metrics say %v mirrored; want 1", e.shadow.Len(), l.mirrored)
	}
	// Each input has exactly one end: the random bytes and the bad chunk
	// are malformed, the rest as named.
	onlyReasons(t, l, "skipped/header_too_large", "skipped/malformed", "skipped/body_too_large")
	if l.reasons["skipped/header_too_large"] != 1 || l.reasons["skipped/malformed"] != 2 || l.reasons["skipped/body_too_large"] != 1 {
		t.Errorf("want header_too_large 1, malformed 2, body_too_large 1: %v", l)
	}
	checkRSS(t, e, rss)
	sum := stopWithSummary(t, e)
	if sum.Requests.Mirrored != 1 {
		t.Errorf("summary: %+v", sum.Requests)
	}
}

// TestE2EStreamAcrossFirstTick opens a connection right after the agent is
// ready and sends a request in two parts 300 ms apart: it must be mirrored.
// With segments stamped by a clock far behind the wall clock (tee.c once
// left the timestamp at 0, the boot time), the reassembly clock jumped
// forward at the workers' first Tick, 100 ms after the start, and such a
// stream was expired as idle for hours, its request skipped as incomplete.
func TestE2EStreamAcrossFirstTick(t *testing.T) {
	e := newEnv(t)
	e.startAgent(agentFaultFlags...)
	c := e.dial(sandbox.GatewayIPv4 + ":8080")
	defer c.Close()
	io.WriteString(c, "POST /anything/early HTTP/1.1\r\nHost: shadowing.example\r\nContent-Length: 10\r\n\r\nhello")
	time.Sleep(300 * time.Millisecond)
	io.WriteString(c, "world")
	if codes := readResponses(t, c, 1); codes[0] != 200 {
		t.Fatalf("primary answered %d", codes[0])
	}
	if !e.shadow.Wait(t.Context(), 1, 5*time.Second) {
		m := e.metrics()
		t.Fatalf("not mirrored: streams expired %v, joined mid-stream %v, skipped incomplete %v",
			m[`shadowtee_streams_total{event="expired"}`], m[`shadowtee_streams_total{event="joined_mid_stream"}`],
			m[`shadowtee_requests_skipped_total{reason="incomplete"}`])
	}
	stopWithSummary(t, e)
}

// TestE2EInterfaceGoneNotReported deletes an interface that the agent was
// told by name (--iface g0,late0): the agent must stop reporting it as
// attached.
func TestE2EInterfaceGoneNotReported(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			if err := e.topo.Veth(e.topo.Gateway, "late0", []string{"198.18.2.2/24"}, e.topo.Client, "clate0", []string{"198.18.2.1/24"}); err != nil {
				t.Fatal(err)
			}
			e.startAgent("--iface", "g0,late0", "--attach-mode", mode)
			name := fmt.Sprintf(`shadowtee_attached{iface="late0",mode=%q}`, mode)
			if e.metrics()[name] != 1 {
				t.Fatalf("%s not reported at start", name)
			}
			if err := e.topo.Gateway.LinkDel("late0"); err != nil {
				t.Fatal(err)
			}
			waitMetric(t, e, `shadowtee_interface_events_total{event="detached"}`, 1)
			if _, ok := e.metrics()[name]; ok {
				t.Errorf("%s still reported after late0 was deleted", name)
			}
			if code := e.stopAgent(); code != 0 {
				t.Errorf("agent exited with %d", code)
			}
		})
	}
}
