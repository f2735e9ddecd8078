package httpframe

import (
	"strings"
	"testing"
	"time"
)

const (
	getA   = "GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n"
	getB   = "GET /b?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
	postCL = "POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\n" +
		"Content-Length: 11\r\n\r\nhello world"
	postChunked = "POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"5;name=val\r\nhello\r\n6 ; a=\"q\" ; b\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
	expectHead = "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
	connect    = "CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n"
	tlsHello   = "\x16\x03\x01\x00\x05hello"
	wsUpgrade  = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// wsFrame is a masked text frame carrying "Hello" (RFC 6455 5.7).
	wsFrame    = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
	h2Preface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2Frames   = "\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x0f\x00\x01"
	h2cUpgrade = "GET /h HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
		"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
	teAndCL   = "POST /tecl HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	junk      = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 random junk\r\n"
	lfGet     = "GET /lf HTTP/1.1\nHost: a\n\n"
	lfPost    = "POST /p HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
	obsFold   = "GET /fold HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n"
	badChunks = "POST /mc HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
)

var bigHead = "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 200) + "\r\n\r\n"

// wantReq is an emitted request: its Raw, BodyLen, and the index of the
// piece that carried its first byte.
type wantReq struct {
	raw  string
	body int64
	at   int
}

type frameCase struct {
	name   string
	mid    bool
	tweak  func(*Config)
	keep   func(*Request) bool
	in     []string
	want   []wantReq
	counts counts
	keeps  int // Keep calls
}

func skipped(kv ...any) map[string]uint64 {
	m := map[string]uint64{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = uint64(kv[i+1].(int))
	}
	return m
}

func maxHeader(n int) func(*Config) { return func(c *Config) { c.MaxHeaderBytes = n } }
func maxBody(n int64) func(*Config) { return func(c *Config) { c.MaxBodyBytes = n } }

func clPost(path, cl, body string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: " + cl + "\r\n\r\n" + body
}

func tePost(path string, te ...string) string {
	s := "POST " + path + " HTTP/1.1\r\nHost: a\r\n"
	for _, v := range te {
		s += "Transfer-Encoding: " + v + "\r\n"
	}
	return s + "\r\n"
}

