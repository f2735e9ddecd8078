package pcapfile

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/reassembly"
)

const (
	psh = reassembly.PSH
	ack = reassembly.ACK
	syn = reassembly.SYN
	fin = reassembly.FIN
	rst = reassembly.RST
)

var (
	t0 = time.Unix(1700000000, 123456789)

	p4 = pkt{src: "198.18.0.2:40000", dst: "198.18.0.1:80", seq: 1000, ack: 2000, flags: psh | ack, data: "GET / HTTP/1.1\r\n\r\n"}
	p6 = pkt{src: "[2001:db8::2]:40000", dst: "[2001:db8::1]:80", seq: 0xfffffff0, ack: 7, flags: psh | ack, data: "GET /six HTTP/1.1\r\n\r\n"}
	// tiny leaves an Ethernet frame shorter than the minimum, so it is padded.
	tiny = pkt{src: "198.18.0.2:40000", dst: "198.18.0.1:80", seq: 5, ack: 6, flags: ack, data: "hi"}
)

// want returns the segment a reader should return for p at time t.
func want(p pkt, t time.Time) got {
	return got{flowOf(p.src, p.dst), p.seq, p.ack, p.flags & 0x1f, p.data, t}
}

func onePcap(link uint32, frame []byte) []byte {
	return newPcap(link, false, true).add(t0, frame, 0).bytes()
}

// check reads data and compares the segments and the skip counts.
func check(t *testing.T, data []byte, wantSegs []got, wantStats Stats) {
	t.Helper()
	segs, st, err := readAll(t, data)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(segs) != len(wantSegs) {
		t.Fatalf("got %d segments %v, want %d %v", len(segs), segs, len(wantSegs), wantSegs)
	}
	for i := range segs {
		g, w := segs[i], wantSegs[i]
		if g.flow != w.flow || g.seq != w.seq || g.ack != w.ack || g.flags != w.flags || g.data != w.data || !g.time.Equal(w.time) {
			t.Errorf("segment %d:\n got %v at %v\nwant %v at %v", i, g, g.time, w, w.time)
		}
	}
	st.LinkType = wantStats.LinkType
	wantStats.Packets, wantStats.Segments = st.Packets, uint64(len(wantSegs))
	if st != wantStats {
		t.Errorf("stats %+v, want %+v", st, wantStats)
	}
}

func TestLinkTypes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		link  uint32
		frame func(ip []byte) []byte
		v6    bool // only IPv6 (or, with v4only, only IPv4)
		v4    bool
	}{
		{"ethernet", linkEthernet, func(ip []byte) []byte { return ether(ip) }, false, false},
		{"802.1Q", linkEthernet, func(ip []byte) []byte { return ether(ip, etherVLAN) }, false, false},
		{"QinQ 802.1ad", linkEthernet, func(ip []byte) []byte { return ether(ip, etherQinQ, etherVLAN) }, false, false},
		{"QinQ 0x9100", linkEthernet, func(ip []byte) []byte { return ether(ip, etherQinQ2, etherVLAN) }, false, false},
		{"raw", linkRaw, func(ip []byte) []byte { return ip }, false, false},
		{"ipv4", linkIPv4, func(ip []byte) []byte { return ip }, false, true},
		{"ipv6", linkIPv6, func(ip []byte) []byte { return ip }, true, false},
		{"sll", linkSLL, sll, false, false},
		{"sll 802.1Q", linkSLL, func(ip []byte) []byte {
			b := sll(ip)
			tagged := append(append([]byte{}, b[:14]...), 0x81, 0x00, 0, 7)
			return append(append(tagged, b[14:16]...), ip...)
		}, false, false},
		{"sll2", linkSLL2, sll2, false, false},
		{"null little endian", linkNull, func(ip []byte) []byte {
			if ip[0]>>4 == 6 {
				return null(ip, 30, false) // Darwin
			}
			return null(ip, 2, false)
		}, false, false},
		{"null big endian", linkNull, func(ip []byte) []byte {
			if ip[0]>>4 == 6 {
				return null(ip, 28, true) // FreeBSD
			}
			return null(ip, 2, true)
		}, false, false},
		{"loop", linkLoop, func(ip []byte) []byte {
			if ip[0]>>4 == 6 {
				return null(ip, 24, true) // OpenBSD
			}
			return null(ip, 2, true)
		}, false, false},
	} {
		for _, pc := range []struct {
			name string
			p    pkt
		}{{"v4", p4}, {"v6", p6}, {"v4 padded", tiny}} {
			p := pc.p
			v6 := strings.HasPrefix(p.src, "[")
			if tc.v6 && !v6 || tc.v4 && v6 {
				continue
			}
			t.Run(tc.name+"/"+pc.name, func(t *testing.T) {
				check(t, onePcap(tc.link, tc.frame(p.ip())), []got{want(p, t0)}, Stats{})
			})
		}
	}
}

