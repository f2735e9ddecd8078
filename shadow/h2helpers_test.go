package shadow

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// newH2Server starts net/http's own HTTP/2 server on loopback: h2c with
// prior knowledge, or h2 over TLS (then the returned config trusts it),
// recording every request like newRecordingServer.
func newH2Server(t *testing.T, secure bool, handler http.HandlerFunc, tune ...func(*httptest.Server)) (*httptest.Server, *recorder, *tls.Config) {
	t.Helper()
	var tc *tls.Config
	ts, rc := newRecordingServer(t, secure, handler, append([]func(*httptest.Server){func(ts *httptest.Server) {
		if secure {
			ts.EnableHTTP2 = true
			return
		}
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		ts.Config.Protocols = &p
	}}, tune...)...)
	if secure {
		pool := x509.NewCertPool()
		pool.AddCert(ts.Certificate())
		tc = &tls.Config{RootCAs: pool, ServerName: "example.com"}
	}
	return ts, rc, tc
}

// newH2CServer starts net/http's h2c server with handler alone, which
// reads request bodies as they come (newH2Server reads them whole first).
func newH2CServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(handler)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// maxStreams makes a net/http server allow n concurrent streams.
func maxStreams(n int) func(*httptest.Server) {
	return func(ts *httptest.Server) { ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: n} }
}

// newH2Sender returns an HTTP/2 sender closed at the end of the test.
func newH2Sender(t *testing.T, cfg SenderConfig) *HTTP2Sender {
	t.Helper()
	s, err := NewHTTP2(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// closeH2 closes s, waiting for what is in flight, and checks the ledger
// and that nothing of s is left.
func closeH2(t *testing.T, s *HTTP2Sender) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkAccounting(t, s.Stats())
	checkNoGoroutines(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) != 0 || s.connecting != 0 || s.inFlight != 0 || s.pending.len() != 0 || s.waiting != 0 || len(s.flows) != 0 {
		t.Errorf("left after Close: %d conns, %d connecting, %d in flight, %d pending, %d waiting, %d flows",
			len(s.conns), s.connecting, s.inFlight, s.pending.len(), s.waiting, len(s.flows))
	}
}

// ended is how many queued requests have ended.
func ended(st *Stats) uint64 { return st.Mirrored.Load() + failures(st) }

// h2Req is one request as a scripted HTTP/2 shadow read it.
type h2Req struct {
	conn     int // which connection, from 1
	id       uint32
	fields   []hpack.HeaderField // pseudo-headers included, in order
	body     []byte
	trailers []hpack.HeaderField
	ended    bool // END_STREAM arrived
	reset    http2.ErrCode
	wasReset bool
}

func (r *h2Req) get(name string) string {
	for _, f := range r.fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// h2Shadow is a scripted HTTP/2 server for what net/http's would never do:
// small windows, GOAWAY, RST_STREAM, silence. It frames with x/net's
// Framer and decodes with its HPACK decoder, and calls handle for every
// request once its END_STREAM has arrived (and onHeaders, if set, once its
// HEADERS have).
type h2Shadow struct {
	*rawServer
	settings []http2.Setting
	// windowDelay, when set, makes the server give back the windows of
	// what it reads only after that long: a shadow that reads slowly.
	windowDelay time.Duration
	// noWindow, when set, makes the server never give windows back: a
	// handler that does not read the body.
	noWindow  bool
	handle    func(sc *h2ServerConn, r *h2Req)
	onHeaders func(sc *h2ServerConn, r *h2Req)

	mu    sync.Mutex
	reqs  []*h2Req // in arrival order
	conns atomic.Int32
}

// h2ServerConn is one connection of an h2Shadow.
type h2ServerConn struct {
	n   int
	c   net.Conn
	wmu sync.Mutex
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func newH2Shadow(t *testing.T, sh *h2Shadow) *h2Shadow {
	sh.rawServer = newRawServer(t, sh.serve)
	return sh
}

func (sh *h2Shadow) all() []*h2Req {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]*h2Req, len(sh.reqs))
	for i, r := range sh.reqs {
		cp := *r
		out[i] = &cp
	}
	return out
}

func (sh *h2Shadow) serve(c net.Conn) {
	n := int(sh.conns.Add(1))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	sc := &h2ServerConn{n: n, c: c, fr: http2.NewFramer(c, c)}
	sc.enc = hpack.NewEncoder(&sc.buf)
	sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sc.write(func() { sc.fr.WriteSettings(sh.settings...) })
	streams := map[uint32]*h2Req{}
	for {
		f, err := sc.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				sc.write(func() { sc.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				sc.write(func() { sc.fr.WritePing(true, f.Data) })
			}
		case *http2.MetaHeadersFrame:
			r := streams[f.StreamID]
			if r == nil {
				r = &h2Req{conn: n, id: f.StreamID, fields: append([]hpack.HeaderField(nil), f.Fields...)}
				streams[f.StreamID] = r
				sh.mu.Lock()
				sh.reqs = append(sh.reqs, r)
				sh.mu.Unlock()
				if sh.onHeaders != nil {
					sh.onHeaders(sc, r)
				}
			} else {
				sh.mu.Lock()
				r.trailers = append([]hpack.HeaderField(nil), f.Fields...)
				sh.mu.Unlock()
			}
			if f.StreamEnded() {
				sh.ended(sc, r)
			}
		case *http2.DataFrame:
			r := streams[f.StreamID]
			if r == nil {
				continue
			}
			sh.mu.Lock()
			r.body = append(r.body, f.Data()...)
			sh.mu.Unlock()
			if n := f.Header().Length; n > 0 {
				give := func() {
					sc.write(func() {
						sc.fr.WriteWindowUpdate(0, n)
						if !f.StreamEnded() {
							sc.fr.WriteWindowUpdate(f.StreamID, n)
						}
					})
				}
				if sh.windowDelay > 0 {
					time.Sleep(sh.windowDelay)
				}
				if !sh.noWindow {
					give()
				}
			}
			if f.StreamEnded() {
				sh.ended(sc, r)
			}
		case *http2.RSTStreamFrame:
			if r := streams[f.StreamID]; r != nil {
				sh.mu.Lock()
				r.reset, r.wasReset = f.ErrCode, true
				sh.mu.Unlock()
			}
		}
	}
}

func (sh *h2Shadow) ended(sc *h2ServerConn, r *h2Req) {
	sh.mu.Lock()
	r.ended = true
	sh.mu.Unlock()
	if sh.handle != nil {
		sh.handle(sc, r)
	}
}

func (sc *h2ServerConn) write(fn func()) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	fn()
}

