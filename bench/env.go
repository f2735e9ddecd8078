package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// Where the bench's services listen.
const (
	primaryPort = 8080
	shadowPort  = 8000
	controlAddr = "127.0.0.1:8001" // in the shadow namespace
)

var (
	primaryAddr = net.JoinHostPort(sandbox.GatewayIPv4, strconv.Itoa(primaryPort))
	shadowAddr  = net.JoinHostPort(sandbox.ShadowIPv4, strconv.Itoa(shadowPort))
)

// env is the topology with the primary and the shadow running: what every
// run of a suite shares.
type env struct {
	cfg     *Config
	self    string // this program, re-executed for the roles
	topo    *sandbox.Topology
	ctl     *http.Client
	primary *exec.Cmd
	shadow  *exec.Cmd
	// pin is where the processes go while a pinned scenario runs; nil
	// otherwise.
	pin *cpuPlan
}

// newEnv builds the topology and starts the primary and the shadow.
func newEnv(ctx context.Context, cfg *Config) (_ *env, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	topo, err := sandbox.NewTopology("stee-bench")
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, self: self, topo: topo}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	e.ctl = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: topo.Shadow.DialContext}}
	if e.primary, err = e.startRole(topo.Gateway, "primary", "--listen", ":"+strconv.Itoa(primaryPort),
		"--work", cfg.PrimaryWork.String()); err != nil {
		return nil, err
	}
	if e.shadow, err = e.startRole(topo.Shadow, "shadow", "--listen", shadowAddr, "--control", controlAddr,
		"--server", cfg.ShadowServer); err != nil {
		return nil, err
	}
	return e, nil
}

// startRole runs this program as a service role in ns and waits until it
// says it listens.
func (e *env) startRole(ns *sandbox.Netns, role string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(e.self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := ns.Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) == "ready" {
			return cmd, nil
		}
	case <-time.After(10 * time.Second):
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("%s did not start", role)
}

// runLoad runs the load generator in the client namespace and returns what
// it measured.
func (e *env) runLoad(ctx context.Context, cfg loadConfig) (LoadResult, error) {
	if cfg.Mode == modeH2 {
		return e.runH2Load(ctx, cfg)
	}
	var res LoadResult
	err := e.runGenerator(ctx, "load", cfg, &res)
	return res, err
}

// runGenerator runs a generator role in the client namespace, pinned with
// the other processes when the scenario pins: it gives the role cfg as
// JSON on its stdin and decodes the JSON it prints into res.
func (e *env) runGenerator(ctx context.Context, role string, cfg, res any) error {
	in, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, e.self)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	if e.pin != nil {
		// On one CPU the runtime would shrink GOMAXPROCS to 1, and a
		// writer asleep in clock_nanosleep would then hold the only P
		// until sysmon takes it back, stalling the readers for up to
		// 10 ms: the generator would fall behind with its CPU idle.
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", len(e.pin.all)))
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.topo.Client.Start(cmd); err != nil {
		return fmt.Errorf("start the load generator: %w", err)
	}
	if e.pin != nil {
		// The generator waits for its first slot, 300 ms away: it is
		// pinned before it sends anything.
		if err := pinProcess(cmd.Process.Pid, e.pin.Others); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("load generator: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), res); err != nil {
		return fmt.Errorf("load generator output: %w", err)
	}
	return nil
}

// resetShadow makes the shadow forget what it saw, expect ids below n and
// answer each request after delay.
func (e *env) resetShadow(ctx context.Context, n int, delay delayRange) error {
	v := url.Values{"n": {strconv.Itoa(n)}, "delay": {delay.String()}}
	return e.control(ctx, http.MethodPost, "/reset?"+v.Encode(), nil)
}

// shadowListen opens (up) or closes (down) the shadow's port for mirrored
// requests; closing also closes the connections it has.
func (e *env) shadowListen(ctx context.Context, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return e.control(ctx, http.MethodPost, "/listen?state="+state, nil)
}

func (e *env) shadowSummary(ctx context.Context) (ShadowSummary, error) {
	var s ShadowSummary
	return s, e.control(ctx, http.MethodGet, "/summary", &s)
}

func (e *env) shadowResults(ctx context.Context) (ShadowResults, error) {
	var s ShadowResults
	return s, e.control(ctx, http.MethodGet, "/results", &s)
}

func (e *env) control(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+controlAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := e.ctl.Do(req)
	if err != nil {
		return fmt.Errorf("shadow control: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("shadow control %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// probes sends a GET on a new connection every interval from the client
// namespace until stopped. The shadow tells probes apart by a header.
type probes struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (e *env) startProbes(ctx context.Context, interval time.Duration) *probes {
	ctx, cancel := context.WithCancel(ctx)
	p := &probes{cancel: cancel}
	p.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for n := 0; ; n++ {
			p.wg.Go(func() { e.probe(ctx, n) })
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return p
}

func (p *probes) stop() {
	p.cancel()
	p.wg.Wait()
}

func (e *env) probe(ctx context.Context, n int) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := e.topo.Client.DialContext(ctx, "tcp", primaryAddr)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /probe HTTP/1.1\r\nHost: %s\r\nX-Bench-Probe: %d\r\nConnection: close\r\n\r\n", primaryAddr, n)
	readAnswer(bufio.NewReader(c))
}

// waitFirstProbe polls the shadow until a probe arrives and returns when it
// did, or an error after timeout.
func (e *env) waitFirstProbe(ctx context.Context, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s, err := e.shadowSummary(ctx)
		if err != nil {
			return time.Time{}, err
		}
		if s.FirstProbe != 0 {
			return time.Unix(0, s.FirstProbe), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return time.Time{}, errors.New("no probe mirrored in time")
}

// settle waits until the shadow has seen want requests, or its count stops
// growing for quiet, or max passes.
func (e *env) settle(ctx context.Context, want int64, quiet, max time.Duration) error {
	last, lastChange := int64(-1), time.Now()
	deadline := time.Now().Add(max)
	for {
		s, err := e.shadowSummary(ctx)
		if err != nil {
			return err
		}
		if s.Arrived >= want {
			return nil
		}
		if s.Arrived != last {
			last, lastChange = s.Arrived, time.Now()
		}
		if time.Since(lastChange) > quiet || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close stops the services and removes the topology.
func (e *env) close() error {
	for _, c := range []*exec.Cmd{e.primary, e.shadow} {
		if c != nil && c.Process != nil {
			c.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				c.Process.Kill()
				<-done
			}
		}
	}
	if e.ctl != nil {
		e.ctl.CloseIdleConnections()
	}
	return e.topo.Close()
}

// quietBelow is the machine's load, in busy cores, under which a run may
// start: other work on the host skews every number, so each run waits (a
// bounded time) for the host to idle first.
const quietBelow = 0.25

// waitQuiet waits until the machine's busy CPU over half a second falls
// below quietBelow cores, or max passes, and returns the last reading.
func waitQuiet(ctx context.Context, max time.Duration) float64 {
	deadline := time.Now().Add(max)
	for {
		h0, err := readHostCPU()
		if err != nil {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(500 * time.Millisecond):
		}
		h1, _ := readHostCPU()
		busy := busyCores(h0, h1, runtime.NumCPU())
		if busy < quietBelow || time.Now().After(deadline) {
			return busy
		}
	}
}