func TestPcapVariants(t *testing.T) {
	for _, be := range []bool{false, true} {
		for _, nano := range []bool{false, true} {
			name := map[bool]string{false: "le", true: "be"}[be] + "/" + map[bool]string{false: "us", true: "ns"}[nano]
			t.Run(name, func(t *testing.T) {
				t1 := t0.Add(1500 * time.Millisecond)
				data := newPcap(linkEthernet, be, nano).
					add(t0, ether(p4.ip()), 0).
					add(t1, ether(p6.ip()), 0).bytes()
				w0, w1 := t0, t1
				if !nano {
					w0, w1 = t0.Truncate(time.Microsecond), t1.Truncate(time.Microsecond)
				}
				check(t, data, []got{want(p4, w0), want(p6, w1)}, Stats{})
			})
		}
	}
}

func TestPackets(t *testing.T) {
	withIPOpts := p4
	withIPOpts.ipOptions = []byte{1, 1, 1, 0, 0x44, 8, 5, 0} // NOP NOP NOP EOL, timestamp
	withIPOpts.tcpOptions = []byte{2, 4, 5, 0xb4, 1, 1, 4, 2}
	v6ext := p6
	v6ext.ext = []extHdr{{ipv6HopByHop, 8}, {ipv6Routing, 24}, {ipv6DestOpts, 16}, {ipv6AH, 24}}
	allFlags := p4
	allFlags.flags = 0xff // URG, ECE, CWR are not reassembly flags
	df := p4
	df.frag = 0x4000
	mf := p4
	mf.frag = 0x2000
	later := p4
	later.frag = 0x0010
	udp := p4
	udp.proto = 17
	v6frag := p6
	v6frag.ext = []extHdr{{ipv6HopByHop, 8}, {ipv6Fragment, 8}}
	v6none := p6
	v6none.proto = 59
	v6esp := p6
	v6esp.ext = []extHdr{{ipv6DestOpts, 8}}
	v6esp.proto = 50
	badIHL := p4.ip()
	badIHL[0] = 0x44
	badDoff := p4.ip()
	badDoff[20+12] = 0x40
	tsoIP := p4.ip()
	tsoIP[2], tsoIP[3] = 0, 0
	shortTotal := p4
	shortTotal.totalLen = 12
	arp := ether(make([]byte, 28))
	arp[12], arp[13] = 0x08, 0x06
	threeTags := ether(p4.ip(), etherVLAN, etherVLAN, etherVLAN)
	trailer := append(ether(p4.ip()), "TRAILER"...)
	v6cut := p6
	v6cut.ext = []extHdr{{ipv6DestOpts, 64}}
	v6cutIP := v6cut.ip()[:40+16]

	for _, tc := range []struct {
		name  string
		frame []byte
		want  []got
		stats Stats
	}{
		{"ipv4 and tcp options", ether(withIPOpts.ip()), []got{want(p4, t0)}, Stats{}},
		{"ipv6 extension headers", ether(v6ext.ip()), []got{want(p6, t0)}, Stats{}},
		{"padding is not payload", ether(tiny.ip()), []got{want(tiny, t0)}, Stats{}},
		{"trailer is not payload", trailer, []got{want(p4, t0)}, Stats{}},
		{"all flag bits", ether(allFlags.ip()), []got{want(allFlags, t0)}, Stats{}},
		{"don't fragment", ether(df.ip()), []got{want(p4, t0)}, Stats{}},
		{"tso total length 0", ether(tsoIP), []got{want(p4, t0)}, Stats{}},
		{"more fragments", ether(mf.ip()), nil, Stats{SkippedFragment: 1}},
		{"later fragment", ether(later.ip()), nil, Stats{SkippedFragment: 1}},
		{"ipv6 fragment header", ether(v6frag.ip()), nil, Stats{SkippedFragment: 1}},
		{"udp", ether(udp.ip()), nil, Stats{SkippedNotTCP: 1}},
		{"ipv6 no next header", ether(v6none.ip()), nil, Stats{SkippedNotTCP: 1}},
		{"ipv6 esp", ether(v6esp.ip()), nil, Stats{SkippedNotTCP: 1}},
		{"arp", arp, nil, Stats{SkippedNotIP: 1}},
		{"three vlan tags", threeTags, nil, Stats{SkippedNotIP: 1}},
		{"runt frame", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, nil, Stats{SkippedShort: 1}},
		{"ihl below 5", ether(badIHL), nil, Stats{SkippedShort: 1}},
		{"tcp data offset below 5", ether(badDoff), nil, Stats{SkippedShort: 1}},
		{"total length below header", ether(shortTotal.ip()), nil, Stats{SkippedShort: 1}},
		{"ipv4 header cut", ether(p4.ip()[:16]), nil, Stats{SkippedShort: 1}},
		{"tcp header cut", ether(p4.ip()[:30]), nil, Stats{SkippedShort: 1}},
		{"ipv6 extension header cut", ether(v6cutIP), nil, Stats{SkippedShort: 1}},
		{"vlan tag cut", ether(nil, etherVLAN)[:16], nil, Stats{SkippedShort: 1}},
		{"wrong ip version", ether(append([]byte{0x55}, p4.ip()[1:]...)), nil, Stats{SkippedNotIP: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, onePcap(linkEthernet, tc.frame), tc.want, tc.stats)
		})
	}
}

