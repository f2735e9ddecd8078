package httpframe

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// release is an Emit that drops the request.
func release(r *Request, _ any) { r.Release() }

// Keep's tag reaches Emit with its request, and a request Keep refuses is
// the consumer's to count: the framer counts it in no reason of its own.
func TestKeepTagReachesEmit(t *testing.T) {
	st := &Stats{}
	type rule struct{ name string }
	a := &rule{"a"}
	var tags []any
	cfg := &Config{
		Stats: st,
		Keep: func(r *Request) (any, bool) {
			if string(r.Target()) == "/a" {
				return a, true
			}
			return nil, false
		},
		Emit: func(r *Request, tag any) {
			tags = append(tags, tag)
			r.Release()
		},
	}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /nomatch HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /refused HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), time.Now())
	p.End()
	if len(tags) != 2 || tags[0] != a || tags[1] != a {
		t.Errorf("tags %v, want the rule twice", tags)
	}
	if got := st.Requests.Load(); got != 4 {
		t.Errorf("requests %d, want 4", got)
	}
	for r := Reason(0); r < NumReasons; r++ {
		if n := st.Skipped[r].Load(); n != 0 {
			t.Errorf("skipped %s = %d, want 0", r, n)
		}
	}
}

// Feed stops at an h2c upgrade: the request is emitted with UpgradeH2C,
// Feed returns where HTTP/2 starts, and Resume frames HTTP/1 again (for a
// server that refused the upgrade).
func TestFeedSwitch(t *testing.T) {
	var got []*Request
	cfg := &Config{Emit: func(r *Request, _ any) { got = append(got, r) }}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	in := h2cUpgrade + h2Preface + h2Frames
	if n := p.Feed([]byte(in), time.Now()); n != len(h2cUpgrade) {
		t.Fatalf("Feed consumed %d bytes, want %d", n, len(h2cUpgrade))
	}
	if !p.Switched() {
		t.Fatal("not Switched after an h2c upgrade")
	}
	if n := p.Feed([]byte(h2Preface), time.Now()); n != 0 {
		t.Errorf("Feed after the switch consumed %d bytes, want 0", n)
	}
	if len(got) != 0 {
		t.Fatalf("the upgrade request was emitted before the connection decided")
	}
	up, _ := p.TakeUpgrade()
	if up == nil || !up.UpgradeH2C || string(up.Target()) != "/h" {
		t.Fatalf("TakeUpgrade = %v, want the upgrade request", up)
	}
	if again, _ := p.TakeUpgrade(); again != nil {
		t.Fatal("TakeUpgrade gave the request twice")
	}
	// The server refused (HTTP/1 follows): the request goes as HTTP/1.
	p.Emit(up, nil)
	if len(got) != 1 || got[0] != up {
		t.Fatalf("Emit: emitted %v", got)
	}
	p.Resume()
	if n := p.Feed([]byte(getA), time.Now()); n != len(getA) || p.Switched() {
		t.Fatalf("after Resume: consumed %d of %d, switched %v", n, len(getA), p.Switched())
	}
	if len(got) != 2 || got[1].UpgradeH2C {
		t.Fatalf("after Resume emitted %d requests", len(got))
	}
	for _, r := range got {
		r.Release()
	}
	p.End()
}

// An upgrade to h2c needs exactly one HTTP2-Settings; without it the
// request is a plain refused upgrade, as before.
func TestH2CUpgradeNeedsSettings(t *testing.T) {
	st := &Stats{}
	cfg := &Config{Stats: st, Emit: release}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"), time.Now())
	if p.Switched() || st.Skipped[ReasonUpgrade].Load() != 1 {
		t.Errorf("switched %v, upgrade skips %d", p.Switched(), st.Skipped[ReasonUpgrade].Load())
	}
	p.End()
}

// Watch sees every request head framed soundly, in order, with the tag of
// the kept ones: what a response framer pairs answers with.
func TestWatchSeesEveryHead(t *testing.T) {
	var seen []string
	cfg := &Config{
		MaxBodyBytes: 4,
		Keep: func(r *Request) (any, bool) {
			return string(r.Target()), string(r.Target()) != "/refused"
		},
		Emit: release,
	}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Watch(func(method []byte, tag any) { seen = append(seen, fmt.Sprintf("%s %v", method, tag)) })
	p.Data([]byte("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+
		"HEAD /refused HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345"+
		"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"+
		"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"), time.Now())
	p.End()
	want := []string{"GET /a", "HEAD <nil>", "POST <nil>", "GET /b", "CONNECT <nil>"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("watched %q, want %q", seen, want)
	}
}

// Every kept request gets exactly one Emit or one Drop.
func TestKeptRequestEmittedOrDropped(t *testing.T) {
	var emitted, dropped []any
	cfg := &Config{
		MaxBodyBytes: 100,
		Budget:       NewBudget(1 << 20),
		Keep:         func(r *Request) (any, bool) { return string(r.Target()), true },
		Emit:         func(r *Request, tag any) { emitted = append(emitted, tag); r.Release() },
		Drop:         func(tag any) { dropped = append(dropped, tag) },
	}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("POST /whole HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"+
		"POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), time.Now())
	p.Gap() // cuts /chunks
	p.Data([]byte("GET /after HTTP/1.1\r\nHost: a\r\n\r\nPOST /cut HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab"), time.Now())
	p.End() // cuts /cut
	if fmt.Sprint(emitted) != "[/whole /after]" || fmt.Sprint(dropped) != "[/chunks /cut]" {
		t.Errorf("emitted %v, dropped %v", emitted, dropped)
	}
}
