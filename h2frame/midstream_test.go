package h2frame

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// conversation is a long connection with its ground truth: what each stream
// carried, and where in the client's bytes each request's HEADERS starts.
type conversation struct {
	client, server []byte
	want           map[uint32]got    // by stream id
	answers        map[uint32]string // status and body, by stream id
	starts         map[uint32]int    // offset of the HEADERS frame in client
	reset          int               // offset of the block that empties the table
	resetID        uint32            // first stream after it
}

func newConversation() *conversation {
	r := rand.New(rand.NewPCG(42, 42))
	cw, sw := clientWire(), serverWire()
	cv := &conversation{want: map[uint32]got{}, answers: map[uint32]string{}, starts: map[uint32]int{}}
	common := []string{"user-agent", "grpc-go/1.85.0", "content-type", "application/grpc", "te", "trailers"}
	for i := range 60 {
		id := uint32(2*i + 1)
		if i == 30 {
			cw.enc.SetMaxDynamicTableSize(0)
			cv.reset, cv.resetID = cw.buf.Len(), id
			cw.block() // the update goes out with the next block
			cw.enc.SetMaxDynamicTableSize(4096)
		}
		path := fmt.Sprintf("/pkg.Svc/Method%d", r.IntN(4))
		kv := append(post(path), common...)
		if i%7 == 3 {
			// A request of fresh fields only: decodable by anyone.
			kv = []string{":method", "POST", ":scheme", "http", ":path", fmt.Sprintf("/fresh/%d", i), ":authority", fmt.Sprintf("fresh%d.test", i), fmt.Sprintf("x-fresh-%d", i), "1"}
		}
		kv = append(kv, "x-request-id", fmt.Sprintf("%08x", r.Uint32()))
		body := strings.Repeat(string(rune('a'+i%26)), 1+r.IntN(3000))
		cv.starts[id] = cw.buf.Len()
		cw.headers(id, false, kv...)
		if i%5 == 0 {
			cw.fr.WritePing(false, [8]byte{byte(i)})
			cw.fr.WriteWindowUpdate(0, 65535)
		}
		half := len(body) / 2
		cw.data(id, false, body[:half]).data(id, true, body[half:])
		g := got{id: id, method: "POST", scheme: "http", body: body}
		for j := 0; j < len(kv); j += 2 {
			switch kv[j] {
			case ":authority":
				g.authority = kv[j+1]
			case ":path":
				g.path = kv[j+1]
			case ":method", ":scheme":
			default:
				g.headers += kv[j] + ": " + kv[j+1] + "\n"
			}
		}
		cv.want[id] = g
		status := []string{"200", "404", "503"}[r.IntN(3)]
		sw.headers(id, false, ":status", status, "content-type", "application/grpc").data(id, false, "answer "+path)
		sw.headers(id, true, "grpc-status", "0")
		cv.answers[id] = status + " answer " + path
	}
	cv.client, cv.server = cw.bytes(), sw.bytes()
	return cv
}

// check verifies that every request rec emitted is exactly what the client
// sent on that stream, and every answer what the server sent.
func (cv *conversation) check(t *testing.T, rec *recorder, what string) {
	t.Helper()
	for _, g := range rec.got {
		want := cv.want[g.id]
		want.tag, want.time = g.tag, g.time
		if g != want {
			t.Fatalf("%s: emitted\n%v\nwant\n%v", what, g, want)
		}
		if rec.cfg.Answer == nil {
			continue
		}
		if a := rec.answers[g.tag]; a != nil {
			if s := fmt.Sprintf("%d %s", a.Status, a.Body); s != cv.answers[g.id] {
				t.Fatalf("%s: answer to %d is %q, want %q", what, g.id, s, cv.answers[g.id])
			}
		}
	}
}

// A connection joined at any byte: nothing emitted is wrong, and what the
// table allows is emitted.
func TestMidStreamJoin(t *testing.T) {
	cv := newConversation()
	emitted, unknown, complete := 0, uint64(0), 0
	for k := len(Preface); k < len(cv.client); k += 7 {
		rec := newRecorder().withAnswers()
		c := rec.conn(true)
		c.ClientData(cv.client[k:], t0)
		// The server's side, joined at the same share of its bytes.
		c.ServerData(cv.server[k*len(cv.server)/len(cv.client):], t0)
		c.End()
		what := fmt.Sprintf("join at %d", k)
		cv.check(t, rec, what)
		emitted += len(rec.got)
		unknown += rec.stats.Skipped[ReasonStateUnknown].Load()
		mustEqual(t, what+": nothing given up", rec.stats.gaveUp(), "")
		if k < cv.reset {
			// Once the client empties its table, everything is known.
			complete++
			for id, start := range cv.starts {
				if id >= cv.resetID && start >= k && !hasStream(rec, id) {
					t.Fatalf("%s: stream %d (after the table was emptied) not emitted; skipped %s", what, id, rec.stats.skipped())
				}
			}
		}
	}
	if emitted == 0 || unknown == 0 || complete == 0 {
		t.Fatalf("emitted %d, unknown %d, complete %d: the test does not test", emitted, unknown, complete)
	}
	t.Logf("%d requests emitted, %d unknown over all joins", emitted, unknown)
}

