package agent

import (
	"slices"
	"strings"
	"testing"
)

// goldenExpect is what must hold when a capture of the repository is
// replayed, whatever the exact golden bytes: the requests printed, the
// skip reasons, and the counters the case is about.
type goldenExpect struct {
	// targets are the request targets printed, in order.
	targets []string
	// skipped are the skip reasons of the summary, exactly.
	skipped map[string]uint64
	// more checks the rest.
	more func(t *testing.T, s *Summary, recs []DryRunRecord)
}

func (e goldenExpect) check(t *testing.T, s *Summary, recs []DryRunRecord) {
	t.Helper()
	var targets []string
	for _, r := range recs {
		targets = append(targets, r.Target)
	}
	if e.targets != nil && !slices.Equal(targets, e.targets) {
		t.Errorf("printed %q, want %q", targets, e.targets)
	}
	if !sameSkips(s, e.skipped) {
		t.Errorf("skipped %v, want %v", s.Requests.Skipped, e.skipped)
	}
	if e.more != nil {
		e.more(t, s, recs)
	}
}

// noGaps checks that reassembly lost nothing.
func noGaps(t *testing.T, s *Summary) {
	t.Helper()
	if s.Segments.Gaps != 0 {
		t.Errorf("%d gaps (%d bytes), want none", s.Segments.Gaps, s.Segments.GapBytes)
	}
}

// bodyLen checks the decoded body length of the i-th request printed.
func bodyLen(t *testing.T, recs []DryRunRecord, i int, want int64) {
	t.Helper()
	if i >= len(recs) || recs[i].BodyLen != want {
		t.Errorf("request %d: want a body of %d bytes, got %+v", i, want, recs)
	}
}

// realCaptureTargets are the requests of every connection of the tcpdump
// captures of pcapfile/testdata (make-captures.sh), in order.
var realCaptureTargets = []string{"/index.html", "/search?q=shadow&page=2", "/upload", "/pipelined/1", "/pipelined/2", "/http10"}

