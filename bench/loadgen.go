package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Load modes: how requests reach the primary.
const (
	modeGet     = "get"     // small GETs over keep-alive connections
	modePost    = "post"    // POSTs with a body over keep-alive connections
	modeNewConn = "newconn" // a GET on a new connection per request
	modeIdle    = "idle"    // connections opened, one GET each, then kept open and silent
)

// lateAfter is how far behind its slot a send may be before it counts as
// late: the generator could not keep its clock.
const lateAfter = time.Millisecond

// loadConfig is one run of the load generator.
type loadConfig struct {
	Addr     string        // primary address, host:port
	Mode     string        // modeGet, modePost or modeNewConn
	Rate     float64       // requests per second, all connections together
	Conns    int           // keep-alive connections
	BodyKiB  int           // POST body size
	Start    time.Time     // the first slot; connections are opened before it
	Warmup   time.Duration // sent but left out of the statistics
	Duration time.Duration // the measured window after the warm-up
	Grace    time.Duration // how long answers may come after the last send
	Pipeline bool          // write at the slot even while an answer is awaited
}

// total is the number of requests the run schedules.
func (c loadConfig) total() int {
	return int(c.Rate * (c.Warmup + c.Duration).Seconds())
}

// slot is when request i is due: the schedule is fixed in advance and
// never waits for answers (open loop).
func (c loadConfig) slot(i int) time.Time {
	return c.Start.Add(time.Duration(float64(i) * 1e9 / c.Rate))
}

// LoadResult is what the generator measured, as it reports it to the bench.
type LoadResult struct {
	Mode      string         `json:"mode"`
	Offered   float64        `json:"offered_rps"`
	Conns     int            `json:"conns"`
	Scheduled int            `json:"scheduled"`
	Sent      int            `json:"sent"`
	Completed int            `json:"completed"`
	Errors    map[string]int `json:"errors,omitempty"`
	Unsent    []int          `json:"unsent,omitempty"` // ids never written
	// Late counts sends more than lateAfter behind their slot.
	Late      int       `json:"late"`
	SendDelay Quantiles `json:"send_delay"`
	// WindowSent counts requests whose slot falls in the measured window;
	// WindowDone counts answers that arrived in it.
	WindowSent int     `json:"window_sent"`
	WindowDone int     `json:"window_done"`
	Achieved   float64 `json:"achieved_rps"`
	// Latency is the primary's service time, from writing the request (or
	// dialing, for a new connection per request) to the end of the answer,
	// of requests whose slot falls in the measured window.
	Latency Quantiles `json:"latency"`
	// FromSlot is the time from each request's slot to the end of its
	// answer: the service time plus any wait for a free connection.
	FromSlot   Quantiles `json:"from_slot"`
	CPUSeconds float64   `json:"cpu_seconds"`
}

// Error kinds of the generator.
const (
	errNone uint8 = iota
	errDial
	errWrite
	errRead
	errStatus
	errInflight
)

var errNames = [...]string{"", "dial", "write", "read", "status", "inflight"}

// generator holds per-request records, each written by one goroutine only
// and read after all of them ended.
type generator struct {
	cfg   loadConfig
	total int
	begin []int64 // when the request started: write, or dial for a new connection
	sent  []int64 // when the request was written (unix ns), 0 if never
	done  []int64 // when its answer ended (unix ns), 0 if never
	err   []uint8

	reqHead []byte // the request line and fixed headers
	body    []byte
}

func newGenerator(cfg loadConfig) *generator {
	n := cfg.total()
	g := &generator{cfg: cfg, total: n,
		begin: make([]int64, n), sent: make([]int64, n), done: make([]int64, n), err: make([]uint8, n)}
	method := "GET"
	if cfg.Mode == modePost {
		method = "POST"
		g.body = make([]byte, cfg.BodyKiB<<10)
		for i := range g.body {
			g.body[i] = 'a' + byte(i%26)
		}
	}
	h := fmt.Sprintf("%s /bench HTTP/1.1\r\nHost: %s\r\nUser-Agent: shadowtee-bench\r\n", method, cfg.Addr)
	if g.body != nil {
		h += "Content-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(len(g.body)) + "\r\n"
	}
	if cfg.Mode == modeNewConn {
		// The server closes first, so TIME_WAIT stays on its side and the
		// client does not run out of ports at thousands of connections a
		// second with the default sysctls.
		h += "Connection: close\r\n"
	}
	g.reqHead = []byte(h)
	return g
}

