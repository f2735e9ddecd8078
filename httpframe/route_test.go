package httpframe

import (
	"net/netip"
	"testing"
	"time"
)

// Keep can route a request (Route reaches Emit) or refuse it with its own
// reason (SkipAs is counted instead of sampled).
func TestKeepRoutesAndNamesItsReason(t *testing.T) {
	st := &Stats{}
	var routes []int
	cfg := &Config{
		Stats: st,
		Keep: func(r *Request) bool {
			switch string(r.Bytes(r.Target)) {
			case "/a":
				r.Route = 7
				return true
			case "/nomatch":
				r.SkipAs = ReasonNoRule
				return false
			}
			return false
		},
		Emit: func(r *Request) {
			routes = append(routes, r.Route)
			r.Release()
		},
	}
	p := NewParser(cfg, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:80"), false)
	p.Data([]byte("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /nomatch HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /sampled HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), time.Now())
	p.End()
	if len(routes) != 2 || routes[0] != 7 || routes[1] != 7 {
		t.Errorf("routes %v, want [7 7]", routes)
	}
	if got := st.Skipped[ReasonNoRule].Load(); got != 1 {
		t.Errorf("no_rule %d, want 1", got)
	}
	if got := st.Skipped[ReasonSampled].Load(); got != 1 {
		t.Errorf("sampled %d, want 1", got)
	}
}
