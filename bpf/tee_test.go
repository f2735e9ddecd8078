package bpf

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/shadowtee/shadowtee/reassembly"
)

// tcActUnspec is TC_ACT_UNSPEC (and TCX_NEXT) as prog.Run reports it.
const tcActUnspec = 0xFFFFFFFF

func loadForTest(t *testing.T, opts Options) *Tee {
	t.Helper()
	requireProgramFeatures(t)
	tee, err := Load(opts)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel cannot load the program: %v", err)
	}
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(func() { tee.Close() })
	return tee
}

func TestEventLayoutMatchesBTF(t *testing.T) {
	var e teeTeeEvent
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", eventSize, unsafe.Sizeof(e)},
		{"ts_ns", offTimestamp, unsafe.Offsetof(e.TsNs)},
		{"ifindex", offIfindex, unsafe.Offsetof(e.Ifindex)},
		{"seq", offSeq, unsafe.Offsetof(e.Seq)},
		{"ack", offAck, unsafe.Offsetof(e.Ack)},
		{"len", offLen, unsafe.Offsetof(e.Len)},
		{"sport", offSport, unsafe.Offsetof(e.Sport)},
		{"dport", offDport, unsafe.Offsetof(e.Dport)},
		{"family", offFamily, unsafe.Offsetof(e.Family)},
		{"tcp_flags", offFlags, unsafe.Offsetof(e.TcpFlags)},
		{"dir", offDir, unsafe.Offsetof(e.Dir)},
		{"saddr", offSaddr, unsafe.Offsetof(e.Saddr)},
		{"daddr", offDaddr, unsafe.Offsetof(e.Daddr)},
	} {
		if c.got != c.want {
			t.Errorf("%s: Go decodes offset %d, tee.h has %d", c.name, c.got, c.want)
		}
	}
}

// runFrame runs the program on data and returns the records it wrote.
func runFrame(t *testing.T, tee *Tee, prog *ebpf.Program, data []byte, ctx any) []reassembly.Segment {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: data, Context: ctx})
	skipIfNotSupported(t, err, "BPF_PROG_TEST_RUN for TC programs (Linux 4.12)")
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	if ret != tcActUnspec {
		t.Fatalf("verdict %#x, want TC_ACT_UNSPEC (%#x): the program must never decide a packet's fate", ret, uint32(tcActUnspec))
	}
	return drain(t, tee)
}

// drain reads every record now in the ring buffer.
func drain(t *testing.T, tee *Tee) []reassembly.Segment {
	t.Helper()
	rd, err := ringbuf.NewReader(tee.objs.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now())
	var segs []reassembly.Segment
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return segs
		}
		if err != nil {
			t.Fatal(err)
		}
		var seg reassembly.Segment
		if _, err := decodeEvent(rec.RawSample, &seg, 0); err != nil {
			t.Fatal(err)
		}
		seg.Payload = bytes.Clone(seg.Payload)
		segs = append(segs, seg)
	}
}

