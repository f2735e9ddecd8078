package h2frame

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
)

// The agent hands both framers one *httpframe.Budget.
var _ Budget = (*httpframe.Budget)(nil)

// checkedBudget is the agent's budget, checked at every reservation.
type checkedBudget struct {
	*httpframe.Budget
	t       *testing.T
	refused int
}

func newCheckedBudget(t *testing.T, limit int64) *checkedBudget {
	return &checkedBudget{Budget: httpframe.NewBudget(limit), t: t}
}

func (b *checkedBudget) Reserve(n int64) bool {
	ok := b.Budget.Reserve(n)
	if !ok {
		b.refused++
	}
	if b.Used() > b.Limit() {
		b.t.Fatalf("budget at %d, over its limit %d", b.Used(), b.Limit())
	}
	return ok
}

func (b *checkedBudget) Release(n int64) {
	b.Budget.Release(n)
	if b.Used() < 0 {
		b.t.Fatalf("budget at %d: more given back than taken", b.Used())
	}
}

// heldBy returns the bytes the Conns hold for requests still arriving:
// what the Budget must have been charged for at least.
func heldBy(conns []*Conn) int64 {
	var n int64
	for _, c := range conns {
		for _, s := range c.streams {
			if s.req != nil {
				n += int64(cap(s.req.blk.b))
			}
			if s.body != nil {
				n += int64(s.body.Held())
			}
		}
	}
	return n
}

// Many slow clients, each within its connection's limits, hold bodies and
// streams on many connections: the shared budget caps them all, what is
// held is always charged, the requests it cannot spare are counted as
// memory, and once the connections are over every byte is given back.
func TestBudgetOverConnections(t *testing.T) {
	const conns, streams = 16, 6
	budget := newCheckedBudget(t, 160<<10)
	var stats Stats
	var readers []*httpmsg.BodyStream
	kept, emitted := 0, 0
	drops := map[Reason]int{}
	cfg := &Config{
		HoldBody: 1 << 10, StreamBuffer: 32 << 10, StreamAfter: -1,
		Budget: budget,
		Stats:  &stats,
		Keep:   func(httpmsg.Request) (any, bool) { kept++; return nil, true },
		Emit: func(r httpmsg.Request, _ any) {
			emitted++
			if bs := r.Stream(); bs != nil {
				readers = append(readers, bs)
			}
			r.Release()
		},
		Drop: func(_ any, why Reason) { drops[why]++ },
	}
	cs := make([]*Conn, conns)
	ws := make([]*wire, conns)
	for i := range cs {
		cs[i] = NewConn(cfg, netip.AddrPortFrom(testClient.Addr(), uint16(1000+i)), testServer, false)
		ws[i] = clientWire()
		for j := range streams {
			ws[i].headers(uint32(2*j+1), false, post(fmt.Sprintf("/c%d/s%d", i, j))...)
		}
		cs[i].ClientData(ws[i].take(), t0)
	}
	check := func(when string) {
		t.Helper()
		if held, used := heldBy(cs), budget.Used(); held > used {
			t.Fatalf("%s: %d bytes held, %d charged", when, held, used)
		}
	}
	check("after the headers")
	// Each round sends 1 KiB more of every body; even streams end in the
	// second round (held whole), odd ones go on past HoldBody (streaming).
	// Half of the readers keep up.
	chunk := strings.Repeat("x", 1<<10)
	for round := range 12 {
		for i, c := range cs {
			for j := range streams {
				if j%2 == 0 && round >= 2 {
					continue
				}
				ws[i].data(uint32(2*j+1), j%2 == 0 && round == 1, chunk)
			}
			c.ClientData(ws[i].take(), t0)
			check(fmt.Sprintf("round %d, connection %d", round, i))
		}
		for k, bs := range readers {
			if k%2 == 0 {
				bs.Take()
			}
		}
	}
	for i, c := range cs {
		if i%2 == 0 {
			// Half the clients finish their streams, the others vanish.
			for j := 1; j < streams; j += 2 {
				ws[i].data(uint32(2*j+1), true, "end")
			}
			c.ClientData(ws[i].take(), t0)
		}
		c.End()
	}
	if u := budget.Used(); u != 0 {
		t.Fatalf("budget at %d after every connection ended", u)
	}
	if budget.refused == 0 || stats.Skipped[ReasonMemory].Load() == 0 || stats.Aborted[ReasonMemory].Load() == 0 {
		t.Fatalf("refused %d, skipped %s, aborted %s", budget.refused, stats.skipped(), stats.aborted())
	}
	mustEqual(t, "memory drops", drops[ReasonMemory], int(stats.Skipped[ReasonMemory].Load()))
	dropped := 0
	for _, n := range drops {
		dropped += n
	}
	if emitted+dropped != kept {
		t.Fatalf("kept %d, emitted %d, dropped %v", kept, emitted, drops)
	}
	var memoryAborts int
	for _, bs := range readers {
		for {
			_, err := bs.Take()
			if err != nil {
				if errors.Is(err, ErrMemory) {
					memoryAborts++
				}
				break
			}
		}
	}
	mustEqual(t, "readers told of memory", uint64(memoryAborts), stats.Aborted[ReasonMemory].Load())
	if emitted == len(readers) || len(readers) == 0 {
		t.Fatalf("emitted %d, %d of them streaming: want both kinds", emitted, len(readers))
	}
	t.Logf("kept %d, emitted %d (%d streaming), skipped %s, aborted %s, refused %d",
		kept, emitted, len(readers), stats.skipped(), stats.aborted(), budget.refused)
}

