package bpf

import (
	"bytes"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/shadowtee/shadowtee/internal/sandbox"
	"github.com/shadowtee/shadowtee/reassembly"
)

// The egress programs copy what a watched server sends: the source port is
// the watched one, and the source address the one in the destinations trie.
func TestEgressProgramCopiesAnswers(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 22, Answers: true})
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	for _, c := range []struct {
		name string
		pkt  packet
		want bool
	}{
		{"ipv4", packet{src: server4, dst: client4, seq: 5000, ack: 1046, flags: 0x18, payload: answer}, true},
		{"ipv6", packet{src: server6, dst: client6, seq: 5000, ack: 1046, flags: 0x18, payload: answer}, true},
		{"vlan", packet{src: server4, dst: client4, seq: 7, flags: 0x18, payload: answer, vlans: []uint16{100}}, true},
		{"qinq", packet{src: server6, dst: client6, seq: 7, flags: 0x18, payload: answer, vlans: []uint16{100, 200}}, true},
		{"ipv6 hop-by-hop", packet{src: server6, dst: client6, seq: 9, flags: 0x18, payload: answer, hopByHop: true}, true},
		{"syn-ack", packet{src: server4, dst: client4, seq: 99, ack: 1, flags: 0x12}, true},
		{"fin", packet{src: server6, dst: client6, seq: 99, flags: 0x11}, true},
		{"pure ack", packet{src: server4, dst: client4, seq: 99, flags: 0x10}, false},
		{"unwatched source port", packet{src: mustAddrPort("198.18.0.2:9090"), dst: client4, seq: 1, flags: 0x18, payload: answer}, false},
		// A request leaving through the egress (the client side of the
		// host): its destination port is watched, its source port is not.
		{"request direction", packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get}, false},
		{"ipv4 fragment", packet{src: server4, dst: client4, seq: 1, flags: 0x18, payload: answer, fragment: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := counters(t, tee)
			segs := runFrame(t, tee, tee.objs.TeeEthEgress, c.pkt.frame(), nil)
			after := counters(t, tee)
			if after.Seen != before.Seen+1 {
				t.Errorf("seen went %d -> %d", before.Seen, after.Seen)
			}
			if !c.want {
				if len(segs) != 0 {
					t.Fatalf("got %d records, want none", len(segs))
				}
				return
			}
			if len(segs) != 1 {
				t.Fatalf("got %d records, want 1", len(segs))
			}
			want := c.pkt
			want.dir = reassembly.ToClient
			checkSegment(t, segs[0], want)
			if after.Matched != before.Matched+1 || after.Copied != before.Copied+1 {
				t.Errorf("matched %d -> %d, copied %d -> %d", before.Matched, after.Matched, before.Copied, after.Copied)
			}
		})
	}
	if c := counters(t, tee); c.Fragments == 0 {
		t.Errorf("the fragment was not counted: %+v", c)
	}
}

// On egress the destinations trie is matched against the source address:
// the server's.
func TestEgressDestinationFilter(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20, Answers: true,
		Destinations: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/30"), netip.MustParsePrefix("fd00::2/128")}})
	answer := []byte("HTTP/1.1 204 No Content\r\n\r\n")
	for _, c := range []struct {
		src  string
		want bool
	}{
		{"198.18.0.2:8080", true},
		{"198.18.0.3:8080", true},
		{"198.18.0.4:8080", false},
		{"[fd00::2]:8080", true},
		{"[fd00::3]:8080", false},
	} {
		src := mustAddrPort(c.src)
		dst := client4
		if src.Addr().Is6() {
			dst = client6
		}
		before := counters(t, tee)
		segs := runFrame(t, tee, tee.objs.TeeEthEgress, packet{src: src, dst: dst, seq: 1, flags: 0x18, payload: answer}.frame(), nil)
		after := counters(t, tee)
		if (len(segs) == 1) != c.want {
			t.Errorf("from %s: %d records, want copied=%v", c.src, len(segs), c.want)
		}
		if len(segs) == 1 && segs[0].Dir != reassembly.ToClient {
			t.Errorf("from %s: direction %v", c.src, segs[0].Dir)
		}
		if !c.want && after.OtherDest != before.OtherDest+1 {
			t.Errorf("from %s: other-destination counter %d -> %d", c.src, before.OtherDest, after.OtherDest)
		}
	}
	// The client's address does not count on egress: a server outside the
	// prefixes answering a client inside them is not copied.
	segs := runFrame(t, tee, tee.objs.TeeEthEgress, packet{src: mustAddrPort("198.18.9.9:8080"), dst: mustAddrPort("198.18.0.2:40000"),
		seq: 1, flags: 0x18, payload: answer}.frame(), nil)
	if len(segs) != 0 {
		t.Errorf("answer of an unwatched server towards a watched address: %d records", len(segs))
	}
}

