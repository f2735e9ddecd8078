package pcapfile

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/shadowtee/shadowtee/reassembly"
)

var (
	cli = "198.18.0.2:40000"
	srv = "198.18.0.1:8080"
	c2s = flowOf(cli, srv)
	s2c = flowOf(srv, cli)
)

// step is one segment given to Sides and the direction it must be found
// to have: toS (client to server), toC (server to client) or und
// (undecided).
type step struct {
	flow  reassembly.Flow
	flags reassembly.Flags
	data  string
	dir   int8
}

const (
	und int8 = iota
	toS
	toC
)

func runSides(t *testing.T, s *Sides, steps []step) {
	t.Helper()
	for i, st := range steps {
		seg := reassembly.Segment{Flow: st.flow, Flags: st.flags, Payload: []byte(st.data), Dir: 99}
		got := und
		if s.Direction(&seg) {
			got = toS
			if seg.Dir == reassembly.ToClient {
				got = toC
			}
		} else if seg.Dir != 99 {
			t.Errorf("step %d: an undecided segment had its Dir changed", i)
		}
		if got != st.dir {
			t.Errorf("step %d (%v %#x %q): direction %d, want %d", i, st.flow, st.flags, st.data, got, st.dir)
		}
	}
}

func TestSides(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ports []uint16
		steps []step
		stats SidesStats
	}{
		{"ports", []uint16{443, 8080}, []step{
			{c2s, syn, "", toS},
			{s2c, syn | ack, "", toC},
			{c2s, ack | psh, "anything", toS},
			{s2c, ack | psh, "GET / HTTP/1.1\r\n", toC}, // to the client's port: not kept, whatever it says
			{flowOf("198.18.0.3:1", "198.18.0.1:443"), ack, "x", toS},
		}, SidesStats{ToServer: 3, ToClient: 2}},
		{"syn", nil, []step{
			{c2s, syn, "", toS},
			{s2c, syn | ack, "", toC},
			{c2s, ack, "", toS},
			{c2s, ack | psh, "\x00binary", toS},
			{s2c, ack | psh, "GET /looks-like-a-request HTTP/1.1\r\n", toC},
		}, SidesStats{ToServer: 3, ToClient: 2}},
		{"syn+ack seen first", nil, []step{
			{s2c, syn | ack, "", toC},
			{c2s, ack | psh, "whatever", toS},
		}, SidesStats{ToServer: 1, ToClient: 1}},
		{"request line", nil, []step{
			{c2s, ack, "", und}, // undecided: dropped
			{s2c, ack, "", und},
			{c2s, ack | psh, "POST /upload HTTP/1.1\r\n", toS},
			{s2c, ack | psh, "HTTP/1.1 100 Continue\r\n\r\n", toC},
			{c2s, ack | psh, "body bytes", toS},
		}, SidesStats{ToServer: 2, ToClient: 1, Undecided: 2}},
		{"http/2 preface", nil, []step{
			{c2s, ack | psh, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", toS},
			{s2c, ack | psh, "\x00\x00\x00\x04", toC},
		}, SidesStats{ToServer: 1, ToClient: 1}},
		{"response first", nil, []step{
			{s2c, ack | psh, "HTTP/1.1 200 OK\r\n", toC},
			{c2s, ack | psh, "rest of a body", toS},
		}, SidesStats{ToServer: 1, ToClient: 1}},
		{"undecided", nil, []step{
			{c2s, ack | psh, "get / http/1.1", und}, // lower case: not a method
			{c2s, ack | psh, "GE", und},
			{c2s, ack | psh, "\x16\x03\x01", und}, // TLS
			{s2c, ack | psh, "HTTP/2 200", und},
			{c2s, ack | psh, "GET  /", toS}, // decides
		}, SidesStats{ToServer: 1, Undecided: 4}},
		{"syn decides anew", nil, []step{
			{c2s, ack | psh, "GET / HTTP/1.1\r\n", toS},
			{s2c, syn, "", toS}, // the ports were reused the other way round
			{c2s, syn | ack, "", toC},
			{s2c, ack | psh, "x", toS},
		}, SidesStats{ToServer: 3, ToClient: 1}},
		{"forgotten after both fins and the last ack", nil, []step{
			{c2s, syn, "", toS},
			{c2s, ack | psh, "x", toS},
			{c2s, fin | ack, "", toS},
			{s2c, fin | ack, "", toC},
			{s2c, fin | ack, "", toC}, // retransmitted
			{c2s, ack, "", toS},       // the last ACK: the connection is forgotten
			{c2s, ack, "", und},
		}, SidesStats{ToServer: 4, ToClient: 2, Undecided: 1}},
		{"ports reused after close", nil, []step{
			{c2s, syn, "", toS},
			{s2c, fin | ack, "", toC},
			{c2s, fin | ack, "", toS},
			{s2c, syn, "", toS}, // a new connection, the other way round, before the last ACK
			{c2s, syn | ack, "", toC},
			{s2c, ack | psh, "x", toS},
			{c2s, fin | ack, "", toC},
		}, SidesStats{ToServer: 4, ToClient: 3}},
		{"forgotten after rst", nil, []step{
			{c2s, syn, "", toS},
			{s2c, rst | ack, "", toC},
			{c2s, ack | psh, "x", und},
		}, SidesStats{ToServer: 1, ToClient: 1, Undecided: 1}},
		{"one fin keeps it", nil, []step{
			{c2s, syn, "", toS},
			{c2s, fin | ack, "", toS},
			{c2s, fin | ack, "", toS}, // retransmitted FIN
			{s2c, ack | psh, "late response", toC},
		}, SidesStats{ToServer: 3, ToClient: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSides(tc.ports)
			runSides(t, s, tc.steps)
			if got := s.Stats(); got != tc.stats {
				t.Errorf("stats %+v, want %+v", got, tc.stats)
			}
			if tc.ports == nil && len(s.index) > 1 {
				t.Errorf("%d connections remembered", len(s.index))
			}
		})
	}
}