var frameCases = []frameCase{
	{name: "simple GET", in: []string{getA},
		want: []wantReq{{getA, 0, 0}}, counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "pipelined in one call", in: []string{getA + getB + postCL + postChunked + getA},
		want:   []wantReq{{getA, 0, 0}, {getB, 0, 0}, {postCL, 11, 0}, {postChunked, 11, 0}, {getA, 0, 0}},
		counts: counts{Requests: 5, Emitted: 5}, keeps: 5},
	{name: "HTTP/1.0 without Host", in: []string{"GET /old HTTP/1.0\r\nUser-Agent: t\r\n\r\n"},
		want:   []wantReq{{"GET /old HTTP/1.0\r\nUser-Agent: t\r\n\r\n", 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "HTTP/1.0 with Host and body", in: []string{"POST /f HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"},
		want:   []wantReq{{"POST /f HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 3, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "absolute-form", in: []string{"GET http://foo:8080/x?y HTTP/1.1\r\nHost: foo:8080\r\n\r\n"},
		want:   []wantReq{{"GET http://foo:8080/x?y HTTP/1.1\r\nHost: foo:8080\r\n\r\n", 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "asterisk-form", in: []string{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
		want:   []wantReq{{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "unlisted method", in: []string{"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n"},
		want:   []wantReq{{"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "Content-Length zero", in: []string{clPost("/z", "0", "")},
		want: []wantReq{{clPost("/z", "0", ""), 0, 0}}, counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "Expect 100-continue", in: []string{expectHead, "12345", getB},
		want:   []wantReq{{expectHead + "12345", 5, 0}, {getB, 0, 2}},
		counts: counts{Requests: 2, Emitted: 2}, keeps: 2},
	{name: "CONNECT makes the stream opaque", in: []string{connect + tlsHello, getA},
		counts: counts{Requests: 1, Opaque: uint64(len(tlsHello) + len(getA)), Skipped: skipped("connect", 1)}},
	{name: "WebSocket upgrade then frames", in: []string{wsUpgrade, wsFrame, wsFrame},
		counts: counts{Requests: 1, Garbage: 2 * uint64(len(wsFrame)), Skipped: skipped("upgrade", 1)}},
	{name: "refused upgrade then a request", in: []string{wsUpgrade + getA},
		want:   []wantReq{{getA, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Resyncs: 1, Skipped: skipped("upgrade", 1)}, keeps: 1},
	{name: "upgrade, frames, then a request", in: []string{wsUpgrade, wsFrame + getA},
		want: []wantReq{{getA, 0, 1}},
		counts: counts{Requests: 2, Emitted: 1, Resyncs: 1, Garbage: uint64(len(wsFrame)),
			Skipped: skipped("upgrade", 1)}, keeps: 1},
	{name: "HTTP/1.0 Upgrade is ignored", in: []string{"GET /u HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
		want:   []wantReq{{"GET /u HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "HTTP/2 prior knowledge", in: []string{h2Preface + h2Frames, getA},
		counts: counts{Opaque: uint64(len(h2Preface) - 16 + len(h2Frames) + len(getA)), Skipped: skipped("http2", 1)}},
	// The upgrade request is HTTP/2's stream 1, mirrored whole; what
	// follows is not HTTP/1 and is left to the caller (see TestFeedSwitch).
	{name: "h2c upgrade then preface", in: []string{h2cUpgrade, h2Preface + h2Frames},
		want:   []wantReq{{h2cUpgrade, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "Transfer-Encoding beats Content-Length", in: []string{teAndCL + getB},
		want:   []wantReq{{teAndCL, 3, 0}, {getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 2}, keeps: 2},
	{name: "bad Content-Length", in: []string{clPost("/x", "1x", "") + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(clPost("/x", "1x", ""))),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "negative Content-Length", in: []string{clPost("/x", "-1", "") + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(clPost("/x", "-1", ""))),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "differing Content-Length", in: []string{clPost("/x", "5\r\nContent-Length: 6", "hello") + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1,
			Garbage: uint64(len(clPost("/x", "5\r\nContent-Length: 6", "hello"))), Skipped: skipped("malformed", 1)},
		keeps: 1},
	{name: "identical Content-Length values", in: []string{clPost("/l", "5, 5\r\nContent-Length: 5", "hello")},
		want:   []wantReq{{clPost("/l", "5, 5\r\nContent-Length: 5", "hello"), 5, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "gzip without chunked", in: []string{tePost("/g", "gzip") + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(tePost("/g", "gzip"))),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "gzip then chunked", in: []string{tePost("/gc", "gzip, chunked") + "3\r\nabc\r\n0\r\n\r\n"},
		want:   []wantReq{{tePost("/gc", "gzip, chunked") + "3\r\nabc\r\n0\r\n\r\n", 3, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "codings over two fields", in: []string{tePost("/gc", "gzip", "chunked") + "0\r\n\r\n"},
		want:   []wantReq{{tePost("/gc", "gzip", "chunked") + "0\r\n\r\n", 0, 0}},
		counts: counts{Requests: 1, Emitted: 1}, keeps: 1},
	{name: "chunked then gzip", in: []string{tePost("/cg", "chunked, gzip") + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(tePost("/cg", "chunked, gzip"))),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "Transfer-Encoding in HTTP/1.0",
		in:   []string{"POST /t HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1,
			Garbage: uint64(len("POST /t HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "header too large", tweak: maxHeader(128), in: []string{bigHead + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(bigHead)),
			Skipped: skipped("header_too_large", 1)}, keeps: 1},
	{name: "request line too large", tweak: maxHeader(64), in: []string{"GET /" + strings.Repeat("a", 100)},
		counts: counts{Garbage: 105, Skipped: skipped("header_too_large", 1)}},
	{name: "body too large by Content-Length", tweak: maxBody(10), in: []string{postCL + getB},
		want:   []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("body_too_large", 1)}, keeps: 1},
	{name: "body too large by chunks", tweak: maxBody(8), in: []string{postChunked + getB},
		want:   []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("body_too_large", 1)}, keeps: 2},
	{name: "body too large by chunks, split", tweak: maxBody(8), in: []string{postChunked[:110], postChunked[110:] + getB},
		want:   []wantReq{{getB, 0, 1}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("body_too_large", 1)}, keeps: 2},
	{name: "garbage then a request", in: []string{junk, getA},
		want:   []wantReq{{getA, 0, 1}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(junk)), Skipped: skipped("malformed", 1)},
		keeps:  1},
	{name: "bad version", in: []string{"GET / HTTP/1.2\r\nHost: a\r\n\r\n" + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len("GET / HTTP/1.2\r\nHost: a\r\n\r\n")),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "obs-fold is refused", in: []string{obsFold + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len(obsFold)),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "space before colon", in: []string{"GET /sp HTTP/1.1\r\nHost : a\r\n\r\n" + getB},
		want: []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len("GET /sp HTTP/1.1\r\nHost : a\r\n\r\n")),
			Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "broken chunked body", in: []string{badChunks + "zz\r\n" + getB},
		want:   []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Resyncs: 1, Garbage: 4, Skipped: skipped("malformed", 1)},
		keeps:  2},
	{name: "several Host fields", in: []string{"GET /mh HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + getB},
		want:   []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "HTTP/1.1 without Host, body skipped", in: []string{"POST /nh HTTP/1.1\r\nContent-Length: 3\r\n\r\nGET" + getB},
		want:   []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "target that is no URI", in: []string{"GET foo HTTP/1.1\r\nHost: a\r\n\r\n" + getB},
		want:   []wantReq{{getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("malformed", 1)}, keeps: 1},
	{name: "mid-stream start at a request", mid: true, in: []string{getA},
		want: []wantReq{{getA, 0, 0}}, counts: counts{Requests: 1, Emitted: 1, Resyncs: 1}, keeps: 1},
	{name: "mid-stream start inside a body", mid: true, in: []string{"orld\"}" + postCL + getB},
		want:   []wantReq{{postCL, 11, 0}, {getB, 0, 0}},
		counts: counts{Requests: 2, Emitted: 2, Resyncs: 1, Garbage: 6}, keeps: 2},
	{name: "mid-stream start inside headers", mid: true, in: []string{"Agent: t/1\r\n\r\n", getB},
		want:   []wantReq{{getB, 0, 1}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: uint64(len("Agent: t/1\r\n\r\n"))}, keeps: 1},
	{name: "mid-stream method split over calls", mid: true, in: []string{"orld\"}PO", postCL[2:]},
		want:   []wantReq{{postCL, 11, 0}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Garbage: 6}, keeps: 1},
	{name: "gap in a body", in: []string{postCL[:len(postCL)-5], gap, getB},
		want:   []wantReq{{getB, 0, 2}},
		counts: counts{Requests: 2, Emitted: 1, Resyncs: 1, Skipped: skipped("incomplete", 1)}, keeps: 2},
	{name: "gap in a body, next request glued to it", in: []string{postCL[:len(postCL)-5], gap, "rld" + getB},
		want:   []wantReq{{getB, 0, 2}},
		counts: counts{Requests: 2, Emitted: 1, Resyncs: 1, Garbage: 3, Skipped: skipped("incomplete", 1)}, keeps: 2},
	{name: "gap in a head", in: []string{getA[:20], gap, getB},
		want:   []wantReq{{getB, 0, 2}},
		counts: counts{Requests: 1, Emitted: 1, Resyncs: 1, Skipped: skipped("incomplete", 1)}, keeps: 1},
	{name: "gap between requests", in: []string{getA, gap, getB},
		want:   []wantReq{{getA, 0, 0}, {getB, 0, 2}},
		counts: counts{Requests: 2, Emitted: 2, Resyncs: 1}, keeps: 2},
	{name: "end in a head", in: []string{getA[:10]},
		counts: counts{Skipped: skipped("incomplete", 1)}},
	{name: "end in a body", in: []string{postCL[:len(postCL)-3]},
		counts: counts{Requests: 1, Skipped: skipped("incomplete", 1)}, keeps: 1},
	{name: "Keep says no", keep: func(r *Request) bool { return string(r.Bytes(r.MethodSpan)) != "POST" },
		in:     []string{postCL + getB + postChunked, getA},
		want:   []wantReq{{getB, 0, 0}, {getA, 0, 1}},
		counts: counts{Requests: 4, Emitted: 2}, keeps: 4},
	{name: "Keep says no, body split", keep: func(r *Request) bool { return string(r.Bytes(r.MethodSpan)) != "POST" },
		in:     []string{postCL[:100], postCL[100:] + getB},
		want:   []wantReq{{getB, 0, 1}},
		counts: counts{Requests: 2, Emitted: 1}, keeps: 2},
	{name: "leading empty lines", in: []string{"\r\n\r\n" + getA + "\r\n", "\n" + getB},
		want:   []wantReq{{getA, 0, 0}, {getB, 0, 1}},
		counts: counts{Requests: 2, Emitted: 2}, keeps: 2},
	{name: "bare LF line ends", in: []string{lfGet + lfPost},
		want:   []wantReq{{lfGet, 0, 0}, {lfPost, 3, 0}},
		counts: counts{Requests: 2, Emitted: 2}, keeps: 2},
	{name: "Budget exhausted",
		tweak: func(c *Config) { c.Budget = NewBudget(1024) },
		in: []string{clPost("/big", "2000", strings.Repeat("b", 1000)),
			strings.Repeat("b", 1000) + getB},
		want:   []wantReq{{getB, 0, 1}},
		counts: counts{Requests: 2, Emitted: 1, Skipped: skipped("memory", 1)}, keeps: 2},
}

func TestFraming(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(tc.mid, tc.tweak)
			h.keep = tc.keep
			h.feed(tc.in...)
			h.p.End()
			defer h.release()
			h.checkAll(t)
			if got := snapshot(&h.stats); !equalCounts(got, tc.counts) {
				t.Errorf("counts\n got %v\nwant %v", got, tc.counts)
			}
			if h.keepCalls != tc.keeps {
				t.Errorf("Keep called %d times, want %d", h.keepCalls, tc.keeps)
			}
			if len(h.got) != len(tc.want) {
				t.Fatalf("emitted %d requests, want %d: %q", len(h.got), len(tc.want), raws(h.got))
			}
			for i, w := range tc.want {
				r := h.got[i]
				if string(r.Raw) != w.raw {
					t.Errorf("request %d:\n got %q\nwant %q", i, r.Raw, w.raw)
				}
				if r.DecodedLen != w.body {
					t.Errorf("request %d: BodyLen %d, want %d", i, r.DecodedLen, w.body)
				}
				if want := t0.Add(time.Duration(w.at) * time.Second); !r.Captured.Equal(want) {
					t.Errorf("request %d: Time %v, want %v", i, r.Captured, want)
				}
			}
			if b := h.cfg.Budget; b != nil && b.Used() != 0 {
				t.Errorf("Budget holds %d bytes after End", b.Used())
			}
		})
	}
}

func equalCounts(a, b counts) bool {
	if a.Requests != b.Requests || a.Emitted != b.Emitted || a.Resyncs != b.Resyncs ||
		a.Garbage != b.Garbage || a.Opaque != b.Opaque || len(a.Skipped) != len(b.Skipped) {
		return false
	}
	for k, v := range a.Skipped {
		if b.Skipped[k] != v {
			return false
		}
	}
	return true
}

func raws(rs []*Request) []string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r.Raw))
	}
	return s
}
