package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// roleEnv names the role a re-executed bench binary plays. The primary, the
// shadow and the load generator each run as their own process in their own
// namespace, so none of them shares a Go runtime (and its pauses) with
// another, and the agent competes with them as it would on a real host.
const roleEnv = "SHADOWTEE_BENCH_ROLE"

// runRole runs one of the roles: the primary, the shadow or the load
// generator.
func runRole(ctx context.Context, role string, args []string) error {
	switch role {
	case "primary":
		return runPrimary(ctx, args)
	case "shadow":
		return runShadow(ctx, args)
	case "load":
		return runLoad(ctx)
	case "idle":
		return runIdleLoad(ctx)
	}
	return fmt.Errorf("unknown role %q", role)
}

// serveUntil serves on ln until ctx ends, then closes the server.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-errc:
		return err
	}
}

// runPrimary is the service under the tee: it reads any body and answers
// 200 with a small body, or with JSON of the size a /json/N path asks, as
// fast as net/http allows, over HTTP/1.1 or h2c.
func runPrimary(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("primary", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "listen `address`")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "how long a keep-alive connection may wait for its next request")
	work := fs.Duration("work", 0, "CPU time spent on each request before answering, as a service would")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The idle-conns scenario keeps thousands of connections open at once:
	// take all the file descriptors the hard limit allows, or more if
	// allowed. Too few shows as the generator's connections failing.
	raiseNoFile(idleMaxConns + 1024)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if *work > 0 {
			spin(*work)
		}
		writeAnswer(w, r)
	})
	// IdleTimeout, not ReadHeaderTimeout, bounds the wait between requests:
	// it must outlast the idle period of the idle-conns scenario.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: *idle, Protocols: withH2C()}
	fmt.Println("ready")
	return serveUntil(ctx, srv, ln)
}

// withH2C is HTTP/1.1 and HTTP/2 without TLS (h2c, with prior knowledge,
// as h2load speaks it) on one port: net/http tells them apart by the
// connection preface, which costs an HTTP/1.1 connection one peek at its
// first bytes.
func withH2C() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// maxAnswer bounds the JSON answers a /json/N path may ask for.
const maxAnswer = 1 << 20

var (
	okBody  = []byte("ok\n")
	answers sync.Map // size -> []byte, the JSON answers made so far
)

// writeAnswer answers 200 with what the request's path asks: a JSON body
// of N bytes for /json/N, "ok" otherwise. Primary and shadow give the same
// answer to the same request, as a comparison of their answers expects.
func writeAnswer(w http.ResponseWriter, r *http.Request) {
	body, ctype := okBody, "text/plain"
	if v, ok := strings.CutPrefix(r.URL.Path, "/json/"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= maxAnswer {
			b, ok := answers.Load(n)
			if !ok {
				b, _ = answers.LoadOrStore(n, jsonBody(n))
			}
			body, ctype = b.([]byte), "application/json"
		}
	}
	w.Header()["Content-Type"] = []string{ctype}
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.Write(body)
}

// jsonBody makes a JSON document of exactly n bytes (21 at least): an
// array of small records, as an API answers, padded to size.
func jsonBody(n int) []byte {
	const head, tail = `{"items":[`, `],"pad":""}`
	b := []byte(head)
	for i := 0; ; i++ {
		item := fmt.Sprintf(`{"id":%d,"name":"item-%05d","price":%d.%02d,"tags":["a","b"],"ok":true}`, i, i, i%997, i%100)
		if len(b)+len(item)+1+len(tail) > n {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, item...)
	}
	b = append(b, tail[:len(tail)-2]...)
	for len(b) < n-2 {
		b = append(b, 'x')
	}
	return append(b, tail[len(tail)-2:]...)
}

// spin keeps the CPU busy for d of this thread's CPU time, so that time
// taken by other processes on the same CPU does not count.
func spin(d time.Duration) {
	// Reading the thread's CPU clock is itself the work: a system call.
	for start := threadCPU(); threadCPU()-start < d; {
	}
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// delayRange is how long the shadow waits before each answer: Min, or a
// time drawn uniformly from Min to Max for each request. As a flag or in
// JSON it reads "50ms" or "20ms-200ms".
type delayRange struct{ Min, Max time.Duration }

func parseDelay(s string) (delayRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	var d delayRange
	var err error
	if d.Min, err = time.ParseDuration(lo); err != nil {
		return d, fmt.Errorf("delay %q: %w", s, err)
	}
	d.Max = d.Min
	if isRange {
		if d.Max, err = time.ParseDuration(hi); err != nil {
			return d, fmt.Errorf("delay %q: %w", s, err)
		}
	}
	if d.Min < 0 || d.Max < d.Min {
		return d, fmt.Errorf("delay %q: want 0 <= MIN <= MAX", s)
	}
	return d, nil
}

func (d *delayRange) Set(s string) (err error) { *d, err = parseDelay(s); return err }

func (d delayRange) String() string {
	if d.Max > d.Min {
		return d.Min.String() + "-" + d.Max.String()
	}
	return d.Min.String()
}

func (d delayRange) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d delayRange) zero() bool { return d.Max == 0 }