// appendRequest writes request id's headers, stamped with the send time.
func (g *generator) appendRequest(buf []byte, id int, sent time.Time) []byte {
	return appendBenchRequest(buf, g.reqHead, id, sent)
}

// appendBenchRequest appends a request: head (the request line and
// headers so far), then the id and the send time the shadow records.
func appendBenchRequest(buf, head []byte, id int, sent time.Time) []byte {
	buf = append(buf, head...)
	buf = append(buf, "X-Bench-Id: "...)
	buf = strconv.AppendInt(buf, int64(id), 10)
	buf = append(buf, "\r\nX-Bench-Sent: "...)
	buf = strconv.AppendInt(buf, sent.UnixNano(), 10)
	return append(buf, "\r\n\r\n"...)
}

// sleepUntil waits for t with clock_nanosleep on this thread. Go's timers
// wake a parked process up to a millisecond late, which would bunch the
// sends of an open-loop schedule; the kernel's high-resolution timer keeps
// them within tens of microseconds.
func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// run drives the whole schedule and waits for the answers.
func (g *generator) run(ctx context.Context) error {
	deadline := g.cfg.slot(g.total).Add(g.cfg.Grace)
	if g.cfg.Mode == modeNewConn {
		g.newConns(ctx, deadline)
		return nil
	}
	conns := make([]net.Conn, g.cfg.Conns)
	var d net.Dialer
	for k := range conns {
		c, err := d.DialContext(ctx, "tcp", g.cfg.Addr)
		if err != nil {
			for _, c := range conns[:k] {
				c.Close()
			}
			return fmt.Errorf("dial %s: %w", g.cfg.Addr, err)
		}
		conns[k] = c
	}
	var wg sync.WaitGroup
	for k, c := range conns {
		wg.Go(func() { g.keepAlive(k, c, deadline) })
	}
	wg.Wait()
	return nil
}

// keepAlive sends every conns-th request on one connection at its slot,
// while a reader takes the answers in order. Like a browser or a proxy, it
// waits for the connection's previous answer before it writes (a request
// that waits is late); with Pipeline it writes at the slot regardless, and
// the requests queue in the connection.
func (g *generator) keepAlive(k int, c net.Conn, deadline time.Time) {
	defer c.Close()
	c.SetDeadline(deadline)
	pending := make(chan int, g.total/g.cfg.Conns+2)
	var idle chan struct{} // holds a token while no answer is awaited
	if !g.cfg.Pipeline {
		idle = make(chan struct{}, 1)
		idle <- struct{}{}
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		g.readAnswers(c, pending, idle)
	}()
	head := make([]byte, 0, 512)
	var iov [2][]byte
	i := k
	for ; i < g.total; i += g.cfg.Conns {
		sleepUntil(g.cfg.slot(i))
		if idle != nil {
			<-idle
		}
		now := time.Now()
		head = g.appendRequest(head[:0], i, now)
		if err := g.write(c, head, &iov); err != nil {
			g.err[i] = errWrite
			break
		}
		// The reader waits on pending, so it takes the id at once; the
		// answer cannot be read before it anyway.
		g.begin[i], g.sent[i] = now.UnixNano(), now.UnixNano()
		pending <- i
	}
	for i += g.cfg.Conns; i < g.total; i += g.cfg.Conns {
		g.err[i] = errWrite
	}
	close(pending)
	<-readerDone
}

// write sends a request's headers and body with one system call.
func (g *generator) write(c net.Conn, head []byte, iov *[2][]byte) error {
	if len(g.body) == 0 {
		_, err := c.Write(head)
		return err
	}
	// WriteTo consumes the slice, not the array it is cut from, so the
	// array serves every request.
	iov[0], iov[1] = head, g.body
	bufs := net.Buffers(iov[:])
	_, err := bufs.WriteTo(c)
	return err
}

// readAnswers reads one answer per pending request, in order, and gives
// the connection back to the writer after each.
func (g *generator) readAnswers(c net.Conn, pending <-chan int, idle chan<- struct{}) {
	br := bufio.NewReaderSize(c, 32<<10)
	broken := false
	for i := range pending {
		if !broken {
			status, err := readAnswer(br)
			switch {
			case err != nil:
				broken = true
			case status != 200:
				g.err[i] = errStatus
				fallthrough
			default:
				g.done[i] = time.Now().UnixNano()
			}
		}
		if broken {
			g.err[i] = errRead
		}
		if idle != nil {
			idle <- struct{}{}
		}
	}
}

// maxInflight bounds the goroutines of the new-connection mode, so a dead
// primary cannot make the generator grow without limit.
const maxInflight = 4096

