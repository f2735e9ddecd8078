package main

import (
	"math"
	"net"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpsyntax"
	"github.com/shadowtee/shadowtee/internal/sink"
)

// Shadow servers: how the shadow answers mirrored requests.
const (
	serverHTTP = "http" // net/http, which also checks each request as a real server would
	serverSink = "sink" // a framer of its own, several times cheaper
)

// sinkServer answers mirrored requests itself and records them as the
// net/http shadow does, with internal/sink, which frames requests and
// answers pipelined requests in order, many answers per write: on two
// cores, a net/http shadow answering 50,000 mirrored requests a second
// takes half a core from the processes it shares a CPU with, which a
// shadow elsewhere would not. It speaks HTTP/1.1 only and answers every
// request with an empty 200.
type sinkServer struct {
	s  *shadowServer
	ln net.Listener

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func (k *sinkServer) serve() {
	for {
		c, err := k.ln.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		if k.conns == nil {
			k.mu.Unlock()
			c.Close()
			return
		}
		k.s.opened()
		k.conns[c] = true
		k.mu.Unlock()
		k.wg.Go(func() {
			k.answer(c)
			k.mu.Lock()
			delete(k.conns, c)
			k.mu.Unlock()
			c.Close()
			k.s.closed()
		})
	}
}

// close stops listening and closes every connection.
func (k *sinkServer) close() {
	k.ln.Close()
	k.mu.Lock()
	for c := range k.conns {
		c.Close()
	}
	k.conns = nil
	k.mu.Unlock()
	k.wg.Wait()
}

// answer serves one connection until it ends or sends something that is
// not an HTTP/1.1 request, recording each request as the net/http shadow
// does.
func (k *sinkServer) answer(c net.Conn) {
	var h sinkHead
	h.reset()
	sink.AnswerWith(c, sink.Hooks{
		Header: h.header,
		Request: func() time.Duration {
			t := k.s.cur.Load()
			t.record(h.probe, h.hasID, h.id, h.sent, time.Now().UnixNano())
			if !h.probe {
				t.h1.Add(1)
			}
			h.reset()
			return t.delay.pick()
		},
		BadBody: func() { k.s.cur.Load().bodyErr.Add(1) },
	})
}

// sinkHead is what the sink records of a request head.
type sinkHead struct {
	probe, hasID bool
	id, sent     int64
}

func (h *sinkHead) reset() { *h = sinkHead{id: -1} }

// header takes what the sink records from one header line.
func (h *sinkHead) header(name, value []byte) {
	switch {
	case httpsyntax.EqualFold(name, "x-bench-probe"):
		h.probe = true
	case httpsyntax.EqualFold(name, "x-bench-id"):
		h.hasID = true
		if n, ok := parseDigits(value); ok {
			h.id = n
		}
	case httpsyntax.EqualFold(name, "x-bench-sent"):
		h.sent, _ = parseDigits(value)
	}
}

// parseDigits reads a non-negative decimal int64, such as a Unix time in
// nanoseconds (19 digits).
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}
