package agent

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/internal/recorder"
)

func testComparer(t *testing.T, cfg CompareConfig) (*comparer, *route) {
	t.Helper()
	c, err := newComparer(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.engine.Close)
	return c, &route{rule: config.Rule{Name: "r", Shadow: config.Shadow{URL: "http://s"}}, compare: true}
}

func oneRequest(t *testing.T) *httpframe.Request {
	t.Helper()
	var got *httpframe.Request
	p := httpframe.NewParser(&httpframe.Config{Emit: func(r *httpframe.Request, _ any) { got = r }},
		netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"), time.Now())
	t.Cleanup(got.Release)
	return got
}

func answer(status int, body string) *httpmsg.Answer {
	now := time.Now()
	return &httpmsg.Answer{Proto: httpmsg.HTTP11, Status: status, Body: []byte(body), BodyLen: int64(len(body)), Start: now, End: now}
}

// An exchange reaches the engine once both answers are in, whichever comes
// first, and lets go of what it held.
func TestExchangeCompletes(t *testing.T) {
	for _, primaryFirst := range []bool{true, false} {
		c, rt := testComparer(t, CompareConfig{})
		x := c.start(rt)
		x.request(oneRequest(t))
		if primaryFirst {
			x.primary(answer(200, "a"))
			x.shadow(answer(200, "b"))
		} else {
			x.shadow(answer(200, "b"))
			x.primary(answer(200, "a"))
		}
		if got := c.engine.Report().Totals.Compared; got != 1 {
			t.Errorf("primary first %v: %d compared, want 1", primaryFirst, got)
		}
		if c.pending.Load() != 0 || c.pendingBytes.Load() != 0 {
			t.Errorf("pending %d (%d bytes) after the end", c.pending.Load(), c.pendingBytes.Load())
		}
	}
}

// A kept request cut before it was whole reaches the engine never, and
// frees its place once its framer has answered it too; one whose shadow
// failed is compared as unpaired.
func TestExchangeDroppedAndUnpaired(t *testing.T) {
	c, rt := testComparer(t, CompareConfig{})
	x := c.start(rt)
	x.drop(true)
	if c.pending.Load() != 1 {
		t.Fatal("an HTTP/1 exchange ended before its framer answered it")
	}
	x.primary(nil)
	if c.pending.Load() != 0 || c.abandoned.Load() != 1 || c.engine.Report().Totals.Exchanges != 0 {
		t.Errorf("pending %d abandoned %d", c.pending.Load(), c.abandoned.Load())
	}
	y := c.start(rt)
	y.drop(false) // HTTP/2: no answer follows a Drop
	if c.pending.Load() != 0 || c.abandoned.Load() != 2 {
		t.Errorf("pending %d abandoned %d after an HTTP/2 drop", c.pending.Load(), c.abandoned.Load())
	}
	z := c.start(rt)
	z.request(oneRequest(t))
	z.shadow(nil)
	z.primary(answer(200, "a"))
	if got := c.engine.Report().Totals.Unpaired; got != 1 {
		t.Errorf("%d unpaired, want 1", got)
	}
}

// Past its bound, the comparer does not start exchanges: the requests are
// mirrored, not compared, and counted.
func TestExchangeBound(t *testing.T) {
	c, rt := testComparer(t, CompareConfig{MaxPending: 1})
	if c.start(rt) == nil {
		t.Fatal("the first exchange was refused")
	}
	if c.start(rt) != nil || c.overflow.Load() != 1 {
		t.Errorf("the second exchange started past the bound; overflow %d", c.overflow.Load())
	}
}

// A rule compared with a secondary has three senders; closing the mirror
// closes them all and returns, with the secondary's requests counted.
func TestSecondaryClose(t *testing.T) {
	shadowRec, secondRec := recorder.New(nil), recorder.New(nil)
	shadowSrv, secondSrv := httptest.NewServer(shadowRec), httptest.NewServer(secondRec)
	defer shadowSrv.Close()
	defer secondSrv.Close()
	m := newMirror(slog.Default(), 2*time.Second)
	if _, err := setupCompare(m, &CompareConfig{Secondary: secondSrv.URL}, true, nil, true); err != nil {
		t.Fatal(err)
	}
	defer m.closeCompare()
	if err := m.apply(&config.File{Rules: []config.Rule{rule("a", shadowSrv.URL, 80)}}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.table.Load().routes[0].senders()); n != 3 {
		t.Fatalf("a compared rule with a secondary has %d senders, want 3", n)
	}
	frame(m, "198.18.0.2:80", "GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
	if !secondRec.Wait(context.Background(), 1, 5*time.Second) || !shadowRec.Wait(context.Background(), 1, 5*time.Second) {
		t.Fatalf("the shadow received %d and the secondary %d of 1", shadowRec.Len(), secondRec.Len())
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- m.close(ctx)
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("closing the mirror never returned")
	}
	if got := m.byName["a"].secondary.Mirrored.Load(); got != 1 {
		t.Errorf("the secondary's stats count %d mirrored, want 1", got)
	}
}
