package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
	"github.com/shadowtee/shadowtee/shadow"
)

// TestE2EMirror is the product's promise, end to end: every request that
// reaches the primary reaches the shadow exactly once, with Host suffixed
// and everything else identical, in both attach modes; and when the shadow
// dies, the primary does not notice and the agent's memory stays bounded.
func TestE2EMirror(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.startAgent("--attach-mode", mode)
			if got := e.ready.Interfaces[0].Mode; got != mode {
				t.Fatalf("attached with %s, asked for %s", got, mode)
			}
			sendMix(t, e)

			want := e.primary.Len()
			if !e.shadow.Wait(t.Context(), want, 10*time.Second) {
				t.Fatalf("shadow received %d of %d requests", e.shadow.Len(), want)
			}
			// Give duplicates, if any, the time to show up.
			time.Sleep(300 * time.Millisecond)
			checkMirrored(t, e.primary.Requests(), e.shadow.Requests())

			m := e.metrics()
			if got := m[`shadowtee_requests_total{result="mirrored"}`]; got != float64(want) {
				t.Errorf("metrics count %v mirrored requests, want %d", got, want)
			}

			shadowDown(t, e)

			if code := e.stopAgent(); code != 0 {
				t.Errorf("agent exited with %d", code)
			}
			out := e.stdout.String()
			for _, s := range []string{"packets", "requests", "mirrored", "shadow status codes"} {
				if !strings.Contains(out, s) {
					t.Errorf("summary lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

// sendMix sends the kinds of requests a gateway sees, each of which must be
// mirrored, and checks that the primary answered every one with 200.
func sendMix(t *testing.T, e *env) {
	t.Helper()
	c := e.client()
	base := "http://" + sandbox.GatewayIPv4 + ":8080"
	do := func(req *http.Request) {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: primary answered %d", req.Method, req.URL, resp.StatusCode)
		}
	}
	newReq := func(method, url, host string, body io.Reader) *http.Request {
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		return req
	}

	// Keep-alive GETs on one connection.
	for i := range 5 {
		do(newReq("GET", fmt.Sprintf("%s/get?n=%d", base, i), "shadowing.example", nil))
	}
	// Host with a port.
	do(newReq("GET", base+"/headers", "shadowing.example:8080", nil))
	// POST with a 200 KiB body.
	big := make([]byte, 200<<10)
	rand.Read(big)
	do(newReq("POST", base+"/post", "shadowing.example", bytes.NewReader(big)))
	// Chunked POST: a body of unknown length.
	pr, pw := io.Pipe()
	go func() {
		for i := range 20 {
			fmt.Fprintf(pw, "chunk %d of a streamed body\n", i)
		}
		pw.Close()
	}()
	do(newReq("POST", base+"/anything/chunked", "shadowing.example", pr))
	// Expect: 100-continue.
	cont := newReq("PUT", base+"/put", "shadowing.example", strings.NewReader(strings.Repeat("x", 5000)))
	cont.Header.Set("Expect", "100-continue")
	do(cont)
	// IPv6.
	do(newReq("GET", "http://["+sandbox.GatewayIPv6+"]:8080/get", "shadowing.example", nil))

	// Pipelined requests in one write, an absolute-form target and an
	// HTTP/1.0 request without Host, on raw connections.
	conn := e.dial(sandbox.GatewayIPv4 + ":8080")
	io.WriteString(conn, "GET /anything/p1 HTTP/1.1\r\nHost: shadowing.example\r\n\r\n"+
		"POST /anything/p2 HTTP/1.1\r\nHost: shadowing.example\r\nContent-Length: 5\r\n\r\nhello"+
		"GET http://shadowing.example:8080/anything/p3 HTTP/1.1\r\nHost: shadowing.example:8080\r\n\r\n")
	for _, code := range readResponses(t, conn, 3) {
		if code != 200 {
			t.Fatalf("pipelined request: primary answered %d", code)
		}
	}
	conn.Close()
	conn = e.dial(sandbox.GatewayIPv4 + ":8080")
	io.WriteString(conn, "GET /anything/http10 HTTP/1.0\r\n\r\n")
	if codes := readResponses(t, conn, 1); codes[0] != 200 {
		t.Fatalf("HTTP/1.0: primary answered %d", codes[0])
	}
	conn.Close()
}

// checkMirrored pairs every primary request with exactly one shadow request.
func checkMirrored(t *testing.T, primary, mirrored []recorder.Request) {
	t.Helper()
	if len(mirrored) != len(primary) {
		t.Errorf("shadow received %d requests, primary %d", len(mirrored), len(primary))
	}
	used := make([]bool, len(mirrored))
	for _, p := range primary {
		wantHost := shadow.ShadowHost(p.Host)
		if p.Host == "" {
			wantHost = sandbox.GatewayIPv4 + "-shadow:8080"
		}
		// An absolute-form target carries the authority too: it gets the
		// same suffix as Host.
		wantTarget := p.Target
		if rest, ok := strings.CutPrefix(p.Target, "http://"); ok {
			authority, path, _ := strings.Cut(rest, "/")
			wantTarget = "http://" + shadow.ShadowHost(authority) + "/" + path
		}
		found := -1
		for j, m := range mirrored {
			if !used[j] && m.Method == p.Method && m.Target == wantTarget && m.BodySHA256 == p.BodySHA256 {
				found = j
				break
			}
		}
		if found < 0 {
			t.Errorf("%s %s (%d bytes) never reached the shadow", p.Method, p.Target, p.BodyLen)
			continue
		}
		used[found] = true
		m := mirrored[found]
		if m.Host != wantHost {
			t.Errorf("%s %s: shadow saw Host %q, want %q", p.Method, p.Target, m.Host, wantHost)
		}
		if m.Proto != p.Proto {
			t.Errorf("%s %s: shadow saw %s, primary %s", p.Method, p.Target, m.Proto, p.Proto)
		}
		clientIP, _, _ := net.SplitHostPort(p.RemoteAddr)
		if xff := m.Header.Get("X-Forwarded-For"); !strings.Contains(xff, clientIP) {
			t.Errorf("%s %s: X-Forwarded-For %q lacks the client %s", p.Method, p.Target, xff, clientIP)
		}
		if p.Chunked != m.Chunked {
			t.Errorf("%s %s: chunked %v at the primary, %v at the shadow", p.Method, p.Target, p.Chunked, m.Chunked)
		}
	}
}

// shadowDown stops the shadow and checks that the primary keeps serving
// every request and that the agent counts the lost mirrors and stays small.
func shadowDown(t *testing.T, e *env) {
	t.Helper()
	e.shadowServer.Close()
	c := e.client()
	base := "http://" + sandbox.GatewayIPv4 + ":8080"
	rssBefore := e.rssKiB()
	const n = 2000
	for i := range n {
		resp, err := c.Get(fmt.Sprintf("%s/anything/down/%d", base, i))
		if err != nil {
			t.Fatalf("primary request %d with the shadow down: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("primary request %d with the shadow down: status %d", i, resp.StatusCode)
		}
	}
	// Every lost mirror is counted: failed or dropped, by reason.
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := e.metrics()
		lost := sumPrefix(m, "shadowtee_requests_failed_total") + sumPrefix(m, "shadowtee_requests_dropped_total")
		if lost >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the shadow down, %v of %d lost mirrors were counted", lost, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rss := e.rssKiB(); rss > rssBefore+32<<10 || rss > 128<<10 {
		t.Errorf("agent RSS grew from %d KiB to %d KiB with the shadow down", rssBefore, rss)
	}
}

func sumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}
