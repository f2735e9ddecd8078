package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/sandbox"
)

// Tool kinds: what a run puts on the gateway.
const (
	kindBaseline  = "baseline"
	kindShadowtee = "shadowtee"
	kindPeer      = "peer"
)

// tool is one row of a scenario's table.
type tool struct {
	Name    string
	Kind    string
	Command string   // a peer's expanded command template
	Args    []string // a shadowtee variant's extra flags
}

// tee is a running tee process on the gateway.
type tee interface {
	pid() int
	// exited is closed when the process has ended.
	exited() <-chan struct{}
	// metrics scrapes the tee's counters; nil for tees without them.
	metrics(ctx context.Context) (promSample, error)
	stop() error
	// output is what the process printed, for error reports.
	output() string
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil // enough to explain a failure
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// shadowteeArgs is the agent's command line in the bench topology.
func shadowteeArgs(extra []string) []string {
	return append([]string{"attach",
		"--iface", sandbox.GatewayIface, "--port", strconv.Itoa(primaryPort),
		"--shadow", "http://" + shadowAddr,
		"--metrics-addr", "127.0.0.1:0", "--stats-interval", "0", "--log-format", "json", "--summary", "json",
	}, extra...)
}

type agentTee struct {
	p     *agentproc.Process
	ns    *sandbox.Netns
	out   lockedBuffer
	ready chan agent.Ready
	mu    sync.Mutex
	addr  string
}

func startShadowtee(ns *sandbox.Netns, binary string, extra []string) (*agentTee, error) {
	t := &agentTee{ns: ns, ready: make(chan agent.Ready, 1)}
	p, err := agentproc.Start(ns, binary, shadowteeArgs(extra), &t.out, &t.out)
	if err != nil {
		return nil, err
	}
	t.p = p
	return t, nil
}

// waitReady waits for the ready file and remembers the metrics address.
func (t *agentTee) waitReady(ctx context.Context, timeout time.Duration) error {
	r, err := t.p.WaitReady(ctx, timeout)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.addr = r.MetricsAddr
	t.mu.Unlock()
	return nil
}

func (t *agentTee) pid() int                { return t.p.Cmd.Process.Pid }
func (t *agentTee) exited() <-chan struct{} { return t.p.Exited() }
func (t *agentTee) output() string          { return t.out.String() }

func (t *agentTee) metrics(ctx context.Context) (promSample, error) {
	t.mu.Lock()
	addr := t.addr
	t.mu.Unlock()
	if addr == "" {
		return nil, errors.New("agent not ready: no metrics address")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: t.ns.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape agent metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseProm(resp.Body)
}

func (t *agentTee) stop() error {
	code, err := t.p.Stop(20 * time.Second)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("agent exited with status %d", code)
	}
	return nil
}

// summary is the exit summary the agent printed (--summary json), once it
// has stopped.
func (t *agentTee) summary() (*agent.Summary, error) {
	return parseSummary(t.out.String())
}

// parseSummary finds the agent's exit summary in its output: an indented
// JSON object that starts on a line of its own, among one-line JSON logs.
func parseSummary(out string) (*agent.Summary, error) {
	i := strings.LastIndex(out, "\n{\n")
	switch {
	case i >= 0:
		i++
	case strings.HasPrefix(out, "{\n"):
		i = 0
	default:
		return nil, errors.New("no exit summary in the agent's output")
	}
	var sum agent.Summary
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&sum); err != nil {
		return nil, fmt.Errorf("agent exit summary: %w", err)
	}
	return &sum, nil
}

// expandPeer fills a peer command template's placeholders.
func expandPeer(tmpl string) string {
	return strings.NewReplacer(
		"{iface}", sandbox.GatewayIface,
		"{port}", strconv.Itoa(primaryPort),
		"{primary}", primaryAddr,
		"{shadow}", shadowAddr,
		"{shadow_url}", "http://"+shadowAddr,
		"{shadow_host}", sandbox.ShadowIPv4,
		"{shadow_port}", strconv.Itoa(shadowPort),
	).Replace(tmpl)
}