func TestSidesIPv6(t *testing.T) {
	s := NewSides(nil)
	c := flowOf("[2001:db8::2]:1234", "[2001:db8::1]:80")
	runSides(t, s, []step{{c.Reverse(), syn | ack, "", toC}, {c, ack | psh, "x", toS}})
}

// TestSidesCap fills the table past its cap and checks that the least
// recently active connections are the ones forgotten.
func TestSidesCap(t *testing.T) {
	s := NewSides(nil)
	s.max = 100
	flow := func(i int) reassembly.Flow {
		return reassembly.Flow{
			Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 40000),
			Dst: netip.MustParseAddrPort(srv),
		}
	}
	for i := range 100 {
		runSides(t, s, []step{{flow(i), syn, "", toS}})
	}
	// Touch connection 0, so that 1 becomes the oldest.
	runSides(t, s, []step{{flow(0), ack | psh, "x", toS}})
	for i := 100; i < 150; i++ {
		runSides(t, s, []step{{flow(i), syn, "", toS}})
	}
	if len(s.index) != 100 || s.Stats().Forgotten != 50 {
		t.Fatalf("%d remembered, %d forgotten", len(s.index), s.Stats().Forgotten)
	}
	runSides(t, s, []step{
		{flow(0), ack | psh, "still known", toS},
		{flow(1).Reverse(), ack | psh, "forgotten: undecided", und},
		{flow(50).Reverse(), ack | psh, "forgotten: undecided", und},
		{flow(51).Reverse(), ack | psh, "known: server to client", toC},
		{flow(51), ack | psh, "known", toS},
	})
	if got := s.Stats().Undecided; got != 2 {
		t.Errorf("undecided %d", got)
	}
	// Slots are reused: the table never grows past the cap.
	for i := 1000; i < 5000; i++ {
		runSides(t, s, []step{{flow(i), syn, "", toS}, {flow(i).Reverse(), fin | ack, "", toC}})
	}
	if len(s.ents) > 100 || len(s.index) > 100 {
		t.Errorf("%d entries, %d indexed", len(s.ents), len(s.index))
	}
}

func TestLooksLikeRequest(t *testing.T) {
	for in, want := range map[string]bool{
		"GET / HTTP/1.1": true, "M-SEARCH * HTTP/1.1": true, "VERSION-CONTROL /x": true, "PRI * HTTP/2.0": true,
		"MKCALENDAR /": true, "GE": false, "GET": false, "Get /": false, "-GET /": false, " GET /": false,
		"HTTP/1.1 200": false, "AB /": false, "": false, fmt.Sprintf("%s /", make([]byte, 30)): false,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ /": false,
	} {
		if got := looksLikeRequest([]byte(in)); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}