func TestSnaplenTruncated(t *testing.T) {
	big := p4
	big.data = strings.Repeat("x", 1000)
	frame := ether(big.ip())
	cut := frame[:96]
	data := newPcap(linkEthernet, false, false).
		add(t0, cut, len(frame)).
		add(t0, ether(p4.ip())[:40], len(frame)). // not even the TCP header
		bytes()
	w := want(big, t0.Truncate(time.Microsecond))
	w.data = w.data[:96-14-40]
	check(t, data, []got{w}, Stats{SnaplenTruncated: 1, SkippedShort: 1})
}

func TestPcapng(t *testing.T) {
	ns := uint64(t0.UnixNano())
	us := ns / 1000
	f := newPcapng(false).
		iface(linkEthernet, 0, 0, 0).       // 0: microseconds by default
		iface(linkSLL2, 9, 0, 0).           // 1: nanoseconds
		iface(linkRaw, 0x80|20, 0, 0).      // 2: 2^-20 s
		iface(105, 0, 0, 0).                // 3: 802.11, not supported
		iface(linkNull, 3, 1000, 0).        // 4: milliseconds, 1000 s offset
		block(blockNRB, []byte{0, 0, 0, 0}) // name resolution: skipped
	f.epb(0, us, ether(p4.ip()), 0).
		epb(1, ns, sll2(p6.ip()), 0).
		epb(2, uint64(t0.Unix())<<20|1<<19, p4.ip(), 0). // half a second
		epb(3, us, []byte("radio"), 0).
		block(blockISB, make([]byte, 12)).
		pb(4, uint64(t0.Unix())*1000+250, null(p6.ip(), 30, false)).
		spb(ether(p4.ip())).                  // time of the packet before
		block(blockCB, []byte("custom data")) // custom block: skipped
	// A second section in the other byte order starts with no interfaces.
	f.order = binary.BigEndian
	f.section().
		iface(linkSLL, 9, 0, 0).
		epb(0, ns+1, sll(p4.ip()), 0)
	data := f.bytes()

	tNull := time.Unix(t0.Unix()+1000, 250e6)
	check(t, data, []got{
		want(p4, t0.Truncate(time.Microsecond)),
		want(p6, t0),
		want(p4, time.Unix(t0.Unix(), 5e8)),
		want(p6, tNull),
		want(p4, tNull),
		want(p4, t0.Add(1)),
	}, Stats{SkippedLinkType: 1})

	_, st, _ := readAll(t, data)
	if st.LinkType != "EN10MB,LINUX_SLL2,RAW,IEEE802_11,NULL,LINUX_SLL" {
		t.Errorf("link types %q", st.LinkType)
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"pcap", newPcap(105, false, false).bytes(), "IEEE802_11 (105)"},
		{"pcapng", newPcapng(false).iface(127, 0, 0, 0).iface(147, 0, 0, 0).bytes(), "IEEE802_11_RADIO (127), LINKTYPE_147 (147)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "radio.cap")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path)
			if !errors.Is(err, ErrLinkType) {
				t.Fatalf("err %v, want ErrLinkType", err)
			}
			msg := err.Error()
			for _, s := range []string{path, tc.want, "EN10MB (1)", "RAW (101)", "LINUX_SLL2 (276)", "LOOP (108)"} {
				if !strings.Contains(msg, s) {
					t.Errorf("%q does not name %q", msg, s)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := Open(filepath.Join(dir, "missing.pcap")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.pcap") {
		t.Errorf("missing file: %v", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		is   error
		msg  string
	}{
		{"empty.pcap", nil, ErrEmpty, "empty.pcap: empty file"},
		{"random.pcap", []byte{0x3c, 0x21, 0x44, 0x4f, 0x43, 0x54, 0x59, 0x50, 0x45, 0x20}, ErrNotCapture, "random.pcap: not a capture file (starts with 3c 21 44 4f"},
		{"tiny.pcap", []byte{0xd4, 0xc3}, ErrNotCapture, "only 2 bytes"},
		{"gzip.pcap.gz", []byte{0x1f, 0x8b, 8, 0, 0, 0}, ErrNotCapture, "gzip"},
		{"header.pcap", newPcap(1, false, false).bytes()[:20], ErrTruncated, "pcap file header cut short (20 of 24 bytes)"},
		{"version.pcap", func() []byte { b := newPcap(1, false, false).bytes(); b[4] = 3; return b }(), ErrNotCapture, "pcap version 3.4"},
		{"shb.pcapng", newPcapng(false).bytes()[:10], ErrTruncated, "pcapng section header cut short"},
		{"bom.pcapng", func() []byte { b := newPcapng(false).bytes(); b[8] = 0; return b }(), ErrCorrupt, "unknown byte-order magic"},
		{"v2.pcapng", func() []byte { b := newPcapng(false).bytes(); b[12] = 2; return b }(), ErrCorrupt, "pcapng version 2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(write(tc.name, tc.data))
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("err %v, want %v with %q", err, tc.is, tc.msg)
			}
			var e *Error
			if errors.As(err, &e) {
				t.Errorf("Open returned an *Error, which callers take for damage after good packets: %v", err)
			}
		})
	}
	// A capture with a header and nothing else is valid and has no segments.
	r, err := Open(write("header-only.pcap", newPcap(1, false, false).bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != 24 || r.Offset() != 24 {
		t.Errorf("size %d offset %d", r.Size(), r.Offset())
	}
	var seg reassembly.Segment
	if err := r.Next(&seg); err == nil || !errors.Is(err, io.EOF) {
		t.Errorf("Next on an empty capture: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
}