func counters(t *testing.T, tee *Tee) Counters {
	t.Helper()
	c, err := tee.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func payloadOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

var (
	client4 = mustAddrPort("198.18.0.1:40000")
	server4 = mustAddrPort("198.18.0.2:8080")
	client6 = mustAddrPort("[fd00::1]:40000")
	server6 = mustAddrPort("[fd00::2]:8080")
	get     = []byte("GET /get HTTP/1.1\r\nHost: shadowing.example\r\n\r\n")
)

func TestProgramCopiesMatchingSegments(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 22})
	for _, c := range []struct {
		name string
		pkt  packet
		want bool // a record is expected
	}{
		{"ipv4", packet{src: client4, dst: server4, seq: 1000, ack: 7, flags: 0x18, payload: get}, true},
		{"ipv6", packet{src: client6, dst: server6, seq: 1000, ack: 7, flags: 0x18, payload: get}, true},
		{"vlan", packet{src: client4, dst: server4, seq: 5, flags: 0x18, payload: get, vlans: []uint16{100}}, true},
		{"qinq", packet{src: client6, dst: server6, seq: 5, flags: 0x18, payload: get, vlans: []uint16{100, 200}}, true},
		{"ipv4 options", packet{src: client4, dst: server4, seq: 9, flags: 0x18, payload: get, ipOpts: 8}, true},
		{"ipv6 hop-by-hop", packet{src: client6, dst: server6, seq: 9, flags: 0x18, payload: get, hopByHop: true}, true},
		{"ethernet padding", packet{src: client4, dst: server4, seq: 9, flags: 0x18, payload: []byte("G"), pad: 5}, true},
		{"syn only", packet{src: client4, dst: server4, seq: 99, flags: 0x02}, true},
		{"fin only", packet{src: client6, dst: server6, seq: 99, flags: 0x11}, true},
		{"rst", packet{src: client4, dst: server4, seq: 99, flags: 0x04}, true},
		{"pure ack", packet{src: client4, dst: server4, seq: 99, flags: 0x10}, false},
		{"other port", packet{src: client4, dst: mustAddrPort("198.18.0.2:9090"), seq: 1, flags: 0x18, payload: get}, false},
		{"reply direction", packet{src: server4, dst: client4, seq: 1, flags: 0x18, payload: get}, false},
		{"udp", packet{src: client4, dst: server4, payload: get, udp: true}, false},
		{"ipv4 fragment", packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get, fragment: true}, false},
		{"frame cut in the tcp header", packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get, cut: 14 + 20 + 10}, false},
		{"frame shorter than ip total length", packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: get, cut: 14 + 20 + 32 + 5}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := counters(t, tee)
			segs := runFrame(t, tee, tee.objs.TeeEth, c.pkt.frame(), nil)
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
			if want.cut > 0 {
				// The IP header claims more than the frame holds: copy what is there.
				want.payload = want.payload[:want.cut-14-20-32]
			}
			checkSegment(t, segs[0], want)
			if after.Matched != before.Matched+1 || after.Copied != before.Copied+1 {
				t.Errorf("matched %d -> %d, copied %d -> %d", before.Matched, after.Matched, before.Copied, after.Copied)
			}
			if got := after.CopiedBytes - before.CopiedBytes; got != uint64(len(want.payload)) {
				t.Errorf("copied bytes grew by %d, want %d", got, len(want.payload))
			}
		})
	}
}

func checkSegment(t *testing.T, seg reassembly.Segment, p packet) {
	t.Helper()
	if seg.Flow.Src != p.src || seg.Flow.Dst != p.dst {
		t.Errorf("flow %v, want %v -> %v", seg.Flow, p.src, p.dst)
	}
	if seg.Seq != p.seq || seg.Ack != p.ack {
		t.Errorf("seq/ack %d/%d, want %d/%d", seg.Seq, seg.Ack, p.seq, p.ack)
	}
	if seg.Dir != p.dir {
		t.Errorf("direction %v, want %v", seg.Dir, p.dir)
	}
	if seg.Flags != reassembly.Flags(p.flags&0x1f) {
		t.Errorf("flags %#x, want %#x", seg.Flags, p.flags&0x1f)
	}
	if !bytes.Equal(seg.Payload, p.payload) {
		t.Errorf("payload %d bytes %q..., want %d bytes", len(seg.Payload), firstBytes(seg.Payload), len(p.payload))
	}
}

func firstBytes(b []byte) []byte { return b[:min(len(b), 32)] }

