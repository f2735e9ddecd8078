package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runH2Load runs h2load in the client namespace against the primary over
// h2c: cfg.Conns clients, one connection each with up to cfg.Streams
// streams, cfg.Rate requests a second together, cfg.total() requests in
// all from cfg.Start. h2load cannot set a header per request, so the id
// is in the path: every client requests /bench/0 to /bench/N-1 in order
// (its -i list), and the shadow should see each path once per client.
// h2load stops by itself after its count; a connection silent for 5 s
// ends (-N), and the run is killed past its deadline.
func (e *env) runH2Load(ctx context.Context, cfg loadConfig) (LoadResult, error) {
	dir, err := os.MkdirTemp("", "shadowtee-bench-h2-")
	if err != nil {
		return LoadResult{}, err
	}
	defer os.RemoveAll(dir)
	var uris bytes.Buffer
	for i := range cfg.ids() {
		fmt.Fprintf(&uris, "http://%s/bench/%d\n", cfg.Addr, i)
	}
	list, logFile := filepath.Join(dir, "uris"), filepath.Join(dir, "log")
	if err := os.WriteFile(list, uris.Bytes(), 0o644); err != nil {
		return LoadResult{}, err
	}
	deadline := cfg.slot(cfg.total()).Add(cfg.Grace + 5*time.Second)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	perClient := strconv.FormatFloat(cfg.Rate/float64(cfg.Conns), 'f', -1, 64)
	cmd := exec.CommandContext(cctx, e.cfg.H2Load, "-n", strconv.Itoa(cfg.total()), "-c", strconv.Itoa(cfg.Conns),
		"-m", strconv.Itoa(cfg.Streams), "--rps", perClient, "-N", "5s", "-i", list, "--log-file", logFile)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sleepUntil(cfg.Start)
	if err := e.topo.Client.Start(cmd); err != nil {
		return LoadResult{}, fmt.Errorf("start h2load: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return LoadResult{}, fmt.Errorf("h2load: %w: %s", err, tail(out.String(), 10))
	}
	f, err := os.Open(logFile)
	if err != nil {
		return LoadResult{}, err
	}
	defer f.Close()
	r, err := parseH2Log(f, cfg)
	st := cmd.ProcessState
	r.CPUSeconds = (st.UserTime() + st.SystemTime()).Seconds()
	return r, err
}

// parseH2Log summarises h2load's --log-file: a line per request with its
// start (µs since the epoch), its status (2xx counts as answered) and the
// µs until the end of its answer. h2load keeps no schedule of its own to
// measure from, so there is no lateness or latency from slot.
func parseH2Log(rd io.Reader, cfg loadConfig) (LoadResult, error) {
	r := LoadResult{Mode: cfg.Mode, Offered: cfg.Rate, Conns: cfg.Conns, Scheduled: cfg.total(), Repeat: cfg.Conns,
		Errors: map[string]int{}}
	from := cfg.Start.Add(cfg.Warmup).UnixMicro()
	to := cfg.Start.Add(cfg.Warmup + cfg.Duration).UnixMicro()
	var lat []int64
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseInt(f[0], 10, 64)
		status, err2 := strconv.Atoi(f[1])
		us, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return r, fmt.Errorf("h2load log: bad line %q", sc.Text())
		}
		r.Sent++
		inWindow := start >= from && start < to
		if inWindow {
			r.WindowSent++
		}
		if status < 200 || status > 299 {
			r.Errors["status"]++
			continue
		}
		r.Completed++
		if end := start + us; end >= from && end < to {
			r.WindowDone++
		}
		if inWindow {
			lat = append(lat, us*1000)
		}
	}
	if n := r.Scheduled - r.Sent; n > 0 {
		r.Errors["unsent"] = n
	}
	r.Achieved = float64(r.WindowDone) / cfg.Duration.Seconds()
	r.Latency = quantiles(lat)
	return r, sc.Err()
}