// peerName labels a peer by its position and program name.
func peerName(i int, cmd string) string {
	prog := "?"
	if f := strings.Fields(cmd); len(f) > 0 {
		prog = f[0][strings.LastIndexByte(f[0], '/')+1:]
	}
	return fmt.Sprintf("peer %d (%s)", i+1, prog)
}

// peerTee is any other tee, run as a shell command in its own process
// group, so that stopping it reaches whatever the shell started.
type peerTee struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
}

func startPeer(ns *sandbox.Netns, command string) (*peerTee, error) {
	t := &peerTee{done: make(chan struct{})}
	t.cmd = exec.Command("/bin/sh", "-c", command)
	t.cmd.Stdout, t.cmd.Stderr = &t.out, &t.out
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ns.Start(t.cmd); err != nil {
		return nil, fmt.Errorf("start peer %q: %w", command, err)
	}
	go func() {
		t.cmd.Wait()
		close(t.done)
	}()
	return t, nil
}

func (t *peerTee) pid() int                                    { return t.cmd.Process.Pid }
func (t *peerTee) exited() <-chan struct{}                     { return t.done }
func (t *peerTee) output() string                              { return t.out.String() }
func (t *peerTee) metrics(context.Context) (promSample, error) { return nil, nil }

// stop sends SIGTERM to the peer's process group (its id is the shell's
// pid), then SIGKILL if it lingers.
func (t *peerTee) stop() error {
	pgid := t.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-t.done:
		return nil
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-t.done
		return errors.New("peer did not stop within 10s of SIGTERM")
	}
}

// rssSampler reads the resident memory of a process tree every 100 ms and
// keeps every reading.
type rssSampler struct {
	samples rssSamples
	once    sync.Once
	stopCh  chan struct{}
	done    chan struct{}
}

// rssSample is one reading: when, and the bytes resident.
type rssSample struct {
	At  time.Time
	RSS int64
}

// rssSamples are readings in time order.
type rssSamples []rssSample

func sampleRSS(root int, tree bool) *rssSampler {
	s := &rssSampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		pids := []int{root}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for n := 0; ; n++ {
			if tree && n%10 == 0 {
				pids = processTree(root)
			}
			if rss := treeRSS(pids); rss > 0 {
				s.samples = append(s.samples, rssSample{At: time.Now(), RSS: rss})
			}
			select {
			case <-s.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the readings.
func (s *rssSampler) stop() rssSamples {
	s.once.Do(func() { close(s.stopCh) })
	<-s.done
	return s.samples
}

// max is the largest reading, in bytes.
func (ss rssSamples) max() int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.RSS)
	}
	return m
}

// at is the last reading taken at or before t (the first one if none was).
func (ss rssSamples) at(t time.Time) int64 {
	var v int64
	for i, s := range ss {
		if i > 0 && s.At.After(t) {
			break
		}
		v = s.RSS
	}
	return v
}

// between returns the readings from from (inclusive) to to (exclusive).
func (ss rssSamples) between(from, to time.Time) rssSamples {
	var out rssSamples
	for _, s := range ss {
		if !s.At.Before(from) && s.At.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// bpfRuntime sums the run time and run count of the BPF programs attached
// to iface's TCX ingress in ns. Run time is counted only while kernel
// statistics are on (see ebpf.EnableStats). It reports zero programs where
// the tee attached another way.
func bpfRuntime(ns *sandbox.Netns, iface string) (time.Duration, uint64, int, error) {
	var runtime time.Duration
	var runs uint64
	var progs int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		for _, ap := range res.Programs {
			p, err := ebpf.NewProgramFromID(ap.ID)
			if err != nil {
				return err
			}
			st, err := p.Stats()
			p.Close()
			if err != nil {
				return err
			}
			runtime += st.Runtime
			runs += st.RunCount
			progs++
		}
		return nil
	})
	return runtime, runs, progs, err
}
