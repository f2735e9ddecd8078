package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
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
		return runLoad(ctx, args)
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
// 200 with a small body, as fast as net/http allows.
func runPrimary(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("primary", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "listen `address`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	body := []byte("ok\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["Content-Length"] = []string{"3"}
		w.Write(body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Println("ready")
	return serveUntil(ctx, srv, ln)
}

// tally is what the shadow saw since its last reset.
type tally struct {
	counts  []atomic.Uint32 // arrivals per request id
	lag     []atomic.Int64  // first arrival minus X-Bench-Sent, ns
	delay   time.Duration   // how long to wait before answering
	arrived atomic.Int64    // requests with an id in range, duplicates included
	unknown atomic.Int64    // ids out of range
	noID    atomic.Int64    // requests without an id or probe header
	bodyErr atomic.Int64    // bodies that did not arrive whole
	conns   atomic.Int64    // connections accepted
	probes  atomic.Int64
	// firstProbe is when the first start-up probe arrived, unix ns.
	firstProbe atomic.Int64
}

// ShadowSummary is the shadow's small report, polled while waiting.
type ShadowSummary struct {
	Arrived    int64 `json:"arrived"`
	Conns      int64 `json:"conns"`
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
	cur atomic.Pointer[tally]
}

func (s *shadowServer) reset(n int, delay time.Duration) {
	s.cur.Store(&tally{counts: make([]atomic.Uint32, n), lag: make([]atomic.Int64, n), delay: delay})
}

func (s *shadowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	t := s.cur.Load()
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil || (r.ContentLength >= 0 && n != r.ContentLength) {
		t.bodyErr.Add(1)
	}
	switch id, sent := header(r, "X-Bench-Id"), header(r, "X-Bench-Sent"); {
	case header(r, "X-Bench-Probe") != "":
		t.probes.Add(1)
		t.firstProbe.CompareAndSwap(0, now)
	case id != "":
		i, err := strconv.Atoi(id)
		if err != nil || i < 0 || i >= len(t.counts) {
			t.unknown.Add(1)
			break
		}
		t.arrived.Add(1)
		if t.counts[i].Add(1) == 1 {
			if ns, err := strconv.ParseInt(sent, 10, 64); err == nil {
				t.lag[i].Store(now - ns)
			}
		}
	default:
		t.noID.Add(1)
	}
	if t.delay > 0 {
		time.Sleep(t.delay)
	}
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
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
	return ShadowSummary{Arrived: t.arrived.Load(), Conns: t.conns.Load(),
		Probes: t.probes.Load(), FirstProbe: t.firstProbe.Load()}
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
		delay, err := time.ParseDuration(r.FormValue("delay"))
		if err != nil {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		s.reset(n, delay)
		reply(w, s.summary())
	})
	mux.HandleFunc("GET /summary", func(w http.ResponseWriter, _ *http.Request) { reply(w, s.summary()) })
	mux.HandleFunc("GET /results", func(w http.ResponseWriter, _ *http.Request) { reply(w, s.results()) })
	return mux
}

// runShadow is the shadow service: it records each mirrored request's id
// and lag, counts the connections opened to it, and can answer slowly.
func runShadow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("shadow", flag.ContinueOnError)
	listen := fs.String("listen", ":8000", "listen `address` for mirrored requests")
	ctl := fs.String("control", "127.0.0.1:8001", "listen `address` for the bench")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s := &shadowServer{}
	s.reset(0, 0)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	cln, err := net.Listen("tcp", *ctl)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.cur.Load().conns.Add(1)
			}
		}}
	csrv := &http.Server{Handler: s.control(), ReadHeaderTimeout: 10 * time.Second}
	go serveUntil(ctx, csrv, cln)
	fmt.Println("ready")
	err = serveUntil(ctx, srv, ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