// Requests and answers of one connection, run through both programs, come
// out with their directions, each with the flow as the sender sees it.
func TestIngressAndEgressDirections(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20, Answers: true})
	req := packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get, dir: reassembly.ToServer}
	resp := packet{src: server4, dst: client4, seq: 9, flags: 0x18, payload: []byte("HTTP/1.1 200 OK\r\n\r\n"), dir: reassembly.ToClient}
	for _, c := range []struct {
		name string
		pkt  packet
		hook string
	}{{"request on ingress", req, "ingress"}, {"answer on egress", resp, "egress"}} {
		prog := tee.objs.TeeEth
		if c.hook == "egress" {
			prog = tee.objs.TeeEthEgress
		}
		segs := runFrame(t, tee, prog, c.pkt.frame(), nil)
		if len(segs) != 1 {
			t.Fatalf("%s: %d records", c.name, len(segs))
		}
		checkSegment(t, segs[0], c.pkt)
	}
	// Each hook ignores the other direction.
	if segs := runFrame(t, tee, tee.objs.TeeEth, resp.frame(), nil); len(segs) != 0 {
		t.Errorf("ingress copied an answer")
	}
	if segs := runFrame(t, tee, tee.objs.TeeEthEgress, req.frame(), nil); len(segs) != 0 {
		t.Errorf("egress copied a request")
	}
}

// exchange sends one literal HTTP/1.1 request from the client namespace to
// the HTTP server at addr, and returns the client's address, the request
// bytes and the answer's bytes as the client read them.
func (tp *topology) exchange(t *testing.T, addr, path string) (client string, req, answer []byte) {
	t.Helper()
	conn, err := tp.client.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req = []byte("GET " + path + " HTTP/1.1\r\nHost: shadowing.example\r\nConnection: close\r\n\r\n")
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, err = io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return conn.LocalAddr().String(), req, answer
}

// serveHTTP runs an HTTP server in the server namespace until cleanup. Its
// answers carry a body of size bytes, enough for GSO packets on egress.
func (tp *topology) serveHTTP(t *testing.T, addr string, size int) {
	t.Helper()
	ln, err := tp.server.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := payloadOf(size)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// With answers, a real server's answer bytes arrive as ToClient segments and
// the request as ToServer segments, in both attach modes.
func TestLiveAnswersCopied(t *testing.T) {
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			tp := newTopology(t)
			tee := loadForTest(t, Options{Ports: []uint16{8080}, Answers: true})
			a := tp.hook(t, tee, mode)
			if !a.Answers {
				t.Fatal("the attachment does not hook egress")
			}
			_, col := startReader(t, tee, time.Millisecond)
			const server = "198.18.0.2:8080"
			tp.serveHTTP(t, server, 100<<10)
			client, req, answer := tp.exchange(t, server, "/answers")
			if !bytes.HasPrefix(answer, []byte("HTTP/1.1 200 OK\r\n")) || len(answer) < 100<<10 {
				t.Fatalf("answer of %d bytes: %q", len(answer), firstBytes(answer))
			}
			waitFlow(t, col, client, server, req)
			largest := waitFlow(t, col, server, client, answer)
			t.Logf("%s: request %d bytes, answer %d bytes, largest answer record %d bytes", mode, len(req), len(answer), largest)

			col.mu.Lock()
			defer col.mu.Unlock()
			var toServer, toClient int
			for _, s := range col.segs {
				switch {
				case s.Flow.Src.String() == client && s.Dir == reassembly.ToServer:
					toServer++
				case s.Flow.Src.String() == server && s.Dir == reassembly.ToClient:
					toClient++
				default:
					t.Errorf("segment %v with direction %v", s.Flow, s.Dir)
				}
			}
			if toServer == 0 || toClient == 0 {
				t.Errorf("%d segments to the server, %d to the client", toServer, toClient)
			}
		})
	}
}

// Without answers nothing is hooked to egress and no answer is copied.
func TestLiveNoAnswersWithoutTheOption(t *testing.T) {
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			tp := newTopology(t)
			tee := loadForTest(t, Options{Ports: []uint16{8080}})
			a := tp.hook(t, tee, mode)
			if a.Answers {
				t.Fatal("the attachment says it hooks egress")
			}
			_, col := startReader(t, tee, time.Millisecond)
			const server = "198.18.0.2:8080"
			tp.serveHTTP(t, server, 10)
			client, req, _ := tp.exchange(t, server, "/no-answers")
			waitFlow(t, col, client, server, req)
			col.mu.Lock()
			for _, s := range col.segs {
				if s.Dir != reassembly.ToServer || s.Flow.Src.String() == server {
					t.Errorf("segment %v with direction %v", s.Flow, s.Dir)
				}
			}
			col.mu.Unlock()
			if n := egressPrograms(t, tp, mode); n != 0 {
				t.Errorf("%d programs of ours on egress", n)
			}
		})
	}
}