// BPF_PROG_TEST_RUN builds a linear skb of at most one page, so prog.Run
// covers the size classes up to 4 KiB; live_test.go sends real 60 KiB GSO
// packets and BIG TCP packets over veth.
func TestProgramSizeClasses(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 22})
	for _, n := range []int{1, 255, 256, 257, 512, 513, 1024, 1025, 2048, 2049, 3400} {
		pkt := packet{src: client4, dst: server4, seq: 0xFFFFFF00, flags: 0x18, payload: payloadOf(n)}
		segs := runFrame(t, tee, tee.objs.TeeEth, pkt.frame(), nil)
		if len(segs) != 1 {
			t.Fatalf("%d bytes: got %d records, want 1", n, len(segs))
		}
		checkSegment(t, segs[0], pkt)
	}
	if c := counters(t, tee); c.DropRingFull+c.DropLoad+c.Truncated != 0 {
		t.Errorf("losses counted: %+v", c)
	}
}

func TestSetPorts(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080, 9090}, RingBytes: 1 << 20})
	pkt := packet{src: client4, dst: mustAddrPort("198.18.0.2:9090"), seq: 1, flags: 0x18, payload: get}
	if segs := runFrame(t, tee, tee.objs.TeeEth, pkt.frame(), nil); len(segs) != 1 {
		t.Fatalf("port 9090 watched: got %d records", len(segs))
	}
	if err := tee.SetPorts([]uint16{8080}); err != nil {
		t.Fatal(err)
	}
	if segs := runFrame(t, tee, tee.objs.TeeEth, pkt.frame(), nil); len(segs) != 0 {
		t.Fatalf("port 9090 removed: got %d records", len(segs))
	}
	many := make([]uint16, MaxPorts+1)
	for i := range many {
		many[i] = uint16(1000 + i)
	}
	if err := tee.SetPorts(many); err == nil {
		t.Error("SetPorts accepted more ports than the map holds")
	}
	if err := tee.SetPorts([]uint16{0}); err == nil {
		t.Error("SetPorts accepted port 0")
	}
}

// When the ring buffer is full the packet still passes, and the loss is
// counted.
func TestProgramCountsRingFull(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 16})
	pkt := packet{src: client4, dst: server4, seq: 1, flags: 0x18, payload: payloadOf(3000)}
	for range 20 {
		ret, err := tee.objs.TeeEth.Run(&ebpf.RunOptions{Data: pkt.frame()})
		if err != nil || ret != tcActUnspec {
			t.Fatalf("verdict %#x err %v", ret, err)
		}
	}
	c := counters(t, tee)
	segs := drain(t, tee)
	if c.DropRingFull == 0 || c.Copied+c.DropRingFull != 20 || uint64(len(segs)) != c.Copied {
		t.Fatalf("counters %+v, records read %d: want copied + ring_full = 20 with some ring_full", c, len(segs))
	}
}

func TestDestinationFilter(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20,
		Destinations: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/30"), netip.MustParsePrefix("fd00::2/128")}})
	for _, c := range []struct {
		dst  string
		want bool
	}{
		{"198.18.0.2:8080", true},
		{"198.18.0.3:8080", true},
		{"198.18.0.4:8080", false},
		{"[fd00::2]:8080", true},
		{"[fd00::3]:8080", false},
	} {
		dst := mustAddrPort(c.dst)
		src := client4
		if dst.Addr().Is6() {
			src = client6
		}
		before := counters(t, tee)
		segs := runFrame(t, tee, tee.objs.TeeEth, packet{src: src, dst: dst, seq: 1, flags: 0x18, payload: get}.frame(), nil)
		after := counters(t, tee)
		if (len(segs) == 1) != c.want {
			t.Errorf("%s: %d records, want copied=%v", c.dst, len(segs), c.want)
		}
		if !c.want && after.OtherDest != before.OtherDest+1 {
			t.Errorf("%s: other-destination counter %d -> %d", c.dst, before.OtherDest, after.OtherDest)
		}
	}
	// Back to every destination.
	if err := tee.SetDestinations(nil); err != nil {
		t.Fatal(err)
	}
	segs := runFrame(t, tee, tee.objs.TeeEth, packet{src: client4, dst: mustAddrPort("198.18.9.9:8080"), seq: 1, flags: 0x18, payload: get}.frame(), nil)
	if len(segs) != 1 {
		t.Errorf("with no destination filter: %d records", len(segs))
	}
}
