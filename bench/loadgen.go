package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowtee/shadowtee/httpsyntax"
)

// Load modes: how requests reach the primary.
const (
	modeGet     = "get"     // small GETs over keep-alive connections
	modePost    = "post"    // POSTs with a body over keep-alive connections
	modeNewConn = "newconn" // a GET on a new connection per request
	modeIdle    = "idle"    // connections opened, one GET each, then kept open and silent
	modeH2      = "h2"      // h2load over h2c (h2.go)
)

// lateAfter is how far behind its slot a send may be before it counts as
// late: the generator could not keep its clock.
const lateAfter = time.Millisecond

// loadConfig is one run of the load generator.
type loadConfig struct {
	Addr     string        // primary address, host:port
	Mode     string        // modeGet, modePost, modeNewConn or modeH2
	Rate     float64       // requests per second, all connections together
	Conns    int           // keep-alive connections; h2load's clients
	Streams  int           // h2load's concurrent streams per client
	BodyKiB  int           // POST body size
	Answer   int           // ask for JSON answers of this many bytes (0: "ok")
	Start    time.Time     // the first slot; connections are opened before it
	Warmup   time.Duration // sent but left out of the statistics
	Duration time.Duration // the measured window after the warm-up
	Grace    time.Duration // how long answers may come after the last send
	Pipeline bool          // write at the slot even while an answer is awaited
}

// total is the number of requests the run schedules: for h2load, a
// whole number of ids per client.
func (c loadConfig) total() int {
	n := int(c.Rate * (c.Warmup + c.Duration).Seconds())
	if c.Mode == modeH2 {
		n -= n % c.Conns
	}
	return n
}

// ids is the number of request ids: one a request, except for h2load,
// whose clients each request the same ids.
func (c loadConfig) ids() int {
	if c.Mode == modeH2 {
		return c.total() / c.Conns
	}
	return c.total()
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
	// Repeat is how many requests carry each id (h2load's clients); 0
	// means one.
	Repeat int `json:"repeat,omitempty"`
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

// records are what a generator notes of each request, each written by
// one goroutine only and read after all of them ended.
type records struct {
	begin []int64 // when the request started: write, or dial for a new connection (unix ns)
	sent  []int64 // when the request was written, 0 if never
	done  []int64 // when its answer ended, 0 if never
	err   []uint8
}

func newRecords(n int) records {
	return records{begin: make([]int64, n), sent: make([]int64, n), done: make([]int64, n), err: make([]uint8, n)}
}

// ask opens a connection, writes request i (head and body), reads its
// answer and returns the connection, open, with what it buffered; nil if
// any step failed, which it records.
func (rec *records) ask(ctx context.Context, i int, addr string, deadline time.Time, head, body []byte) (net.Conn, *bufio.Reader) {
	rec.begin[i] = time.Now().UnixNano()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		rec.err[i] = errDial
		return nil, nil
	}
	c.SetDeadline(deadline)
	now := time.Now()
	buf := append(appendBenchRequest(make([]byte, 0, 512), head, i, now), body...)
	if _, err := c.Write(buf); err != nil {
		rec.err[i] = errWrite
		c.Close()
		return nil, nil
	}
	rec.sent[i] = now.UnixNano()
	br := bufio.NewReaderSize(c, 1<<10)
	status, err := readAnswer(br)
	if err != nil {
		rec.err[i] = errRead
		c.Close()
		return nil, nil
	}
	rec.done[i] = time.Now().UnixNano()
	if status != 200 {
		rec.err[i] = errStatus
	}
	return c, br
}

// account adds request i, due at slot (unix ns), to r: sent or never,
// late or not, its error and whether it was answered. The send delay is
// taken from the dial when fromDial, from the write otherwise.
func (rec *records) account(r *LoadResult, i int, slot int64, fromDial bool, delays *[]int64) {
	if rec.sent[i] != 0 {
		r.Sent++
		d := rec.sent[i] - slot
		if fromDial {
			d = rec.begin[i] - slot
		}
		*delays = append(*delays, d)
		if time.Duration(d) > lateAfter {
			r.Late++
		}
	} else {
		r.Unsent = append(r.Unsent, i)
	}
	if rec.err[i] != errNone {
		r.Errors[errNames[rec.err[i]]]++
	}
	if rec.done[i] != 0 {
		r.Completed++
	}
}

// generator drives the open-loop schedule of a loadConfig.
type generator struct {
	cfg   loadConfig
	total int
	records

	reqHead []byte // the request line and fixed headers
	body    []byte
}

func newGenerator(cfg loadConfig) *generator {
	n := cfg.total()
	g := &generator{cfg: cfg, total: n, records: newRecords(n)}
	method, path := "GET", "/bench"
	if cfg.Mode == modePost {
		method = "POST"
		g.body = make([]byte, cfg.BodyKiB<<10)
		for i := range g.body {
			g.body[i] = 'a' + byte(i%26)
		}
	}
	if cfg.Answer > 0 {
		path = "/json/" + strconv.Itoa(cfg.Answer)
	}
	h := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shadowtee-bench\r\n", method, path, cfg.Addr)
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
		head = appendBenchRequest(head[:0], g.reqHead, i, now)
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
	c, br := g.ask(ctx, i, g.cfg.Addr, deadline, g.reqHead, g.body)
	if c == nil {
		return
	}
	// Wait for the server to close first: the side that closes first keeps
	// the connection in TIME_WAIT for a minute, and on the client that
	// would use up the ephemeral ports within seconds.
	br.Discard(1)
	c.Close()
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
		g.account(&r, i, slot, cfg.Mode == modeNewConn, &delay)
		if inWindow && g.sent[i] != 0 {
			r.WindowSent++
		}
		if g.done[i] == 0 {
			continue
		}
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

// runLoad is the load generator role: in the client namespace, it reads
// its loadConfig as JSON on stdin and prints its LoadResult as JSON on
// stdout.
func runLoad(ctx context.Context) error {
	var cfg loadConfig
	if err := json.NewDecoder(os.Stdin).Decode(&cfg); err != nil {
		return fmt.Errorf("load: %w", err)
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

// readAnswer reads one HTTP/1.1 response with a Content-Length body (the
// bench's primary always sends one) and returns its status code.
func readAnswer(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	status, _, ok := httpsyntax.ParseStatusLine(bytes.TrimRight(line, "\r\n"))
	if !ok {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := int64(-1)
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("bad header line %q", line)
		}
		switch {
		case httpsyntax.EqualFold(name, "content-length"):
			if length, ok = httpsyntax.ParseContentLength(value); !ok {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case httpsyntax.EqualFold(name, "transfer-encoding"):
			return 0, errors.New("chunked answers are not expected from the bench primary")
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	_, err = br.Discard(int(length))
	return int(status), err
}