// egressPrograms counts our programs on s0's egress: TCX links, or tc
// filters named as ours.
func egressPrograms(t *testing.T, tp *topology, mode AttachMode) int {
	t.Helper()
	nl := tp.server.Netlink()
	l, err := nl.LinkByName("s0")
	if err != nil {
		t.Fatal(err)
	}
	if mode == AttachTC {
		fs, err := nl.FilterList(l, netlink.HANDLE_MIN_EGRESS)
		if err != nil {
			return 0 // no clsact egress: nothing there
		}
		n := 0
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, filterPrefix) {
				n++
			}
		}
		return n
	}
	var n int
	err = tp.server.Do(func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFlow waits until the collector holds want for the flow src -> dst and
// returns the largest record of that flow.
func waitFlow(t *testing.T, col *collector, src, dst string, want []byte) int {
	t.Helper()
	var got []byte
	var largest int
	ok := waitUntil(5*time.Second, func() bool {
		got, largest = col.flowStream(src, dst)
		return bytes.Equal(got, want)
	})
	if !ok {
		t.Fatalf("%s -> %s: copied %d bytes of the %d sent (%q...)", src, dst, len(got), len(want), firstBytes(got))
	}
	return largest
}

// A device without an Ethernet header gets the L3 variants on both hooks: a
// SYN written into a TUN device reaches a listener behind it, whose SYN-ACK
// leaves through the same device, in both attach modes.
func TestLiveL3Answers(t *testing.T) {
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			sb, err := sandbox.New("stee-l3")
			if err != nil {
				t.Skip(err)
			}
			t.Cleanup(func() { sb.Close() })
			ns, err := sb.Netns("t")
			if err != nil {
				t.Fatal(err)
			}
			tun := newTunIn(t, ns)
			if err := ns.AddrAdd(tun.Name, "198.18.7.1/24", "fd00::7:1/64"); err != nil {
				t.Fatal(err)
			}
			tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20, Answers: true})
			var a *Attachment
			err = ns.Do(func() (err error) { a, err = tee.Attach(tun.Name, mode); return err })
			skipUnlessAttachable(t, mode, err)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			_, col := startReader(t, tee, time.Millisecond)
			for _, c := range []struct{ server, client string }{
				{"198.18.7.1:8080", "198.18.7.2:40000"},
				{"[fd00::7:1]:8080", "[fd00::7:2]:40000"},
			} {
				ln, err := ns.Listen("tcp", c.server)
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				syn := packet{src: mustAddrPort(c.client), dst: mustAddrPort(c.server), seq: 1000, flags: 0x02}
				n := col.len()
				if _, err := tun.file.Write(syn.checksummed()); err != nil {
					t.Fatal(err)
				}
				// A bare SYN and SYN-ACK do not ring the reader awake; the
				// client's RST that follows does.
				rst := packet{src: mustAddrPort(c.client), dst: mustAddrPort(c.server), seq: 1001, flags: 0x04}
				time.Sleep(10 * time.Millisecond)
				if _, err := tun.file.Write(rst.checksummed()); err != nil {
					t.Fatal(err)
				}
				// The RST is copied too: wait for it, so that the next
				// address's records start after it.
				if !waitUntil(5*time.Second, func() bool { return col.len() >= n+3 }) {
					t.Fatalf("%s: %d records for the SYN, its SYN-ACK and the RST, want 3; kernel %+v", c.server, col.len()-n, counters(t, tee))
				}
				col.mu.Lock()
				in, out := col.segs[n], col.segs[n+1]
				col.mu.Unlock()
				if in.Dir != reassembly.ToServer || in.Flags != reassembly.SYN || in.Flow.Src.String() != c.client || in.Seq != 1000 {
					t.Errorf("%s: first record %v %v flags %#x seq %d, want the SYN", c.server, in.Flow, in.Dir, in.Flags, in.Seq)
				}
				if out.Dir != reassembly.ToClient || out.Flags != reassembly.SYN|reassembly.ACK ||
					out.Flow.Src.String() != c.server || out.Flow.Dst.String() != c.client || out.Ack != 1001 {
					t.Errorf("%s: second record %v %v flags %#x ack %d, want the SYN-ACK", c.server, out.Flow, out.Dir, out.Flags, out.Ack)
				}
			}
		})
	}
}
