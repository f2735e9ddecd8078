package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowtee/shadowtee/bpf"
	"github.com/shadowtee/shadowtee/internal/sandbox"
	"github.com/shadowtee/shadowtee/reassembly"
)

const serverAddr = "198.18.0.2:8080"

// discard throws segments away; while measuring, it notes how long each
// took from the kernel's copy to here (the lag the reader adds).
type discard struct {
	measure atomic.Bool
	lags    []time.Duration // only the reader's goroutine appends, only after it the main one reads
}

func (d *discard) Segment(seg *reassembly.Segment, _ int) {
	if d.measure.Load() && len(d.lags) < cap(d.lags) {
		d.lags = append(d.lags, time.Since(seg.Time))
	}
}

func (d *discard) Flush() {}

// percentile returns the p-th percentile of sorted lags.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

type sample struct {
	cpu        time.Duration
	nvcsw      int64 // voluntary context switches, all threads (getrusage)
	nivcsw     int64
	mainCtx    int64 // /proc/self/status, the main thread only
	threadsCtx int64 // sum over /proc/self/task/*/status
	at         time.Time
}

func take() (sample, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return sample{}, err
	}
	s := sample{
		cpu:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		nvcsw:  ru.Nvcsw,
		nivcsw: ru.Nivcsw,
		at:     time.Now(),
	}
	s.mainCtx = ctxSwitches("/proc/self/status")
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, p := range tasks {
		s.threadsCtx += ctxSwitches(p)
	}
	return s, nil
}

// ctxSwitches returns voluntary_ctxt_switches + nonvoluntary_ctxt_switches.
func ctxSwitches(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "readercost:", err)
		os.Exit(1)
	}
}

func run() error {
	dur := flag.Duration("for", 20*time.Second, "measured window")
	settle := flag.Duration("settle", 2*time.Second, "wait before measuring")
	mode := flag.String("mode", "auto", "attach mode: auto, tcx or tc")
	poll := flag.Duration("poll", bpf.DefaultPoll, "reader poll interval")
	rate := flag.Float64("rate", 0, "requests per second during the window (0: idle)")
	conns := flag.Int("conns", 16, "connections the load takes turns on")
	role := flag.String("role", "", "internal: server or client, for the load's child processes")
	flag.Parse()
	switch *role {
	case "server":
		return serve()
	case "client":
		return load(*rate, *conns, *settle+*dur+time.Second)
	}
	am, err := bpf.ParseAttachMode(*mode)
	if err != nil {
		return err
	}

	sb, err := sandbox.New("stee-cost")
	if err != nil {
		return err
	}
	defer sb.Close()
	c, err := sb.Netns("c")
	if err != nil {
		return err
	}
	s, err := sb.Netns("s")
	if err != nil {
		return err
	}
	if err := sb.Veth(c, "c0", []string{"198.18.0.1/24"}, s, "s0", []string{"198.18.0.2/24"}); err != nil {
		return err
	}

	tee, err := bpf.Load(bpf.Options{Ports: []uint16{8080}})
	if err != nil {
		return err
	}
	defer tee.Close()
	var a *bpf.Attachment
	if err := s.Do(func() (err error) { a, err = tee.Attach("s0", am); return err }); err != nil {
		return err
	}
	defer a.Close()
	rd, err := tee.NewReader(*poll)
	if err != nil {
		return err
	}
	sink := &discard{lags: make([]time.Duration, 0, 1<<20)}
	done := make(chan error, 1)
	go func() { done <- rd.Run(sink) }()

	if *rate > 0 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		srv := exec.Command(self, "-role", "server")
		srv.Stderr = os.Stderr
		if err := s.Start(srv); err != nil {
			return err
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		cli := exec.Command(self, "-role", "client", "-rate", fmt.Sprint(*rate), "-conns", fmt.Sprint(*conns),
			"-settle", settle.String(), "-for", dur.String())
		cli.Stderr = os.Stderr
		if err := c.Start(cli); err != nil {
			return err
		}
		defer func() { cli.Process.Kill(); cli.Wait() }()
	}

	time.Sleep(*settle)
	before, err := take()
	if err != nil {
		return err
	}
	st0, k0 := rd.Stats(), counters(tee)
	sink.measure.Store(true)
	time.Sleep(*dur)
	sink.measure.Store(false)
	after, err := take()
	if err != nil {
		return err
	}
	st1, k1 := rd.Stats(), counters(tee)
	rd.Close()
	if err := <-done; err != nil {
		return err
	}
	slices.Sort(sink.lags)

	secs := after.at.Sub(before.at).Seconds()
	cpu := after.cpu - before.cpu
	records := st1.Records - st0.Records
	rusageCtx := (after.nvcsw + after.nivcsw) - (before.nvcsw + before.nivcsw)
	fmt.Printf("mode %s, poll %v, rate %v/s, window %.1fs, records %d (%.0f/s)\n", a.Mode, *poll, *rate, secs, records, float64(records)/secs)
	fmt.Printf("cpu %v = %.4f%% of a core", cpu, 100*cpu.Seconds()/secs)
	if records > 0 {
		fmt.Printf(" = %.2f µs per record", float64(cpu.Microseconds())/float64(records))
	}
	fmt.Println()
	fmt.Printf("context switches (getrusage, all threads) %d = %.1f/s (voluntary %d, involuntary %d)\n",
		rusageCtx, float64(rusageCtx)/secs, after.nvcsw-before.nvcsw, after.nivcsw-before.nivcsw)
	fmt.Printf("context switches (/proc/self/status, main thread) %d = %.1f/s\n",
		after.mainCtx-before.mainCtx, float64(after.mainCtx-before.mainCtx)/secs)
	fmt.Printf("context switches (/proc/self/task/*/status, live threads) %d = %.1f/s\n",
		after.threadsCtx-before.threadsCtx, float64(after.threadsCtx-before.threadsCtx)/secs)
	if len(sink.lags) > 0 {
		fmt.Printf("lag from the kernel's copy to the sink: p50 %v, p99 %v, max %v\n",
			percentile(sink.lags, 0.5), percentile(sink.lags, 0.99), sink.lags[len(sink.lags)-1])
	}
	fmt.Printf("reader in the window: polls %d, sleeps %d, wake-ups %d; kernel forced wake-ups %d; blocking %v\n",
		st1.Polls-st0.Polls, st1.Sleeps-st0.Sleeps, st1.Wakeups-st0.Wakeups, k1.Wakeups-k0.Wakeups, rd.Blocking())
	return nil
}

func counters(tee *bpf.Tee) bpf.Counters {
	c, _ := tee.Counters()
	return c
}

// serve accepts connections and reads them to the end.
func serve() error {
	ln, err := net.Listen("tcp", serverAddr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() { defer c.Close(); io.Copy(io.Discard, c) }()
	}
}

// load sends one-packet requests at rate per second over conns connections,
// in turn, for d.
func load(rate float64, conns int, d time.Duration) error {
	cs := make([]net.Conn, conns)
	for i := range cs {
		// The server, another child, may not listen yet.
		var c net.Conn
		var err error
		for try := 0; try < 100; try++ {
			if c, err = net.Dial("tcp", serverAddr); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		cs[i] = c
	}
	req := []byte("GET /cost HTTP/1.1\r\nHost: shadowing.example\r\n\r\n")
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	for now := range tick.C {
		el := now.Sub(start)
		if el > d {
			return nil
		}
		for due := int(el.Seconds() * rate); sent < due; sent++ {
			if _, err := cs[sent%conns].Write(req); err != nil {
				return err
			}
		}
	}
	return nil
}
