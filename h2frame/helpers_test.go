package h2frame

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shadowtee/shadowtee/httpmsg"
)

var (
	testClient = netip.MustParseAddrPort("192.0.2.1:40000")
	testServer = netip.MustParseAddrPort("192.0.2.2:8080")
	t0         = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// wire writes one direction of a connection with x/net's Framer and hpack
// Encoder, as a real peer would.
type wire struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func newWire() *wire {
	w := &wire{}
	w.fr = http2.NewFramer(&w.buf, nil)
	w.fr.AllowIllegalWrites = true
	w.enc = hpack.NewEncoder(&w.hbuf)
	return w
}

// clientWire starts with the preface and the client's SETTINGS.
func clientWire() *wire {
	w := newWire()
	w.buf.WriteString(Preface)
	w.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	return w
}

// serverWire starts with the server's SETTINGS.
func serverWire() *wire {
	w := newWire()
	w.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
	return w
}

// block encodes name/value pairs into a header block.
func (w *wire) block(kv ...string) []byte {
	w.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		w.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), w.hbuf.Bytes()...)
}

func (w *wire) headers(id uint32, end bool, kv ...string) *wire {
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: w.block(kv...), EndStream: end, EndHeaders: true})
	return w
}

// headersSplit writes the block in HEADERS plus CONTINUATION frames of at
// most n bytes of block each.
func (w *wire) headersSplit(id uint32, end bool, n int, kv ...string) *wire {
	b := w.block(kv...)
	first := b[:min(n, len(b))]
	b = b[len(first):]
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(b) == 0})
	for len(b) > 0 {
		p := b[:min(n, len(b))]
		b = b[len(p):]
		w.fr.WriteContinuation(id, len(b) == 0, p)
	}
	return w
}

func (w *wire) data(id uint32, end bool, b string) *wire {
	w.fr.WriteData(id, end, []byte(b))
	return w
}

func (w *wire) bytes() []byte { return append([]byte(nil), w.buf.Bytes()...) }

// take returns what was written since the last take.
func (w *wire) take() []byte {
	b := w.bytes()
	w.buf.Reset()
	return b
}

func get(path string, extra ...string) []string {
	return append([]string{":method", "GET", ":scheme", "http", ":authority", "svc.test:8080", ":path", path}, extra...)
}

func post(path string, extra ...string) []string {
	return append([]string{":method", "POST", ":scheme", "http", ":authority", "svc.test:8080", ":path", path}, extra...)
}

// got is what a recorder saw of one request, copied out of it.
type got struct {
	id        uint32
	tag       any
	method    string
	scheme    string
	authority string
	path      string
	headers   string // "name: value\n" per field
	trailers  string
	body      string
	streaming bool
	stream    *httpmsg.BodyStream
	time      time.Time
}

func (g got) String() string {
	return fmt.Sprintf("#%d %s %s://%s%s stream=%v\n%sbody=%q\ntrailers:\n%s", g.id, g.method, g.scheme, g.authority, g.path, g.streaming, g.headers, g.body, g.trailers)
}

func fieldsString(visit func(func(name, value []byte) bool)) string {
	var sb strings.Builder
	visit(func(n, v []byte) bool {
		fmt.Fprintf(&sb, "%s: %s\n", n, v)
		return true
	})
	return sb.String()
}

func snapshot(r httpmsg.Request, tag any) got {
	g := got{
		id: r.StreamID(), tag: tag, method: string(r.Method()), scheme: string(r.Scheme()),
		authority: string(r.Authority()), path: string(r.Path()),
		headers: fieldsString(r.VisitHeaders), trailers: fieldsString(r.VisitTrailers),
		stream: r.Stream(), streaming: r.Stream() != nil, time: r.Time(),
	}
	r.VisitBody(func(b []byte) bool { g.body += string(b); return true })
	if r.BodyLen() >= 0 && int64(len(g.body)) != r.BodyLen() {
		panic("BodyLen disagrees with VisitBody")
	}
	return g
}

// recorder is a consumer: it keeps every request (tag = path), and records
// emits, drops and answers.
type recorder struct {
	cfg     Config
	stats   Stats
	got     []got
	drops   []string
	answers map[any]*httpmsg.Answer
	nils    []any
	order   []string // "emit tag", "answer tag", "drop tag"
	refuse  func(path string) bool
}

func newRecorder() *recorder {
	rec := &recorder{answers: map[any]*httpmsg.Answer{}}
	rec.cfg = Config{
		Stats: &rec.stats,
		Keep: func(r httpmsg.Request) (any, bool) {
			p := string(r.Path())
			if rec.refuse != nil && rec.refuse(p) {
				return nil, false
			}
			return fmt.Sprintf("%d%s", r.StreamID(), p), true
		},
		Emit: func(r httpmsg.Request, tag any) {
			rec.got = append(rec.got, snapshot(r, tag))
			rec.order = append(rec.order, fmt.Sprint("emit ", tag))
			r.Release()
		},
		Drop: func(tag any, why Reason) {
			rec.drops = append(rec.drops, fmt.Sprint(tag, " ", why))
			rec.order = append(rec.order, fmt.Sprint("drop ", tag))
		},
	}
	return rec
}

// withAnswers turns answer capture on.
func (rec *recorder) withAnswers() *recorder {
	rec.cfg.Answer = func(tag any, a *httpmsg.Answer) {
		if _, dup := rec.answers[tag]; dup || contains(rec.nils, tag) {
			panic(fmt.Sprint("second answer for ", tag))
		}
		rec.order = append(rec.order, fmt.Sprint("answer ", tag))
		if a == nil {
			rec.nils = append(rec.nils, tag)
			return
		}
		rec.answers[tag] = a
	}
	return rec
}

func contains(xs []any, x any) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (rec *recorder) conn(mid bool) *Conn { return NewConn(&rec.cfg, testClient, testServer, mid) }

// skipped returns the non-zero skip counts as "reason=n ...".
func (s *Stats) skipped() string { return counts(&s.Skipped) }
func (s *Stats) aborted() string { return counts(&s.Aborted) }
func (s *Stats) gaveUp() string  { return counts(&s.GaveUp) }

func counts(a *[NumReasons]atomic.Uint64) string {
	var parts []string
	for i := range a {
		if n := a[i].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%v=%d", Reason(i), n))
		}
	}
	return strings.Join(parts, " ")
}

// feedAll gives the client's bytes to c in one call, then the server's.
func feed(c *Conn, client, server []byte) {
	if len(client) > 0 {
		c.ClientData(client, t0)
	}
	if len(server) > 0 {
		c.ServerData(server, t0)
	}
}

// feedBytes gives b to fn one byte at a time.
func feedBytes(b []byte, fn func([]byte, time.Time)) {
	for i := range b {
		fn(b[i:i+1], t0)
	}
}

func mustEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
