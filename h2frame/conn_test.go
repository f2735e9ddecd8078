package h2frame

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shadowtee/shadowtee/httpmsg"
)

func TestPriorKnowledgeGET(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	w := clientWire().headers(1, true, get("/a?b=c", "user-agent", "curl/7.88.1", "accept", "*/*")...)
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 {
		t.Fatalf("got %d requests, want 1; skipped %s gave up %s", len(rec.got), rec.stats.skipped(), rec.stats.gaveUp())
	}
	g := rec.got[0]
	want := got{id: 1, tag: "1/a?b=c", method: "GET", scheme: "http", authority: "svc.test:8080", path: "/a?b=c",
		headers: "user-agent: curl/7.88.1\naccept: */*\n", time: t0}
	if g != want {
		t.Fatalf("got\n%v\nwant\n%v", g, want)
	}
	mustEqual(t, "Requests", rec.stats.Requests.Load(), 1)
	mustEqual(t, "Emitted", rec.stats.Emitted.Load(), 1)
	c.End()
}

// Padding, priority, a body in several DATA frames, cookie crumbs and a
// repeated request that the encoder sends from its dynamic table.
func TestPaddingPriorityBody(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	w := clientWire()
	fields := post("/upload", "content-type", "text/plain", "cookie", "a=1", "cookie", "b=2")
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(fields...), EndHeaders: true,
		PadLength: 7, Priority: http2.PriorityParam{StreamDep: 0, Weight: 200, Exclusive: true}})
	w.fr.WriteDataPadded(1, false, []byte("hello "), make([]byte, 13))
	w.fr.WriteDataPadded(1, false, nil, make([]byte, 3))
	w.fr.WriteDataPadded(1, true, []byte("world"), nil)
	w.headers(3, false, fields...).data(3, true, "again")
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 2 {
		t.Fatalf("got %d requests, want 2; skipped %s gave up %s", len(rec.got), rec.stats.skipped(), rec.stats.gaveUp())
	}
	for i, body := range []string{"hello world", "again"} {
		g := rec.got[i]
		mustEqual(t, "method", g.method, "POST")
		mustEqual(t, "headers", g.headers, "content-type: text/plain\ncookie: a=1\ncookie: b=2\n")
		mustEqual(t, "body", g.body, body)
	}
}

func TestContinuation(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	long := strings.Repeat("v", 3000)
	w := clientWire().headersSplit(1, true, 100, get("/c", "x-long", long, "x-other", "1")...)
	w.headersSplit(3, false, 1, post("/d", "x-long", long)...).data(3, true, "body")
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 2 {
		t.Fatalf("got %d requests; skipped %s gave up %s", len(rec.got), rec.stats.skipped(), rec.stats.gaveUp())
	}
	mustEqual(t, "headers", rec.got[0].headers, "x-long: "+long+"\nx-other: 1\n")
	mustEqual(t, "body", rec.got[1].body, "body")
}

