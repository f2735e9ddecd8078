package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/reassembly"
)

// This file builds capture files byte by byte, so that every test states the
// exact packets it reads and no test depends on an outside file.

// pkt describes one crafted TCP (or other) packet over IPv4 or IPv6.
type pkt struct {
	src, dst   string // "198.18.0.1:80" or "[2001:db8::1]:80"
	seq, ack   uint32
	flags      reassembly.Flags
	data       string
	ipOptions  []byte   // IPv4 options, a multiple of 4 bytes
	tcpOptions []byte   // a multiple of 4 bytes
	ext        []extHdr // IPv6 extension headers, in order
	proto      byte     // IP protocol when not TCP (17 for UDP)
	frag       uint16   // IPv4 flags and fragment offset field (0x2000: more fragments)
	totalLen   int      // when set, the IP length field says this instead
}

// extHdr is one IPv6 extension header: its type and its length in bytes
// (a multiple of 8, or of 4 for AH).
type extHdr struct {
	typ byte
	n   int
}

// ip returns the packet from its IP header on.
func (p pkt) ip() []byte {
	src, dst := netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)
	proto := p.proto
	if proto == 0 {
		proto = protoTCP
	}
	l4 := make([]byte, 20+len(p.tcpOptions), 20+len(p.tcpOptions)+len(p.data))
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint32(l4[4:], p.seq)
	binary.BigEndian.PutUint32(l4[8:], p.ack)
	l4[12] = byte(len(l4)/4) << 4
	l4[13] = byte(p.flags)
	binary.BigEndian.PutUint16(l4[14:], 1000)
	copy(l4[20:], p.tcpOptions)
	l4 = append(l4, p.data...)

	var b []byte
	if src.Addr().Is4() {
		ihl := 20 + len(p.ipOptions)
		b = make([]byte, ihl)
		b[0] = 0x40 | byte(ihl/4)
		total := ihl + len(l4)
		if p.totalLen != 0 {
			total = p.totalLen
		}
		binary.BigEndian.PutUint16(b[2:], uint16(total))
		binary.BigEndian.PutUint16(b[6:], p.frag)
		b[8], b[9] = 64, proto
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], p.ipOptions)
	} else {
		b = make([]byte, 40)
		b[0] = 0x60
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		b[7] = 64
		next := 6 // index of the next-header field to fill
		for _, e := range p.ext {
			b[next] = e.typ
			h := make([]byte, e.n)
			if e.typ == ipv6AH {
				h[1] = byte(e.n/4 - 2)
			} else {
				h[1] = byte(e.n/8 - 1)
			}
			b = append(b, h...)
			next = len(b) - e.n
		}
		b[next] = proto
		plen := len(b) - 40 + len(l4)
		if p.totalLen != 0 {
			plen = p.totalLen
		}
		binary.BigEndian.PutUint16(b[4:], uint16(plen))
	}
	return append(b, l4...)
}

// Link layer wrappers.

func etherTypeOf(ip []byte) uint16 {
	if len(ip) > 0 && ip[0]>>4 == 6 {
		return etherIPv6
	}
	return etherIPv4
}

// ether frames ip in Ethernet with the given VLAN tag protocol ids, padded
// to the 60-byte minimum as a NIC would.
func ether(ip []byte, tpids ...uint16) []byte {
	b := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	for i, tp := range tpids {
		b = binary.BigEndian.AppendUint16(b, tp)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI: VLAN id
	}
	b = binary.BigEndian.AppendUint16(b, etherTypeOf(ip))
	b = append(b, ip...)
	for len(b) < 60 {
		b = append(b, 0xee) // padding that must not become payload
	}
	return b
}

func sll(ip []byte) []byte {
	b := []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
	b = binary.BigEndian.AppendUint16(b, etherTypeOf(ip))
	return append(b, ip...)
}

func sll2(ip []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, etherTypeOf(ip))
	b = append(b, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0)
	return append(b, ip...)
}

// null frames ip for DLT_NULL/LOOP with a 4-byte address family.
func null(ip []byte, family uint32, bigEndian bool) []byte {
	var b []byte
	if bigEndian {
		b = binary.BigEndian.AppendUint32(nil, family)
	} else {
		b = binary.LittleEndian.AppendUint32(nil, family)
	}
	return append(b, ip...)
}

// pcapBuilder writes a classic pcap file.
type pcapBuilder struct {
	order binary.ByteOrder
	nano  bool
	buf   bytes.Buffer
}

func newPcap(link uint32, bigEndian, nano bool) *pcapBuilder {
	f := &pcapBuilder{order: binary.LittleEndian, nano: nano}
	if bigEndian {
		f.order = binary.BigEndian
	}
	magic := uint32(magicMicro)
	if nano {
		magic = magicNano
	}
	var h [24]byte
	f.order.PutUint32(h[0:], magic)
	f.order.PutUint16(h[4:], 2)
	f.order.PutUint16(h[6:], 4)
	f.order.PutUint32(h[16:], 262144)
	f.order.PutUint32(h[20:], link)
	f.buf.Write(h[:])
	return f
}