// A held request the budget cannot hold is not mirrored: it is dropped as
// memory, and the connection goes on with the next.
func TestBudgetRefusesHeldRequest(t *testing.T) {
	budget := newCheckedBudget(t, 4<<10)
	rec := newRecorder()
	rec.cfg.Budget, rec.cfg.StreamAfter = budget, -1
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/fits")...).data(1, false, strings.Repeat("a", 1500))
	c.ClientData(w.take(), t0)
	if budget.Used() == 0 {
		t.Fatal("a held request is not charged")
	}
	w.data(1, false, strings.Repeat("a", 3000))
	c.ClientData(w.take(), t0)
	mustEqual(t, "drops", strings.Join(rec.drops, ","), "1/fits memory")
	mustEqual(t, "skipped", rec.stats.skipped(), "memory=1")
	mustEqual(t, "budget", budget.Used(), 0)
	w.data(1, true, "rest").headers(3, false, post("/next")...).data(3, true, "small")
	c.ClientData(w.take(), t0)
	if len(rec.got) != 1 || rec.got[0].path != "/next" || rec.got[0].body != "small" {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "budget", budget.Used(), 0)
}

// A streaming body is charged for what its reader has not taken; when the
// budget is spent, it is aborted with ErrMemory, as a reset is, and its
// charge given back.
func TestBudgetAbortsStream(t *testing.T) {
	budget := newCheckedBudget(t, 64<<10)
	rec := newRecorder()
	rec.cfg.Budget, rec.cfg.HoldBody, rec.cfg.StreamAfter = budget, 10, -1
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/stream")...).data(1, false, strings.Repeat("a", 20))
	c.ClientData(w.take(), t0)
	if len(rec.got) != 1 || !rec.got[0].streaming {
		t.Fatalf("got %v", rec.got)
	}
	bs := rec.got[0].stream
	mustEqual(t, "charged", budget.Used(), 20)
	w.data(1, false, strings.Repeat("b", 100))
	c.ClientData(w.take(), t0)
	mustEqual(t, "charged", budget.Used(), 120)
	bs.Take()
	w.data(1, false, strings.Repeat("c", 30))
	c.ClientData(w.take(), t0)
	mustEqual(t, "charged after the reader took", budget.Used(), 30)
	// Someone else takes the rest of the budget.
	other := budget.Limit() - budget.Used()
	budget.Reserve(other)
	w.data(1, false, "d")
	c.ClientData(w.take(), t0)
	if chunks, err := bs.Take(); chunks != nil || !errors.Is(err, ErrMemory) {
		t.Fatalf("reader got %q, %v", chunks, err)
	}
	mustEqual(t, "aborted", rec.stats.aborted(), "memory=1")
	mustEqual(t, "budget", budget.Used(), other)
	w.data(1, true, "e")
	c.ClientData(w.take(), t0)
	budget.Release(other)
	c.End()
	mustEqual(t, "budget", budget.Used(), 0)
	mustEqual(t, "streams", len(c.streams), 0)
}

