package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one topology with a primary go-httpbin on the gateway (:8080, IPv4
// and IPv6), a recording shadow (:8000) and, once started, the agent.
type env struct {
	t       *testing.T
	topo    *sandbox.Topology
	primary *recorder.Recorder
	shadow  *recorder.Recorder

	shadowServer *http.Server
	// primaryServer serves e.primary on the gateway's :8080.
	primaryServer *http.Server
	agent         *agentproc.Process
	ready         agent.Ready
	stdout        lockedBuffer
	stderr        lockedBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, func(h http.Handler) http.Handler { return h })
}

// newEnvWith is newEnv with both servers' handlers wrapped by wrap: h2c,
// for one.
func newEnvWith(t *testing.T, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	requireRoot(t)
	topo, err := sandbox.NewTopology("stee-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	e := &env{t: t, topo: topo, primary: recorder.New(httpbin.New()), shadow: recorder.New(nil)}
	e.primaryServer = e.serve(topo.Gateway, "[::]:8080", wrap(e.primary))
	e.shadowServer = e.serve(topo.Shadow, sandbox.ShadowIPv4+":8000", wrap(e.shadow))
	return e
}

// serveWhenFree serves h on addr in ns once the address is free: a server
// just closed lets go of its listener on a goroutine of its own.
func serveWhenFree(t *testing.T, ns *sandbox.Netns, addr string, h http.Handler) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ln, err := ns.Listen("tcp", addr)
		if err == nil {
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

func (e *env) serve(ns *sandbox.Netns, addr string, h http.Handler) *http.Server {
	e.t.Helper()
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
	return srv
}

// startAgent runs `shadowtee attach` on the gateway's client-facing
// interface with the given extra flags.
func (e *env) startAgent(extra ...string) {
	e.t.Helper()
	args := []string{"attach", "--metrics-addr", "127.0.0.1:0", "--stats-interval", "0", "--log-format", "json"}
	if !slices.Contains(extra, "--config") {
		args = append(args, "--port", "8080", "--shadow", "http://"+sandbox.ShadowIPv4+":8000")
	}
	if !slices.Contains(extra, "--iface") {
		args = append(args, "--iface", sandbox.GatewayIface)
	}
	args = append(args, extra...)
	p, err := agentproc.Start(e.topo.Gateway, binary, args, &e.stdout, &e.stderr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.agent = p
	e.t.Cleanup(func() {
		select {
		case <-p.Exited():
		default:
			p.Kill()
		}
		if e.t.Failed() {
			e.t.Logf("agent stderr:\n%s\nagent stdout:\n%s", e.stderr.String(), e.stdout.String())
		}
	})
	if e.ready, err = p.WaitReady(e.t.Context(), 15*time.Second); err != nil {
		e.t.Fatalf("%v\nstderr:\n%s", err, e.stderr.String())
	}
}

// stopAgent sends SIGTERM and returns the exit status.
func (e *env) stopAgent() int {
	e.t.Helper()
	code, err := e.agent.Stop(20 * time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// client returns an HTTP client that dials from the client namespace.
func (e *env) client() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: e.topo.Client.DialContext, MaxIdleConnsPerHost: 16},
	}
}

// dial opens a raw connection from the client namespace.
func (e *env) dial(addr string) net.Conn {
	e.t.Helper()
	c, err := e.topo.Client.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// metrics scrapes the agent's /metrics into "name{labels}" -> value.
func (e *env) metrics() map[string]float64 {
	e.t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: e.topo.Gateway.DialContext}}
	resp, err := hc.Get("http://" + e.ready.MetricsAddr + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// rssKiB returns the agent's resident memory.
func (e *env) rssKiB() int {
	e.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.agent.Cmd.Process.Pid))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	e.t.Fatal("no VmRSS")
	return 0
}

// readResponses reads n responses from a raw connection and returns their
// status codes.
func readResponses(t *testing.T, c net.Conn, n int) []int {
	t.Helper()
	br := bufio.NewReader(c)
	var codes []int
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	return codes
}