// answer sends a whole answer on stream id: status, fields, body, and
// trailers when given.
func (sc *h2ServerConn) answer(id uint32, status string, body string, trailers ...hpack.HeaderField) {
	sc.write(func() {
		sc.buf.Reset()
		sc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
		sc.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/plain"})
		endHeaders := body == "" && len(trailers) == 0
		sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.buf.Bytes(), EndHeaders: true, EndStream: endHeaders})
		if body != "" {
			sc.fr.WriteData(id, len(trailers) == 0, []byte(body))
		}
		if len(trailers) > 0 {
			sc.buf.Reset()
			for _, f := range trailers {
				sc.enc.WriteField(f)
			}
			sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.buf.Bytes(), EndHeaders: true, EndStream: true})
		}
	})
}

func (sc *h2ServerConn) rst(id uint32, code http2.ErrCode) {
	sc.write(func() { sc.fr.WriteRSTStream(id, code) })
}

func (sc *h2ServerConn) goAway(last uint32, code http2.ErrCode) {
	sc.write(func() { sc.fr.WriteGoAway(last, code, nil) })
}

// seqOf is the x-seq field of a request the shadow read.
func seqOf(r *h2Req) string { return r.get("x-seq") }

// countSeqs counts the requests the shadow read whole, by x-seq.
func countSeqs(reqs []*h2Req) map[string]int {
	m := map[string]int{}
	for _, r := range reqs {
		if r.ended && !strings.HasPrefix(seqOf(r), "-") {
			m[seqOf(r)]++
		}
	}
	return m
}