func hasStream(rec *recorder, id uint32) bool {
	for _, g := range rec.got {
		if g.id == id {
			return true
		}
	}
	return false
}

// A mid-stream join that happens to start at the preface knows everything.
func TestMidStreamAtPreface(t *testing.T) {
	cv := newConversation()
	rec := newRecorder()
	c := rec.conn(true)
	feedBytes(cv.client[:100], c.ClientData)
	c.ClientData(cv.client[100:], t0)
	cv.check(t, rec, "join at the preface")
	mustEqual(t, "emitted", len(rec.got), 60)
	mustEqual(t, "resyncs", rec.stats.Resyncs.Load(), 0)
}

// Bytes lost anywhere: what arrives after is framed again, nothing wrong is
// emitted, requests cut by the gap are dropped.
func TestGaps(t *testing.T) {
	cv := newConversation()
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		from := len(Preface) + r.IntN(len(cv.client)-len(Preface))
		to := min(len(cv.client), from+1+r.IntN(20000))
		rec := newRecorder()
		c := rec.conn(false)
		c.ClientData(cv.client[:from], t0)
		c.ClientGap()
		c.ClientData(cv.client[to:], t0)
		c.End()
		what := fmt.Sprintf("gap %d-%d", from, to)
		cv.check(t, rec, what)
		mustEqual(t, what+": kept requests", uint64(len(rec.got)+len(rec.drops)), rec.stats.Requests.Load()-sumSkippedBeforeKeep(&rec.stats))
		for id, start := range cv.starts {
			if start+9 <= from && cv.starts[id+2] < from && id+2 <= 119 && !hasStream(rec, id) {
				t.Fatalf("%s: stream %d, whole before the gap, not emitted", what, id)
			}
		}
	}
}

// sumSkippedBeforeKeep counts the requests skipped before Keep was asked.
func sumSkippedBeforeKeep(s *Stats) uint64 {
	var n uint64
	for _, why := range []Reason{ReasonStateUnknown, ReasonHeaderTooLarge, ReasonMalformed, ReasonConnect, ReasonTooManyStreams, ReasonProtocol} {
		n += s.Skipped[why].Load()
	}
	return n
}

func TestGapDropsHeldRequests(t *testing.T) {
	rec := newRecorder().withAnswers()
	rec.cfg.HoldBody = 10
	c := rec.conn(false)
	cw, sw := clientWire(), serverWire()
	cw.headers(1, false, post("/held")...).headers(3, false, post("/streaming")...).data(3, false, strings.Repeat("s", 20))
	cw.headers(5, true, get("/whole")...)
	c.ClientData(cw.take(), t0)
	c.ClientGap()
	cw.enc.SetMaxDynamicTableSize(0) // a fresh table, so that the next request can be read
	cw.headers(7, true, get("/after", "x-a", "1")...)
	cw.fr.WritePing(false, [8]byte{})
	cw.fr.WritePing(false, [8]byte{})
	c.ClientData(append([]byte("lost!"), cw.take()...), t0) // starting mid-frame
	sw.headers(5, true, ":status", "200")
	c.ServerData(sw.take(), t0)
	mustEqual(t, "drops", strings.Join(rec.drops, ","), "1/held h2_gap")
	mustEqual(t, "aborted", rec.stats.aborted(), "h2_gap=1")
	var paths []string
	for _, g := range rec.got {
		paths = append(paths, g.path)
	}
	mustEqual(t, "emitted", strings.Join(paths, ","), "/streaming,/whole,/after")
	if a := rec.answers["5/whole"]; a == nil || a.Status != 200 {
		t.Fatalf("answer to the request before the gap: %+v", a)
	}
}

// The frames that follow a search are checked as strictly as the search
// checks them: a false alignment falls back to searching.
func TestSearchRecovers(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(true)
	w := newWire()
	w.enc.SetMaxDynamicTableSize(0)
	// Bytes that chain like frames for a while, then are not.
	junk := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	c.ClientData(junk, t0)
	w.headers(1, true, get("/real", "x-a", "1")...)
	// Enough frames after it that any earlier candidate is decided.
	for range 400 {
		w.fr.WritePing(false, [8]byte{})
		w.fr.WriteWindowUpdate(0, 1000)
	}
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/real" {
		t.Fatalf("got %v; skipped %s", rec.got, rec.stats.skipped())
	}
}

// DATA of streams begun before the join, their trailers, and a
// CONTINUATION of a block begun before it, are passed over quietly.
func TestMidStreamOrphans(t *testing.T) {
	rec := newRecorder()
	c := rec.conn(true)
	w := newWire()
	w.enc.SetMaxDynamicTableSize(0)
	w.data(1, false, "orphan body").headers(1, true, "grpc-status", "0")
	w.fr.WriteContinuation(1, true, []byte{0x82})
	w.headers(3, true, get("/new")...)
	w.fr.WritePing(false, [8]byte{})
	c.ClientData(w.bytes(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/new" {
		t.Fatalf("got %v; skipped %s", rec.got, rec.stats.skipped())
	}
	mustEqual(t, "skipped", rec.stats.skipped(), "")
	mustEqual(t, "skipped data", rec.stats.SkippedDataBytes.Load(), 11)
}