// A reader that cancels while the Conn writes to its body (the shadow
// answered early, or its timeout passed) went away: the body did not
// overflow.
func TestCancelledStreamIsNotOverflow(t *testing.T) {
	rec := newRecorder()
	rec.cfg.HoldBody, rec.cfg.StreamAfter = 10, -1
	c := rec.conn(false)
	w := clientWire()
	w.headers(1, false, post("/cancel")...).data(1, false, strings.Repeat("a", 20))
	c.ClientData(w.take(), t0)
	if len(rec.got) != 1 || !rec.got[0].streaming {
		t.Fatalf("got %v", rec.got)
	}
	testHookBodyWrite = func(bs *httpmsg.BodyStream) { bs.Cancel() }
	defer func() { testHookBodyWrite = nil }()
	w.data(1, false, "b")
	c.ClientData(w.take(), t0)
	testHookBodyWrite = nil
	mustEqual(t, "aborted", rec.stats.aborted(), "")
	if _, err := rec.got[0].stream.Take(); !errors.Is(err, httpmsg.ErrStreamCancelled) {
		t.Fatalf("reader got %v", err)
	}
	w.data(1, true, "c").headers(3, true, get("/after")...)
	c.ClientData(w.take(), t0)
	if len(rec.got) != 2 || rec.got[1].path != "/after" {
		t.Fatalf("got %v", rec.got)
	}
	mustEqual(t, "aborted", rec.stats.aborted(), "")
	mustEqual(t, "streams", len(c.streams), 0)
}

// Whatever ends a request still arriving gives its bytes back.
func TestBudgetRefundedOnEveryPath(t *testing.T) {
	cases := []struct {
		name string
		why  string // the reason the held request is skipped and the streaming one aborted
		end  func(c *Conn, cw, sw *wire)
	}{
		{"ends", "", func(c *Conn, cw, sw *wire) {
			cw.data(1, true, "x").headers(3, true, "x-sum", "1")
			c.ClientData(cw.take(), t0)
		}},
		{"client reset", "h2_reset=1", func(c *Conn, cw, sw *wire) {
			cw.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			cw.fr.WriteRSTStream(3, http2.ErrCodeCancel)
			c.ClientData(cw.take(), t0)
		}},
		{"server reset", "h2_refused=1", func(c *Conn, cw, sw *wire) {
			sw.fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
			sw.fr.WriteRSTStream(3, http2.ErrCodeRefusedStream)
			c.ServerData(sw.take(), t0)
		}},
		{"goaway", "h2_refused=1", func(c *Conn, cw, sw *wire) {
			sw.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			c.ServerData(sw.take(), t0)
		}},
		{"gap", "h2_gap=1", func(c *Conn, cw, sw *wire) { c.ClientGap() }},
		{"protocol", "h2_protocol_error=1", func(c *Conn, cw, sw *wire) {
			cw.fr.WriteData(0, false, []byte("on stream 0"))
			c.ClientData(cw.take(), t0)
		}},
		{"connection end", "h2_ended=1", func(c *Conn, cw, sw *wire) { c.End() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			budget := newCheckedBudget(t, 1<<20)
			rec := newRecorder().withAnswers()
			rec.cfg.Budget, rec.cfg.HoldBody, rec.cfg.StreamAfter = budget, 100, -1
			c := rec.conn(false)
			cw, sw := clientWire(), serverWire()
			cw.headers(1, false, post("/held")...).data(1, false, strings.Repeat("h", 50))
			cw.headers(3, false, post("/streaming")...).data(3, false, strings.Repeat("s", 150))
			c.ClientData(cw.take(), t0)
			c.ServerData(sw.take(), t0)
			if len(rec.got) != 1 || !rec.got[0].streaming {
				t.Fatalf("got %v", rec.got)
			}
			if held := heldBy([]*Conn{c}); held == 0 || budget.Used() < held {
				t.Fatalf("%d held, %d charged", held, budget.Used())
			}
			tc.end(c, cw, sw)
			mustEqual(t, "skipped", rec.stats.skipped(), tc.why)
			mustEqual(t, "aborted", rec.stats.aborted(), tc.why)
			mustEqual(t, "budget", budget.Used(), 0)
			c.End()
			mustEqual(t, "budget after End", budget.Used(), 0)
		})
	}
}