// pick draws one request's delay.
func (d delayRange) pick() time.Duration {
	if d.Max <= d.Min {
		return d.Min
	}
	return d.Min + rand.N(d.Max-d.Min+1)
}

// tally is what the shadow saw since its last reset.
type tally struct {
	counts  []atomic.Uint32 // arrivals per request id
	lag     []atomic.Int64  // first arrival minus X-Bench-Sent, ns
	delay   delayRange      // how long to wait before answering
	arrived atomic.Int64    // requests with an id in range, duplicates included
	unknown atomic.Int64    // ids out of range
	noID    atomic.Int64    // requests without an id or probe header
	bodyErr atomic.Int64    // bodies that did not arrive whole
	conns   atomic.Int64    // connections accepted
	peak    atomic.Int64    // the most connections open at once
	h1, h2  atomic.Int64    // requests by protocol, probes left out
	probes  atomic.Int64
	// firstProbe is when the first start-up probe arrived, unix ns.
	firstProbe atomic.Int64
}

// ShadowSummary is the shadow's small report, polled while waiting.
type ShadowSummary struct {
	Arrived    int64 `json:"arrived"`
	Conns      int64 `json:"conns"`
	Peak       int64 `json:"peak_conns"`
	HTTP1      int64 `json:"http1"`
	HTTP2      int64 `json:"http2"`
	Probes     int64 `json:"probes"`
	FirstProbe int64 `json:"first_probe_ns"`
}

// ShadowResults is everything the shadow saw.
type ShadowResults struct {
	ShadowSummary
	Counts  []uint32 `json:"counts"`
	LagNS   []int64  `json:"lag_ns"`
	Unknown int64    `json:"unknown"`
	NoID    int64    `json:"no_id"`
	BodyErr int64    `json:"body_errors"`
}

type shadowServer struct {
	cur  atomic.Pointer[tally]
	addr string       // where mirrored requests arrive
	open atomic.Int64 // connections open now

	server string // serverHTTP or serverSink
	bound  string // the address listened on, once up

	srvMu sync.Mutex
	srv   *http.Server // the net/http server; nil while down
	sink  *sinkServer  // the sink; nil while down
}

func (s *shadowServer) reset(n int, delay delayRange) {
	t := &tally{counts: make([]atomic.Uint32, n), lag: make([]atomic.Int64, n), delay: delay}
	t.peak.Store(s.open.Load())
	s.cur.Store(t)
}

// opened counts a connection accepted, closed one that ended.
func (s *shadowServer) opened() {
	t := s.cur.Load()
	t.conns.Add(1)
	n := s.open.Add(1)
	for p := t.peak.Load(); n > p && !t.peak.CompareAndSwap(p, n); p = t.peak.Load() {
	}
}

func (s *shadowServer) closed() { s.open.Add(-1) }

// ServeHTTP records a mirrored request and answers it after the delay, on
// the request's own goroutine, as a real service would: requests on other
// connections (or other HTTP/2 streams) do not wait for it.
func (s *shadowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	t := s.cur.Load()
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil || (r.ContentLength >= 0 && n != r.ContentLength) {
		t.bodyErr.Add(1)
	}
	// The id is X-Bench-Id, or the path's for loads that cannot set a
	// header per request (h2load: /bench/ID).
	v, ok := header(r, "X-Bench-Id"), true
	if v == "" {
		v, ok = strings.CutPrefix(r.URL.Path, "/bench/")
	}
	id := int64(-1)
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		id = i
	}
	ok = ok && v != ""
	sent, _ := strconv.ParseInt(header(r, "X-Bench-Sent"), 10, 64)
	probe := header(r, "X-Bench-Probe") != ""
	t.record(probe, ok, id, sent, now)
	switch {
	case probe:
	case r.ProtoMajor == 2:
		t.h2.Add(1)
	default:
		t.h1.Add(1)
	}
	if d := t.delay.pick(); d > 0 {
		time.Sleep(d)
	}
	writeAnswer(w, r)
}