// goldenExpectations holds, for every capture by name, what its replay
// must give. The synthesised cases are described in
// internal/mkcaptures/cases.go and testdata/captures/README.md.
var goldenExpectations = map[string]goldenExpect{
	"retransmit": {
		targets: []string{"/retransmit/1", "/retransmit/2"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			noGaps(t, s)
			bodyLen(t, recs, 1, 3000)
			if s.Segments.Duplicates != 2 {
				t.Errorf("duplicates %d, want 2 (the GET and the POST's middle segment)", s.Segments.Duplicates)
			}
		},
	},
	"retransmit-overlap": {
		targets: []string{"/overlap", "/overlap/after"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			noGaps(t, s)
			bodyLen(t, recs, 0, 4000)
			if s.Segments.OutOfOrder != 1 {
				t.Errorf("out of order %d, want 1 (the segment after the lost one)", s.Segments.OutOfOrder)
			}
		},
	},
	"out-of-order": {
		targets: []string{"/ooo", "/ooo/next"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			noGaps(t, s)
			bodyLen(t, recs, 0, 5000)
			if s.Segments.OutOfOrder != 2 {
				t.Errorf("out of order %d, want 2 (segment 3, then the GET)", s.Segments.OutOfOrder)
			}
		},
	},
	"lost-segment": {
		targets: []string{"/keepalive/1", "/keepalive/3"},
		skipped: map[string]uint64{"incomplete": 1},
		more: func(t *testing.T, s *Summary, _ []DryRunRecord) {
			if s.Segments.Gaps != 1 || s.Segments.GapBytes != 1448 {
				t.Errorf("gaps %d (%d bytes), want 1 (1448)", s.Segments.Gaps, s.Segments.GapBytes)
			}
			if s.Requests.Framed != 3 {
				t.Errorf("framed %d, want 3", s.Requests.Framed)
			}
		},
	},
	"client-only": {
		targets: []string{"/client-only/1", "/client-only/2", "/client-only/post", "/client-only/p1", "/client-only/p2"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			noGaps(t, s)
			bodyLen(t, recs, 2, 3000)
			if f := s.File; f.ServerToClient != 0 || f.UndecidedDropped != 0 || f.ClientToServer != f.Segments {
				t.Errorf("sides: %+v, want every segment kept as client to server", f)
			}
			if s.Segments.MidStream != 3 {
				t.Errorf("%d streams joined mid-stream, want 3 (no SYN)", s.Segments.MidStream)
			}
		},
	},
	"mid-stream": {
		targets: []string{"/after/1", "/after/2"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			bodyLen(t, recs, 1, 11)
			if s.File.UndecidedDropped != 1 {
				t.Errorf("undecided %d, want 1 (the body tail before the server's answer)", s.File.UndecidedDropped)
			}
			if s.Segments.MidStream != 1 {
				t.Errorf("%d streams joined mid-stream, want 1", s.Segments.MidStream)
			}
		},
	},
	"vlan": {
		targets: []string{"/vlan/1", "/vlan/2", "/qinq"},
		more: func(t *testing.T, s *Summary, _ []DryRunRecord) {
			if len(s.File.Skipped) != 0 || s.File.LinkType != "EN10MB" {
				t.Errorf("file %+v: want every tagged packet read", s.File)
			}
		},
	},
	"ipv6": {
		targets: []string{"/ipv6", "/ipv6/post"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			bodyLen(t, recs, 1, 2000)
			for _, r := range recs {
				if r.ShadowHost != "[fd00::2]-shadow:8080" || r.Client != "[fd00::1]:40011" {
					t.Errorf("%s: client %s, shadow Host %s", r.Target, r.Client, r.ShadowHost)
				}
			}
		},
	},
	"sll2": {
		targets: []string{"/sll2/1", "/sll2/2", "/sll2/3"},
		more: func(t *testing.T, s *Summary, _ []DryRunRecord) {
			if s.File.LinkType != "LINUX_SLL2" {
				t.Errorf("link type %s", s.File.LinkType)
			}
		},
	},
	"null-loopback": {
		targets: []string{"/loopback/4", "/loopback/6"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			if s.File.LinkType != "NULL" || len(s.File.Skipped) != 0 {
				t.Errorf("file %+v", s.File)
			}
			if len(recs) == 2 && recs[1].Client != "[::1]:50002" {
				t.Errorf("IPv6 client %s", recs[1].Client)
			}
		},
	},
	"chunked-trailers": {
		targets: []string{"/chunked", "/chunked/after"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			bodyLen(t, recs, 0, 26+400+1+1500)
			if len(recs) > 0 && !recs[0].Chunked {
				t.Error("the POST is not marked chunked")
			}
		},
	},
	"pipelined": {
		targets: []string{"/pipelined/1", "/pipelined/2", "/pipelined/3", "/pipelined/4", "/pipelined/5"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			bodyLen(t, recs, 1, 5)
		},
	},
	"large-post": {
		targets: []string{"/upload/large"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			noGaps(t, s)
			bodyLen(t, recs, 0, 200<<10)
		},
	},
	"http10-no-host": {
		targets: []string{"/legacy"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			if len(recs) == 1 && (recs[0].Proto != "HTTP/1.0" || recs[0].Host != "" || recs[0].ShadowHost != "198.18.0.2-shadow:8080") {
				t.Errorf("got %+v: want HTTP/1.0, no Host, shadow Host from the server address", recs[0])
			}
		},
	},
	"absolute-form": {
		targets: []string{"http://shadowing.example:8080/absolute?q=1", "http://shadowing.example/form"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			want := []string{"http://shadowing.example-shadow:8080/absolute?q=1", "http://shadowing.example-shadow/form"}
			for i, r := range recs {
				if r.ShadowTarget != want[i] {
					t.Errorf("shadow target %q, want %q", r.ShadowTarget, want[i])
				}
			}
		},
	},
	"expect-continue": {
		targets: []string{"/put", "/after-put"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			bodyLen(t, recs, 0, 5000)
			if len(recs) > 0 && !slices.Contains(recs[0].Headers, [2]string{"Expect", "100-continue"}) {
				t.Errorf("Expect header missing: %v", recs[0].Headers)
			}
		},
	},
	"connect": {
		targets: []string{},
		skipped: map[string]uint64{"connect": 1},
	},
	"websocket": {
		targets: []string{},
		skipped: map[string]uint64{"upgrade": 1},
	},
	"http2-preface": {
		// Prior knowledge: framed as HTTP/2 from the preface on.
		targets: []string{"/"},
		skipped: map[string]uint64{},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			if r := recs[0]; r.Proto != "HTTP/2" || r.StreamID != 1 || r.ShadowHost != "shadowing.example-shadow" {
				t.Errorf("record %+v: want HTTP/2 stream 1 to shadowing.example-shadow", r)
			}
			if s.Requests.ByProto["http2"] != 1 {
				t.Errorf("framed by proto %v", s.Requests.ByProto)
			}
		},
	},
	// Real HTTP/2 clients against real servers (h2frame/testdata): every
	// request is framed as HTTP/2, with its stream.
	"curl":           http2Case("/curl/a?x=1", "/curl/b", "/curl/post"),
	"nghttp":         http2Case("/nghttp/get", "/nghttp/post"),
	"nghttp-upgrade": http2Case("/nghttp/upgrade"),
	"go-client":      http2Case("/go/get?q=1", "/go/post", "/go/big", "/trailers"),
	"grpc": http2Case("/shadowtee.test.Echo/Unary", "/shadowtee.test.Echo/ClientStream",
		"/shadowtee.test.Echo/ServerStream", "/shadowtee.test.Echo/Bidi"),
	"h2load": {
		skipped: map[string]uint64{},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			if len(recs) != 200 || s.Requests.ByProto["http2"] != 200 {
				t.Errorf("%d printed, %v framed: want h2load's 200 as HTTP/2", len(recs), s.Requests.ByProto)
			}
		},
	},
	"garbage-then-request": {
		targets: []string{"/after-garbage"},
		skipped: map[string]uint64{"malformed": 1},
	},
	"recorded-mix": {
		// e2e.TestE2ERecordTestdata sends these, one after the other.
		targets: []string{"/get?n=0", "/get?n=1", "/get?n=2", "/post", "/anything/chunked", "/get?ipv6=1",
			"/anything/p1", "/anything/p2", "/anything/p3", "/anything/http10"},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			noGaps(t, s)
			if s.File.ServerToClient != 0 || s.File.UndecidedDropped != 0 {
				t.Errorf("file %+v: a recording holds only client-to-server segments", s.File)
			}
			if len(recs) == 10 && (!recs[4].Chunked || recs[5].Client[0] != '[' || recs[9].Host != "") {
				t.Errorf("want the 5th chunked, the 6th over IPv6, the 10th without Host: %+v", recs)
			}
		},
	},

	// The tcpdump captures of pcapfile/testdata.
	"lo-ipv4":        {targets: realCaptureTargets},
	"lo-ipv6-sll":    {targets: realCaptureTargets},
	"veth-sll2-nano": {targets: realCaptureTargets},
	"lo-ipv4-snaplen": {
		// Only the requests whose packets fit in 120 bytes are whole.
		targets: []string{"/index.html", "/pipelined/1", "/http10"},
		skipped: map[string]uint64{"incomplete": 3},
		more: func(t *testing.T, s *Summary, _ []DryRunRecord) {
			if s.File.SnaplenTruncated == 0 {
				t.Error("no segment counted as cut by the snap length")
			}
		},
	},
	"lo-ipv4-two-ifaces": {
		// dumpcap saw every packet on lo and on any: each connection is in
		// the file twice, one copy after the other. See
		// TestReplayTwoInterfaceCopiesOnce for how many times each request
		// is printed.
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			for _, target := range realCaptureTargets {
				if !slices.ContainsFunc(recs, func(r DryRunRecord) bool { return r.Target == target }) {
					t.Errorf("%s not printed", target)
				}
			}
		},
	},
}

// http2Case expects the targets, in order, each printed as HTTP/2 with a
// stream id and the suffixed :authority.
func http2Case(targets ...string) goldenExpect {
	return goldenExpect{
		targets: targets,
		skipped: map[string]uint64{},
		more: func(t *testing.T, s *Summary, recs []DryRunRecord) {
			for _, r := range recs {
				if r.Proto != "HTTP/2" || r.StreamID == 0 || !strings.Contains(r.ShadowHost, "-shadow") {
					t.Errorf("%s: proto %s stream %d shadow host %q", r.Target, r.Proto, r.StreamID, r.ShadowHost)
				}
			}
			// An h2c upgrade request is framed by the HTTP/1 framer, and
			// sent as HTTP/2's stream 1.
			if s.Requests.Framed != uint64(len(targets)) {
				t.Errorf("framed %d (%v), want %d", s.Requests.Framed, s.Requests.ByProto, len(targets))
			}
		},
	}
}