// add appends a record; origLen 0 means len(data).
func (f *pcapBuilder) add(t time.Time, data []byte, origLen int) *pcapBuilder {
	if origLen == 0 {
		origLen = len(data)
	}
	var h [16]byte
	f.order.PutUint32(h[0:], uint32(t.Unix()))
	frac := uint32(t.Nanosecond() / 1000)
	if f.nano {
		frac = uint32(t.Nanosecond())
	}
	f.order.PutUint32(h[4:], frac)
	f.order.PutUint32(h[8:], uint32(len(data)))
	f.order.PutUint32(h[12:], uint32(origLen))
	f.buf.Write(h[:])
	f.buf.Write(data)
	return f
}

func (f *pcapBuilder) bytes() []byte { return bytes.Clone(f.buf.Bytes()) }

// byteOrder is binary.LittleEndian or binary.BigEndian.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// ngBuilder writes a pcapng file.
type ngBuilder struct {
	order byteOrder
	buf   bytes.Buffer
}

func newPcapng(bigEndian bool) *ngBuilder {
	f := &ngBuilder{order: binary.LittleEndian}
	if bigEndian {
		f.order = binary.BigEndian
	}
	f.section()
	return f
}

// section starts a new section (and forgets the interfaces, for readers).
func (f *ngBuilder) section() *ngBuilder {
	body := f.order.AppendUint32(nil, byteOrderMagic)
	body = f.order.AppendUint16(body, 1)
	body = f.order.AppendUint16(body, 0)
	body = f.order.AppendUint64(body, ^uint64(0))
	return f.block(blockSHB, body)
}

// block appends a block of any type around body (padded to 4 bytes).
func (f *ngBuilder) block(typ uint32, body []byte) *ngBuilder {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	b := f.order.AppendUint32(nil, typ)
	b = f.order.AppendUint32(b, n)
	b = append(b, body...)
	b = f.order.AppendUint32(b, n)
	f.buf.Write(b)
	return f
}

func (f *ngBuilder) option(b []byte, code uint16, v []byte) []byte {
	b = f.order.AppendUint16(b, code)
	b = f.order.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// iface adds an interface; tsresol 0 leaves the default (microseconds).
func (f *ngBuilder) iface(link uint16, tsresol byte, tsoffset int64, snap uint32) *ngBuilder {
	body := f.order.AppendUint16(nil, link)
	body = f.order.AppendUint16(body, 0)
	body = f.order.AppendUint32(body, snap)
	body = f.option(body, 2, []byte("eth-test"))
	if tsresol != 0 {
		body = f.option(body, 9, []byte{tsresol})
	}
	if tsoffset != 0 {
		body = f.option(body, 14, f.order.AppendUint64(nil, uint64(tsoffset)))
	}
	body = f.option(body, 0, nil)
	return f.block(blockIDB, body)
}

// epb adds an enhanced packet block; ts is in the interface's units.
func (f *ngBuilder) epb(id uint32, ts uint64, data []byte, origLen int) *ngBuilder {
	if origLen == 0 {
		origLen = len(data)
	}
	body := f.order.AppendUint32(nil, id)
	body = f.order.AppendUint32(body, uint32(ts>>32))
	body = f.order.AppendUint32(body, uint32(ts))
	body = f.order.AppendUint32(body, uint32(len(data)))
	body = f.order.AppendUint32(body, uint32(origLen))
	body = append(body, data...)
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	body = f.option(body, 1, []byte("a comment"))
	body = f.option(body, 0, nil)
	return f.block(blockEPB, body)
}

// pb adds an obsolete packet block.
func (f *ngBuilder) pb(id uint16, ts uint64, data []byte) *ngBuilder {
	body := f.order.AppendUint16(nil, id)
	body = f.order.AppendUint16(body, 0)
	body = f.order.AppendUint32(body, uint32(ts>>32))
	body = f.order.AppendUint32(body, uint32(ts))
	body = f.order.AppendUint32(body, uint32(len(data)))
	body = f.order.AppendUint32(body, uint32(len(data)))
	return f.block(blockPB, append(body, data...))
}

// spb adds a simple packet block.
func (f *ngBuilder) spb(data []byte) *ngBuilder {
	return f.block(blockSPB, append(f.order.AppendUint32(nil, uint32(len(data))), data...))
}

func (f *ngBuilder) bytes() []byte { return bytes.Clone(f.buf.Bytes()) }

// got is a segment as read, with its payload copied.
type got struct {
	flow  reassembly.Flow
	seq   uint32
	ack   uint32
	flags reassembly.Flags
	data  string
	time  time.Time
}

func (g got) String() string {
	return fmt.Sprintf("%v seq %d ack %d flags %#x %q", g.flow, g.seq, g.ack, g.flags, g.data)
}

// readAll reads every segment of a capture held in memory. It returns the
// error that ended the reading (nil at io.EOF).
func readAll(t testing.TB, data []byte) ([]got, Stats, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), "test.pcap", int64(len(data)))
	if err != nil {
		return nil, Stats{}, err
	}
	defer r.Close()
	var out []got
	var seg reassembly.Segment
	last := r.Offset()
	for {
		err := r.Next(&seg)
		if r.Offset() < last || r.Offset() > int64(len(data)) {
			t.Fatalf("offset %d after %d (input %d bytes)", r.Offset(), last, len(data))
		}
		last = r.Offset()
		if errors.Is(err, io.EOF) {
			return out, r.Stats(), nil
		}
		if err != nil {
			return out, r.Stats(), err
		}
		out = append(out, got{seg.Flow, seg.Seq, seg.Ack, seg.Flags, string(seg.Payload), seg.Time})
	}
}

func flowOf(src, dst string) reassembly.Flow {
	return reassembly.Flow{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
}