// newConns starts each request on a connection of its own at its slot.
func (g *generator) newConns(ctx context.Context, deadline time.Time) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInflight)
	for i := range g.total {
		sleepUntil(g.cfg.slot(i))
		select {
		case sem <- struct{}{}:
		default:
			g.err[i] = errInflight
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			g.oneShot(ctx, i, deadline)
		})
	}
	wg.Wait()
}

func (g *generator) oneShot(ctx context.Context, i int, deadline time.Time) {
	g.begin[i] = time.Now().UnixNano()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", g.cfg.Addr)
	if err != nil {
		g.err[i] = errDial
		return
	}
	defer c.Close()
	c.SetDeadline(deadline)
	now := time.Now()
	buf := g.appendRequest(make([]byte, 0, 512), i, now)
	g.sent[i] = now.UnixNano()
	if _, err := c.Write(buf); err != nil {
		g.err[i] = errWrite
		g.sent[i] = 0
		return
	}
	br := bufio.NewReaderSize(c, 4<<10)
	status, err := readAnswer(br)
	if err != nil {
		g.err[i] = errRead
		return
	}
	g.done[i] = time.Now().UnixNano()
	if status != 200 {
		g.err[i] = errStatus
	}
	// Wait for the server to close first: the side that closes first keeps
	// the connection in TIME_WAIT for a minute, and on the client that
	// would use up the ephemeral ports within seconds.
	br.Discard(1)
}

// result summarises the records.
func (g *generator) result(cpu time.Duration) LoadResult {
	cfg := g.cfg
	r := LoadResult{Mode: cfg.Mode, Offered: cfg.Rate, Conns: cfg.Conns, Scheduled: g.total,
		Errors: map[string]int{}, CPUSeconds: cpu.Seconds()}
	if cfg.Mode == modeNewConn {
		r.Conns = 0
	}
	from := cfg.Start.Add(cfg.Warmup).UnixNano()
	to := cfg.Start.Add(cfg.Warmup + cfg.Duration).UnixNano()
	var lat, fromSlot, delay []int64
	for i := range g.total {
		slot := cfg.slot(i).UnixNano()
		inWindow := slot >= from && slot < to
		if g.sent[i] != 0 {
			r.Sent++
			d := g.sent[i] - slot
			if cfg.Mode == modeNewConn {
				d = g.begin[i] - slot
			}
			delay = append(delay, d)
			if time.Duration(d) > lateAfter {
				r.Late++
			}
			if inWindow {
				r.WindowSent++
			}
		} else {
			r.Unsent = append(r.Unsent, i)
		}
		if g.err[i] != errNone {
			r.Errors[errNames[g.err[i]]]++
		}
		if g.done[i] == 0 {
			continue
		}
		r.Completed++
		if g.done[i] >= from && g.done[i] < to {
			r.WindowDone++
		}
		if inWindow {
			lat = append(lat, g.done[i]-g.begin[i])
			fromSlot = append(fromSlot, g.done[i]-slot)
		}
	}
	r.Achieved = float64(r.WindowDone) / cfg.Duration.Seconds()
	r.Latency = quantiles(lat)
	r.FromSlot = quantiles(fromSlot)
	r.SendDelay = quantiles(delay)
	return r
}

// runLoad is the load generator role: it runs in the client namespace and
// prints its LoadResult as JSON on stdout.
func runLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadConfig
	var start int64
	fs.StringVar(&cfg.Addr, "addr", "", "primary `host:port`")
	fs.StringVar(&cfg.Mode, "mode", modeGet, "get, post or newconn")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "requests per second")
	fs.IntVar(&cfg.Conns, "conns", 16, "keep-alive connections")
	fs.IntVar(&cfg.BodyKiB, "body-kib", 16, "POST body size in KiB")
	fs.Int64Var(&start, "start", 0, "first slot, unix nanoseconds (0: now)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&cfg.Grace, "grace", 3*time.Second, "time for the last answers")
	fs.BoolVar(&cfg.Pipeline, "pipeline", false, "write at the slot even while the connection awaits an answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Rate <= 0 || (cfg.Conns <= 0 && cfg.Mode != modeNewConn) || cfg.Duration <= 0 {
		return errors.New("load: rate, conns and duration must be positive")
	}
	cfg.Start = time.Now().Add(50 * time.Millisecond)
	if start != 0 {
		cfg.Start = time.Unix(0, start)
	}
	g := newGenerator(cfg)
	before := selfCPU()
	if err := g.run(ctx); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(g.result(selfCPU() - before))
}

// selfCPU is the CPU time this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
