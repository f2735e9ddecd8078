package pcapfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtee/shadowtee/reassembly"
)

// facts are what testdata/make-captures.sh recorded about a real capture.
type facts struct {
	File        string `json:"file"`
	Packets     uint64 `json:"packets"`  // as tcpdump (or tshark) counts them
	Segments    uint64 `json:"segments"` // TCP packets, as tcpdump counts them
	Connections []struct {
		Client string `json:"client"`
		Server string `json:"server"`
		Sent   []byte `json:"sent"` // every byte the client sent, in order
	} `json:"connections"`
}

// Link types of the committed captures, and whether a small snap length cut
// their packets.
var captureLinks = map[string]struct {
	link    string
	snaplen bool
}{
	"lo-ipv4.pcap":              {"EN10MB", false},
	"lo-ipv4-snaplen.pcap":      {"EN10MB", true},
	"lo-ipv6-sll.pcap":          {"LINUX_SLL", false},
	"lo-ipv4-two-ifaces.pcapng": {"EN10MB,LINUX_SLL", false},
	"veth-sll2-nano.pcap":       {"LINUX_SLL2", false},
}

func TestRealCaptures(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*.json")
	if len(paths) != len(captureLinks) {
		t.Fatalf("%d capture facts in testdata, want %d", len(paths), len(captureLinks))
	}
	for _, p := range paths {
		var f facts
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		t.Run(f.File, func(t *testing.T) { checkCapture(t, &f) })
	}
}

func checkCapture(t *testing.T, f *facts) {
	want, ok := captureLinks[f.File]
	if !ok {
		t.Fatalf("unknown capture %s", f.File)
	}
	path := filepath.Join("testdata", f.File)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	auto, byPort := NewSides(nil), NewSides([]uint16{8080})
	var segs []got
	var seg reassembly.Segment
	for {
		err := r.Next(&seg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, got{seg.Flow, seg.Seq, seg.Ack, seg.Flags, string(seg.Payload), seg.Time})
		a, b := seg, seg
		if okA, okB := auto.Direction(&a), byPort.Direction(&b); okA != okB || a.Dir != b.Dir {
			t.Errorf("%v: found from the connection %v %v, from the port %v %v", seg.Flow, okA, a.Dir, okB, b.Dir)
		}
	}
	st := r.Stats()
	if st.Packets != f.Packets || st.Segments != f.Segments || r.Offset() != r.Size() {
		t.Errorf("packets %d segments %d offset %d/%d, want packets %d segments %d", st.Packets, st.Segments, r.Offset(), r.Size(), f.Packets, f.Segments)
	}
	if st.LinkType != want.link || st.SkippedShort+st.SkippedFragment+st.SkippedLinkType != 0 {
		t.Errorf("stats %+v", st)
	}
	if want.snaplen != (st.SnaplenTruncated > 0) {
		t.Errorf("%d segments cut by the snap length", st.SnaplenTruncated)
	}

	// The connections are the client's, and nothing else.
	conns := map[reassembly.Flow]bool{}
	for _, s := range segs {
		conns[canonical(s.flow)] = true
	}
	if len(conns) != len(f.Connections) {
		t.Errorf("%d connections, want %d", len(conns), len(f.Connections))
	}
	var c2s uint64
	for _, c := range f.Connections {
		flow := flowOf(c.Client, c.Server)
		if !conns[canonical(flow)] {
			t.Errorf("connection %v not found", flow)
			continue
		}
		n, err := clientBytes(segs, flow, c.Sent, want.snaplen)
		if err != "" {
			t.Errorf("%v: %s", flow, err)
		}
		c2s += n
	}
	if as := auto.Stats(); as.ToServer != c2s || as.Undecided != 0 || as.ToServer+as.ToClient != st.Segments {
		t.Errorf("sides %+v, want %d kept", as, c2s)
	}
	compareGopacket(t, path, segs)
}

// clientBytes reassembles what the client of flow sent, from its SYN on, and
// compares it with sent: equal, or with a snap length, each payload equal to
// the bytes of sent at its place. It returns the number of segments of the
// client.
func clientBytes(segs []got, flow reassembly.Flow, sent []byte, cut bool) (uint64, string) {
	var isn uint32
	var synSeen bool
	parts := map[uint32]string{} // offset -> payload; duplicates (two interfaces) collapse
	var n uint64
	for _, s := range segs {
		if s.flow != flow {
			continue
		}
		n++
		if s.flags.Has(syn) {
			isn, synSeen = s.seq, true
			continue
		}
		if s.data != "" {
			parts[s.seq] = s.data
		}
	}
	if !synSeen {
		return n, "no SYN"
	}
	offs := make([]uint32, 0, len(parts))
	for seq := range parts {
		offs = append(offs, seq-isn-1)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	var all []byte
	for _, off := range offs {
		p := parts[off+isn+1]
		if int(off)+len(p) > len(sent) || string(sent[off:int(off)+len(p)]) != p {
			return n, "payload at offset " + itoaU(off) + " differs from what the client sent"
		}
		if !cut {
			if int(off) != len(all) {
				return n, "hole or overlap at offset " + itoaU(off)
			}
			all = append(all, p...)
		}
	}
	if !cut && !bytes.Equal(all, sent) {
		return n, "reassembled " + itoaU(uint32(len(all))) + " bytes, the client sent " + itoaU(uint32(len(sent)))
	}
	return n, ""
}

func itoaU(v uint32) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compareGopacket decodes the capture with gopacket, independently of this
// package, and checks that it finds the same TCP segments.
func compareGopacket(t *testing.T, path string, segs []got) {
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	type source interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var src source
	var link layers.LinkType
	ng := filepath.Ext(path) == ".pcapng"
	if ng {
		r, err := pcapgo.NewNgReader(file, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatal(err)
		}
		src = r
	} else {
		r, err := pcapgo.NewReader(file)
		if err != nil {
			t.Fatal(err)
		}
		src, link = r, r.LinkType()
	}
	i := 0
	for {
		data, ci, err := src.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ng {
			link = ci.AncillaryData[0].(layers.LinkType)
		}
		p := gopacket.NewPacket(data, link, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			continue
		}
		if i >= len(segs) {
			t.Fatalf("gopacket finds more than %d segments", len(segs))
		}
		var src, dst netip.Addr
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
		}
		s := segs[i]
		flow := reassembly.Flow{Src: netip.AddrPortFrom(src, uint16(tcp.SrcPort)), Dst: netip.AddrPortFrom(dst, uint16(tcp.DstPort))}
		if s.flow != flow || s.seq != tcp.Seq || s.ack != tcp.Ack || s.flags.Has(syn) != tcp.SYN || s.flags.Has(fin) != tcp.FIN ||
			s.flags.Has(ack) != tcp.ACK || s.flags.Has(psh) != tcp.PSH || s.flags.Has(rst) != tcp.RST ||
			s.data != string(tcp.Payload) || !s.time.Equal(ci.Timestamp) {
			t.Errorf("segment %d: %v at %v; gopacket: %v seq %d ack %d payload %d bytes at %v", i, s, s.time, flow, tcp.Seq, tcp.Ack, len(tcp.Payload), ci.Timestamp)
		}
		i++
	}
	if i != len(segs) {
		t.Errorf("gopacket finds %d segments, Reader %d", i, len(segs))
	}
}