// Many streams whose frames interleave, answered out of order.
func TestConcurrentStreams(t *testing.T) {
	rec := newRecorder().withAnswers()
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	const n = 40
	for i := uint32(0); i < n; i++ {
		cw.headers(2*i+1, false, post("/s/"+itoa(int(i)))...)
	}
	for round := 0; round < 3; round++ {
		for i := uint32(0); i < n; i++ {
			cw.data(2*i+1, round == 2, itoa(round))
		}
	}
	for i := int(n) - 1; i >= 0; i-- {
		id := uint32(2*i + 1)
		sw.headers(id, false, ":status", "200", "x-id", itoa(i)).data(id, true, "answer "+itoa(i))
	}
	feed(c, cw.bytes(), sw.bytes())
	if len(rec.got) != n || len(rec.answers) != n {
		t.Fatalf("got %d requests and %d answers, want %d; skipped %s", len(rec.got), len(rec.answers), n, rec.stats.skipped())
	}
	for i, g := range rec.got {
		mustEqual(t, "body", g.body, "012")
		mustEqual(t, "path", g.path, "/s/"+itoa(i))
		a := rec.answers[g.tag]
		mustEqual(t, "answer", string(a.Body), "answer "+itoa(i))
		mustEqual(t, "answer header", string(a.Header[0].Value), itoa(i))
	}
	if len(c.streams) != 0 {
		t.Fatalf("%d streams left", len(c.streams))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestHeaderListLimit(t *testing.T) {
	rec := newRecorder()
	rec.cfg.MaxHeaderListSize = 4096
	c := rec.conn(false)
	w := clientWire()
	// Over the limit once decoded; its insertions still reach the table.
	w.headers(1, true, get("/big", "x-big", strings.Repeat("b", 5000), "x-indexed", "kept")...)
	w.headers(3, true, get("/next", "x-indexed", "kept")...)
	c.ClientData(w.take(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/next" || rec.got[0].headers != "x-indexed: kept\n" {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "skipped", rec.stats.skipped(), "h2_header_too_large=1")
	mustEqual(t, "states lost", rec.stats.StatesLost.Load(), 0)

	// So large that even the encoded block is not held: the table is lost,
	// and a request made of entries inserted before is unknown, while one
	// made of literals and the static table is not.
	w.headersSplit(5, true, 1000, get("/huge", "x-huge", strings.Repeat("h", 20000))...)
	w.headers(7, true, get("/next", "x-indexed", "kept")...)
	c.ClientData(w.take(), t0)
	mustEqual(t, "skipped", rec.stats.skipped(), "h2_state_unknown=1 h2_header_too_large=2")
	mustEqual(t, "states lost", rec.stats.StatesLost.Load(), 1)
	w.enc.SetMaxDynamicTableSizeLimit(0) // from now on, literals only
	w.enc.SetMaxDynamicTableSize(0)
	w.headers(9, true, get("/fresh", "x-new", "1")...)
	c.ClientData(w.take(), t0)
	if len(rec.got) != 2 || rec.got[1].path != "/fresh" || rec.got[1].headers != "x-new: 1\n" {
		t.Fatalf("got %v", rec.got)
	}
}

// The client's encoder changes its table size: smaller, zero, larger
// (within what the decoder allows), and the blocks carry the updates.
func TestTableSizeChanges(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	w := clientWire()
	var want []string
	for i, size := range []uint32{4096, 256, 0, 1024, 16384, 65536, 100} {
		w.enc.SetMaxDynamicTableSizeLimit(size)
		w.enc.SetMaxDynamicTableSize(size)
		for j := 0; j < 3; j++ {
			path := "/t/" + itoa(i) + "/" + itoa(j)
			w.headers(uint32(2*len(want)+1), true, get(path, "x-a", "aaaaaaaaaaaaaaaaaaaaaaaa", "x-b", path, "x-c", strings.Repeat("c", 90))...)
			want = append(want, path)
		}
	}
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != len(want) {
		t.Fatalf("got %d requests, want %d; skipped %s", len(rec.got), len(want), rec.stats.skipped())
	}
	for i, g := range rec.got {
		mustEqual(t, "path", g.path, want[i])
		mustEqual(t, "headers", g.headers, "x-a: aaaaaaaaaaaaaaaaaaaaaaaa\nx-b: "+want[i]+"\nx-c: "+strings.Repeat("c", 90)+"\n")
	}
}

func TestTrailers(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/pkg.Svc/Call", "content-type", "application/grpc", "te", "trailers")...)
	w.data(1, false, "\x00\x00\x00\x00\x03abc")
	w.headers(1, true, "x-checksum", "42", "x-more", "yes")
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 {
		t.Fatalf("got %d; skipped %s", len(rec.got), rec.stats.skipped())
	}
	g := rec.got[0]
	mustEqual(t, "headers", g.headers, "content-type: application/grpc\nte: trailers\n")
	mustEqual(t, "body", g.body, "\x00\x00\x00\x00\x03abc")
	mustEqual(t, "trailers", g.trailers, "x-checksum: 42\nx-more: yes\n")
}

func TestMalformedAndConnect(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, true, ":method", "GET", ":path", "/no-scheme")
	w.headers(3, true, get("/upper", "X-Upper", "1")...)
	w.headers(5, true, get("/conn", "connection", "close")...)
	w.headers(7, true, ":method", "CONNECT", ":authority", "svc.test:443")
	w.headers(9, true, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/ws", ":authority", "svc.test")
	w.headers(11, true, ":path", "/dup", ":method", "GET", ":scheme", "http", ":path", "/dup")
	w.headers(13, true, "x-first", "1", ":method", "GET", ":scheme", "http", ":path", "/late")
	w.headers(15, true, get("/te", "te", "gzip")...)
	w.headers(17, false, get("/trailer-no-end")...)
	w.headers(17, false, "x-t", "1")
	w.headers(19, true, get("/ok", "te", "trailers")...)
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/ok" {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "skipped", rec.stats.skipped(), "h2_malformed=7 h2_connect=2")
	mustEqual(t, "drops", strings.Join(rec.drops, ","), "17/trailer-no-end h2_malformed")
}

func TestNotKeptCostsNothing(t *testing.T) {
	rec := newRecorder()
	rec.refuse = func(p string) bool { return p == "/no" }
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/no")...).data(1, false, strings.Repeat("x", 10000))
	w.headers(3, true, get("/yes")...)
	w.data(1, true, strings.Repeat("y", 5000))
	w.headers(1, true, "x-trailer", "1") // wrong but harmless: no such tracked stream
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/yes" {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "skipped data", rec.stats.SkippedDataBytes.Load(), 15000)
	mustEqual(t, "streams", len(c.streams), 0)
}

func TestResetBeforeAndAfterEmit(t *testing.T) {
	rec := newRecorder()
	rec.cfg.HoldBody = 10
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/held")...).data(1, false, "short")
	w.headers(3, false, post("/streaming")...).data(3, false, "longer than ten bytes")
	w.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	w.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || !rec.got[0].streaming {
		t.Fatalf("got %v", rec.got)
	}
	// An abort drops what the reader had not taken.
	if _, err := rec.got[0].stream.Take(); !errors.Is(err, ErrReset) {
		t.Fatalf("stream error %v, want ErrReset", err)
	}
	mustEqual(t, "skipped", rec.stats.skipped(), "h2_reset=1")
	mustEqual(t, "aborted", rec.stats.aborted(), "h2_reset=1")
	mustEqual(t, "drops", strings.Join(rec.drops, ","), "1/held h2_reset")
	mustEqual(t, "resets", rec.stats.Resets.Load(), 2)
}

func TestGoAwayRefusesLaterStreams(t *testing.T) {
	rec := newRecorder().withAnswers()
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	cw.headers(1, false, post("/one")...).headers(3, false, post("/three")...)
	c.ClientData(cw.take(), t0)
	sw.fr.WriteGoAway(1, http2.ErrCodeNo, []byte("bye"))
	sw.headers(1, true, ":status", "204")
	c.ServerData(sw.take(), t0)
	cw.data(1, true, "1").data(3, true, "3")
	c.ClientData(cw.take(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/one" {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "status", rec.answers["1/one"].Status, 204)
	mustEqual(t, "drops", strings.Join(rec.drops, ","), "3/three h2_refused")
	mustEqual(t, "order", strings.Join(rec.order, ","), "drop 3/three,emit 1/one,answer 1/one")
}

func TestControlFramesInterleaved(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	w := clientWire()
	w.fr.WriteSettingsAck()
	w.fr.WritePing(false, [8]byte{1, 2, 3})
	w.headers(1, false, post("/p")...)
	w.fr.WriteWindowUpdate(0, 1000)
	w.fr.WritePriority(1, http2.PriorityParam{Weight: 1})
	w.data(1, false, "a")
	w.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	w.fr.WriteRawFrame(0x77, 0, 0, []byte("an unknown frame type is ignored"))
	w.fr.WritePing(true, [8]byte{})
	w.data(1, true, "b")
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || rec.got[0].body != "ab" {
		t.Fatalf("got %v; gave up %s", rec.got, rec.stats.gaveUp())
	}
	mustEqual(t, "server max frame", c.srv.maxFrame, 1<<20)
}

func TestStreamingByHoldBody(t *testing.T) {
	rec := newRecorder()
	rec.cfg.HoldBody = 100
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/up")...).data(1, false, strings.Repeat("a", 60))
	c.ClientData(w.take(), t0)
	mustEqual(t, "emitted", len(rec.got), 0)
	w.data(1, false, strings.Repeat("b", 60))
	c.ClientData(w.take(), t0)
	if len(rec.got) != 1 || !rec.got[0].streaming {
		t.Fatalf("got %v", rec.got)
	}
	w.data(1, false, "c").headers(1, true, "x-sum", "7")
	c.ClientData(w.take(), t0)
	bs := rec.got[0].stream
	var body string
	for {
		chunks, err := bs.Take()
		for _, b := range chunks {
			body += string(b)
		}
		if err == io.EOF {
			break
		}
		if err != nil || chunks == nil {
			t.Fatalf("Take: %v", err)
		}
	}
	mustEqual(t, "body", body, strings.Repeat("a", 60)+strings.Repeat("b", 60)+"c")
	if tr := bs.Trailers(); len(tr) != 1 || string(tr[0].Name) != "x-sum" || string(tr[0].Value) != "7" {
		t.Fatalf("trailers %q", tr)
	}
	mustEqual(t, "streaming", rec.stats.EmittedStreaming.Load(), 1)
	mustEqual(t, "streams", len(c.streams), 0)
}

func TestStreamingByTick(t *testing.T) {
	rec := newRecorder()
	rec.cfg.StreamAfter = 50 * time.Millisecond
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/bidi", "content-type", "application/grpc")...)
	c.ClientData(w.take(), t0)
	c.Tick(t0.Add(49 * time.Millisecond))
	mustEqual(t, "emitted early", len(rec.got), 0)
	c.Tick(t0.Add(50 * time.Millisecond))
	if len(rec.got) != 1 || !rec.got[0].streaming {
		t.Fatalf("got %v", rec.got)
	}
	w.data(1, false, "later")
	c.ClientData(w.take(), t0.Add(time.Second))
	chunks, _ := rec.got[0].stream.Take()
	if len(chunks) != 1 || string(chunks[0]) != "later" {
		t.Fatalf("chunks %q", chunks)
	}
	c.End()
	if _, err := rec.got[0].stream.Take(); !errors.Is(err, ErrEnded) {
		t.Fatalf("after End: %v", err)
	}
	mustEqual(t, "aborted", rec.stats.aborted(), "h2_ended=1")
}

// A slow reader overflows its stream: the stream is aborted, the rest of
// the body skipped, and the connection goes on.
func TestStreamOverflow(t *testing.T) {
	rec := newRecorder()
	rec.cfg.HoldBody, rec.cfg.StreamBuffer = 10, 100
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/slow")...)
	for range 5 {
		w.data(1, false, strings.Repeat("z", 40))
	}
	w.data(1, true, "end").headers(3, true, get("/after")...)
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 2 || rec.got[1].path != "/after" {
		t.Fatalf("got %v", rec.got)
	}
	if _, err := rec.got[0].stream.Take(); !errors.Is(err, httpmsg.ErrStreamOverflow) {
		t.Fatalf("err %v", err)
	}
	mustEqual(t, "aborted", rec.stats.aborted(), "h2_overflow=1")
}

func TestBodyLimitWithoutStreaming(t *testing.T) {
	rec := newRecorder()
	rec.cfg.HoldBody, rec.cfg.MaxBodyBytes, rec.cfg.StreamAfter = -1, 100, -1
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/big")...).data(1, false, strings.Repeat("x", 80)).data(1, true, strings.Repeat("x", 80))
	w.headers(3, false, post("/small")...).data(3, true, strings.Repeat("x", 100))
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/small" || rec.got[0].streaming {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "skipped", rec.stats.skipped(), "h2_body_too_large=1")
}

func TestTooManyStreams(t *testing.T) {
	rec := newRecorder()
	rec.cfg.MaxStreams = 2
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/1")...).headers(3, false, post("/3")...).headers(5, false, post("/5")...)
	w.data(1, true, "a").headers(7, true, get("/7")...).data(3, true, "b").data(5, true, "c")
	c.ClientData(w.bytes(), t0)
	var paths []string
	for _, g := range rec.got {
		paths = append(paths, g.path)
	}
	mustEqual(t, "paths", strings.Join(paths, ","), "/1,/7,/3")
	mustEqual(t, "skipped", rec.stats.skipped(), "h2_too_many_streams=1")
}

func TestAnswers(t *testing.T) {
	rec := newRecorder().withAnswers()
	rec.cfg.AnswerBodyCap = 8
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	cw.headers(1, true, get("/a")...).headers(3, true, get("/b")...).headers(5, true, get("/c")...).headers(7, false, post("/d")...)
	c.ClientData(cw.take(), t0)
	sw.headers(3, false, ":status", "100")
	sw.headers(3, false, ":status", "200", "content-type", "text/plain").data(3, false, "0123456789").data(3, false, "abc")
	sw.headers(3, true, "grpc-status", "0")
	sw.fr.WriteRSTStream(5, http2.ErrCodeInternal)
	sw.headersSplit(1, true, 3, ":status", "404", "x-why", "none")
	// The answer to 7 comes before its request is whole: it waits.
	sw.headers(7, true, ":status", "413")
	c.ServerData(sw.take(), t0.Add(time.Millisecond))
	cw.data(7, true, "late body")
	c.ClientData(cw.take(), t0.Add(2*time.Millisecond))

	a := rec.answers["3/b"]
	if a == nil || a.Status != 200 || string(a.Body) != "01234567" || a.BodyLen != 13 || !a.Truncated ||
		len(a.Trailer) != 1 || string(a.Trailer[0].Name) != "grpc-status" || string(a.Header[0].Value) != "text/plain" {
		t.Fatalf("answer 3: %+v", a)
	}
	if a := rec.answers["1/a"]; a == nil || a.Status != 404 || len(a.Body) != 0 || a.Truncated {
		t.Fatalf("answer 1: %+v", a)
	}
	if a := rec.answers["7/d"]; a == nil || a.Status != 413 {
		t.Fatalf("answer 7: %+v", a)
	}
	if len(rec.nils) != 1 || rec.nils[0] != "5/c" {
		t.Fatalf("lost answers %v", rec.nils)
	}
	mustEqual(t, "order", strings.Join(rec.order, ","),
		"emit 1/a,emit 3/b,emit 5/c,answer 3/b,answer 5/c,answer 1/a,emit 7/d,answer 7/d")
	mustEqual(t, "streams", len(c.streams), 0)
}

// A server gap loses the answers still to come; End reports the rest.
func TestAnswersLost(t *testing.T) {
	rec := newRecorder().withAnswers()
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	cw.headers(1, true, get("/a")...).headers(3, true, get("/b")...)
	c.ClientData(cw.take(), t0)
	sw.headers(1, false, ":status", "200")
	c.ServerData(sw.take(), t0)
	c.ServerGap()
	cw.headers(5, true, get("/c")...)
	c.ClientData(cw.take(), t0)
	mustEqual(t, "lost", len(rec.nils), 2)
	c.End()
	mustEqual(t, "lost", len(rec.nils), 3)
	mustEqual(t, "stats", rec.stats.AnswersLost.Load(), 3)
}

// A PUSH_PROMISE's block keeps the server's table in step.
func TestPushPromise(t *testing.T) {
	rec := newRecorder().withAnswers()
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	cw.headers(1, true, get("/page")...)
	c.ClientData(cw.take(), t0)
	sw.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true,
		BlockFragment: sw.block(get("/style.css", "x-pushed", "yes")...)})
	sw.headers(2, true, ":status", "200", "x-pushed", "yes")
	sw.headers(1, true, ":status", "200", "x-pushed", "yes")
	c.ServerData(sw.take(), t0)
	a := rec.answers["1/page"]
	if a == nil || len(a.Header) != 1 || string(a.Header[0].Value) != "yes" {
		t.Fatalf("answer %+v", a)
	}
	mustEqual(t, "pushes", rec.stats.Pushes.Load(), 1)
}

func TestNoPreface(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(false)
	c.ClientData([]byte("GET / HTTP/1.1\r\n\r\n"), t0)
	mustEqual(t, "gave up", rec.stats.gaveUp(), "h2_no_preface=1")
	c.ClientData(clientWire().headers(1, true, get("/")...).bytes(), t0)
	mustEqual(t, "emitted", len(rec.got), 0)
}

func TestProtocolErrorGivesUp(t *testing.T) {
	rec := newRecorder()
	rec.cfg.MaxFrameSize = 1 << 15
	c := rec.conn(false)
	w := clientWire().headers(1, false, post("/x")...)
	w.fr.WriteData(1, false, make([]byte, 1<<15+1))
	c.ClientData(w.bytes(), t0)
	mustEqual(t, "gave up", rec.stats.gaveUp(), "h2_frame_too_large=1")
	mustEqual(t, "drops", strings.Join(rec.drops, ","), "1/x h2_frame_too_large")

	rec = newRecorder()
	c = rec.conn(false)
	w = clientWire().headers(1, false, post("/x")...)
	w.fr.WriteData(0, false, []byte("stream zero"))
	c.ClientData(w.bytes(), t0)
	mustEqual(t, "gave up", rec.stats.gaveUp(), "h2_protocol_error=1")
}

func TestPrefaceHelpers(t *testing.T) {
	if !IsPreface([]byte(Preface+"rest")) || IsPreface([]byte(Preface[:10])) {
		t.Fatal("IsPreface")
	}
	if !CouldBePreface([]byte(Preface[:10])) || !CouldBePreface([]byte(Preface+"x")) || CouldBePreface([]byte("PRI * HTTP/1.1")) {
		t.Fatal("CouldBePreface")
	}
	w := clientWire().headers(1, false, post("/x")...).data(1, false, "aaaa").data(1, true, "bbbb")
	b := w.bytes()[len(Preface):]
	junk := append([]byte("\x01\x02\x03garbage"), b...)
	if off, ok := FrameAlignment(junk); !ok || off != 10 {
		t.Fatalf("FrameAlignment = %d, %v", off, ok)
	}
	if _, ok := FrameAlignment([]byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")); ok {
		t.Fatal("FrameAlignment found frames in HTTP/1")
	}
}

// hpackBlock is a block written by a fresh x/net encoder.
func hpackBlock(kv ...string) []byte {
	var buf strings.Builder
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(kv); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return []byte(buf.String())
}

// Once the server's side is given up, each request emitted is told at once
// that its answer will not come.
func TestServerGivenUp(t *testing.T) {
	rec := newRecorder().withAnswers()
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	cw.headers(1, true, get("/before")...)
	c.ClientData(cw.take(), t0)
	sw.fr.WriteData(0, false, []byte("DATA on stream 0"))
	c.ServerData(sw.take(), t0)
	cw.headers(3, true, get("/after")...)
	c.ClientData(cw.take(), t0)
	mustEqual(t, "gave up", rec.stats.gaveUp(), "h2_protocol_error=1")
	mustEqual(t, "order", strings.Join(rec.order, ","), "emit 1/before,answer 1/before,emit 3/after,answer 3/after")
	mustEqual(t, "lost", len(rec.nils), 2)
	mustEqual(t, "streams", len(c.streams), 0)
}
