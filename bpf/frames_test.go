package bpf

import (
	"encoding/binary"
	"net/netip"

	"github.com/shadowtee/shadowtee/reassembly"
)

// packet describes a TCP segment to build as a frame for prog.Run.
type packet struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
	payload  []byte
	vlans    []uint16 // 802.1Q tags, outermost first
	udp      bool     // build UDP instead of TCP
	ipOpts   int      // bytes of IPv4 options (multiple of 4)
	hopByHop bool     // add an IPv6 hop-by-hop header
	fragment bool     // set IPv4 MF
	zeroLen  bool     // IPv4 tot_len / IPv6 payload_len 0, as on BIG TCP packets
	pad      int      // bytes of Ethernet padding after the IP datagram
	cut      int      // cut the frame to this many bytes

	dir reassembly.Direction // the direction a copy of it must carry
}

func (p packet) tcpHeader() []byte {
	if p.udp {
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], p.src.Port())
		binary.BigEndian.PutUint16(h[2:], p.dst.Port())
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(p.payload)))
		return h
	}
	h := make([]byte, 32) // 20 bytes + 12 bytes of options (timestamps), as Linux sends
	binary.BigEndian.PutUint16(h[0:], p.src.Port())
	binary.BigEndian.PutUint16(h[2:], p.dst.Port())
	binary.BigEndian.PutUint32(h[4:], p.seq)
	binary.BigEndian.PutUint32(h[8:], p.ack)
	h[12] = 8 << 4
	h[13] = p.flags
	binary.BigEndian.PutUint16(h[14:], 65535)
	h[20], h[21], h[22] = 1, 1, 8 // NOP NOP timestamp
	h[23] = 10
	return h
}

// ipDatagram returns the IP header, transport header and payload.
func (p packet) ipDatagram() []byte {
	l4 := append(p.tcpHeader(), p.payload...)
	proto := byte(6)
	if p.udp {
		proto = 17
	}
	if p.src.Addr().Is4() {
		h := make([]byte, 20+p.ipOpts)
		h[0] = 0x40 | byte((20+p.ipOpts)/4)
		total := len(h) + len(l4)
		if !p.zeroLen {
			binary.BigEndian.PutUint16(h[2:], uint16(total))
		}
		if p.fragment {
			h[6] = 0x20
		}
		h[8], h[9] = 64, proto
		s, d := p.src.Addr().As4(), p.dst.Addr().As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		return append(h, l4...)
	}
	var ext []byte
	next := proto
	if p.hopByHop {
		ext = []byte{proto, 0, 1, 4, 0, 0, 0, 0} // PadN option filling 8 bytes
		next = 0
	}
	h := make([]byte, 40)
	h[0] = 0x60
	if !p.zeroLen {
		binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(l4)))
	}
	h[6], h[7] = next, 64
	s, d := p.src.Addr().As16(), p.dst.Addr().As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(append(h, ext...), l4...)
}

func (p packet) etherType() uint16 {
	if p.src.Addr().Is4() {
		return 0x0800
	}
	return 0x86DD
}

// frame returns the packet as an Ethernet frame.
func (p packet) frame() []byte {
	f := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	for _, v := range p.vlans {
		f = binary.BigEndian.AppendUint16(f, 0x8100)
		f = binary.BigEndian.AppendUint16(f, v)
	}
	f = binary.BigEndian.AppendUint16(f, p.etherType())
	f = append(f, p.ipDatagram()...)
	f = append(f, make([]byte, p.pad)...)
	if p.cut > 0 {
		f = f[:p.cut]
	}
	return f
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// checksummed returns the IP datagram with valid IPv4 header and TCP
// checksums, as a real stack needs them (the TCP options of tcpHeader are
// fine in a SYN).
func (p packet) checksummed() []byte {
	d := p.ipDatagram()
	var l4 []byte
	var pseudo []byte
	if p.src.Addr().Is4() {
		ihl := int(d[0]&0x0f) * 4
		binary.BigEndian.PutUint16(d[10:], checksum(d[:ihl], 0))
		l4 = d[ihl:]
		s, t := p.src.Addr().As4(), p.dst.Addr().As4()
		pseudo = append(append(pseudo, s[:]...), t[:]...)
		pseudo = append(pseudo, 0, 6)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
	} else {
		l4 = d[40:] // no extension headers here
		s, t := p.src.Addr().As16(), p.dst.Addr().As16()
		pseudo = append(append(pseudo, s[:]...), t[:]...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(l4)))
		pseudo = append(pseudo, 0, 0, 0, 6)
	}
	binary.BigEndian.PutUint16(l4[16:], 0)
	binary.BigEndian.PutUint16(l4[16:], checksum(l4, sum(pseudo)))
	return d
}

func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksum is the Internet checksum of b, starting from the partial sum s.
func checksum(b []byte, s uint32) uint16 {
	s += sum(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