// record counts one request: a start-up probe, a request of the load (its
// id, negative if unreadable, and when it was sent, 0 if unknown), or one
// without either.
func (t *tally) record(probe, hasID bool, id, sent, now int64) {
	switch {
	case probe:
		t.probes.Add(1)
		t.firstProbe.CompareAndSwap(0, now)
	case hasID:
		if id < 0 || id >= int64(len(t.counts)) {
			t.unknown.Add(1)
			break
		}
		t.arrived.Add(1)
		if t.counts[id].Add(1) == 1 && sent > 0 {
			t.lag[id].Store(now - sent)
		}
	default:
		t.noID.Add(1)
	}
}

// header reads a header without canonicalising the name at run time.
func header(r *http.Request, canonical string) string {
	if v := r.Header[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *shadowServer) summary() ShadowSummary {
	t := s.cur.Load()
	return ShadowSummary{Arrived: t.arrived.Load(), Conns: t.conns.Load(), Peak: t.peak.Load(), HTTP1: t.h1.Load(),
		HTTP2: t.h2.Load(), Probes: t.probes.Load(), FirstProbe: t.firstProbe.Load()}
}

func (s *shadowServer) results() ShadowResults {
	t := s.cur.Load()
	res := ShadowResults{ShadowSummary: s.summary(), Counts: make([]uint32, len(t.counts)), LagNS: make([]int64, len(t.lag)),
		Unknown: t.unknown.Load(), NoID: t.noID.Load(), BodyErr: t.bodyErr.Load()}
	for i := range t.counts {
		res.Counts[i] = t.counts[i].Load()
		res.LagNS[i] = t.lag[i].Load()
	}
	return res
}

// control is the bench's side door into the shadow: reset, summary and
// results, on the shadow namespace's loopback.
func (s *shadowServer) control() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil || n < 0 || n > 1<<26 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		delay, err := parseDelay(r.FormValue("delay"))
		if err != nil {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		s.reset(n, delay)
		reply(w, s.summary())
	})
	mux.HandleFunc("POST /listen", func(w http.ResponseWriter, r *http.Request) {
		switch r.FormValue("state") {
		case "up":
			if err := s.up(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		case "down":
			s.down()
		default:
			http.Error(w, "bad state: want up or down", http.StatusBadRequest)
			return
		}
		reply(w, s.summary())
	})
	mux.HandleFunc("GET /summary", func(w http.ResponseWriter, _ *http.Request) { reply(w, s.summary()) })
	mux.HandleFunc("GET /results", func(w http.ResponseWriter, _ *http.Request) { reply(w, s.results()) })
	return mux
}

// runShadow is the shadow service: it records each mirrored request's id,
// lag and protocol, counts the connections opened to it and the most open
// at once, and can answer slowly.
func runShadow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("shadow", flag.ContinueOnError)
	listen := fs.String("listen", ":8000", "listen `address` for mirrored requests")
	ctl := fs.String("control", "127.0.0.1:8001", "listen `address` for the bench")
	server := fs.String("server", serverHTTP, "how mirrored requests are answered: http (net/http) or sink (cheaper)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server != serverHTTP && *server != serverSink {
		return fmt.Errorf("--server %q: want http or sink", *server)
	}
	s := &shadowServer{addr: *listen, server: *server}
	s.reset(0, delayRange{})
	if err := s.up(); err != nil {
		return err
	}
	cln, err := net.Listen("tcp", *ctl)
	if err != nil {
		return err
	}
	csrv := &http.Server{Handler: s.control(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Println("ready")
	err = serveUntil(ctx, csrv, cln)
	s.down()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// up starts serving mirrored requests, unless the shadow already does.
func (s *shadowServer) up() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv != nil || s.sink != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.bound = ln.Addr().String()
	if s.server == serverSink {
		s.sink = &sinkServer{s: s, ln: ln, conns: map[net.Conn]bool{}}
		go s.sink.serve()
		return nil
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, Protocols: withH2C(),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.opened()
			case http.StateClosed, http.StateHijacked:
				s.closed()
			}
		}}
	go srv.Serve(ln)
	s.srv = srv
	return nil
}

// down closes the listener and every connection: nothing listens on the
// shadow's port any more, so connections to it are refused.
func (s *shadowServer) down() {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
	if s.sink != nil {
		s.sink.close()
		s.sink = nil
	}
}
