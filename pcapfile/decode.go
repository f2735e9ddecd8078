package pcapfile

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/shadowtee/shadowtee/reassembly"
)

// Link types (LINKTYPE_* of the pcap and pcapng specifications).
const (
	linkNull     = 0   // BSD loopback, address family in the capturing host's byte order
	linkEthernet = 1   // EN10MB
	linkRaw      = 101 // IPv4 or IPv6 header first
	linkLoop     = 108 // OpenBSD loopback, address family in network byte order
	linkSLL      = 113 // Linux "cooked" capture, v1 (tcpdump -i any before libpcap 1.10)
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276 // Linux "cooked" capture, v2
)

// supported lists the link types Reader decodes, in the order error messages
// name them.
var supported = []uint16{linkEthernet, linkRaw, linkIPv4, linkIPv6, linkSLL, linkSLL2, linkNull, linkLoop}

// linkNames holds tcpdump's names for the supported link types and for the
// unsupported ones a user is most likely to meet.
var linkNames = map[uint16]string{
	linkNull: "NULL", linkEthernet: "EN10MB", linkRaw: "RAW", linkLoop: "LOOP",
	linkSLL: "LINUX_SLL", linkIPv4: "IPV4", linkIPv6: "IPV6", linkSLL2: "LINUX_SLL2",
	6: "IEEE802", 9: "PPP", 10: "FDDI", 50: "PPP_HDLC", 51: "PPP_ETHER", 104: "C_HDLC",
	105: "IEEE802_11", 119: "PRISM_HEADER", 127: "IEEE802_11_RADIO", 187: "BLUETOOTH_HCI_H4",
	192: "PPI", 195: "IEEE802_15_4", 201: "BLUETOOTH_HCI_H4_WITH_PHDR", 220: "USB_LINUX_MMAPPED",
	239: "NFLOG", 253: "NETLINK",
}

func linkSupported(l uint16) bool {
	for _, s := range supported {
		if s == l {
			return true
		}
	}
	return false
}

func linkName(l uint16) string {
	if n, ok := linkNames[l]; ok {
		return n
	}
	return fmt.Sprintf("LINKTYPE_%d", l)
}

// linkLabel names a link type with its number: "IEEE802_11 (105)".
func linkLabel(l uint16) string { return fmt.Sprintf("%s (%d)", linkName(l), l) }

func supportedLinks() string {
	s := make([]string, len(supported))
	for i, l := range supported {
		s[i] = linkLabel(l)
	}
	return strings.Join(s, ", ")
}

// verdict is what decode made of a packet.
type verdict uint8

const (
	verdictSegment  verdict = iota
	verdictSnaplen          // a segment whose payload the snap length cut
	verdictNotIP            // skipped
	verdictNotTCP           // skipped
	verdictFragment         // skipped
	verdictShort            // skipped
	verdictLinkType         // skipped
)

// EtherTypes and BSD address families met below the IP header.
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100 // 802.1Q
	etherQinQ  = 0x88a8 // 802.1ad
	etherQinQ2 = 0x9100 // pre-standard QinQ
	maxTags    = 2
)

// decode fills seg (all but Time) from one captured packet of link type
// link. It reads fixed offsets and allocates nothing; seg.Payload aliases b.
func decode(link uint16, b []byte, seg *reassembly.Segment) verdict {
	var etype uint16
	switch link {
	case linkEthernet:
		if len(b) < 14 {
			return verdictShort
		}
		etype, b = be16(b[12:]), b[14:]
	case linkRaw:
		if len(b) == 0 {
			return verdictShort
		}
		switch b[0] >> 4 {
		case 4:
			return decodeIPv4(b, seg)
		case 6:
			return decodeIPv6(b, seg)
		}
		return verdictNotIP
	case linkIPv4:
		return decodeIPv4(b, seg)
	case linkIPv6:
		return decodeIPv6(b, seg)
	case linkSLL:
		if len(b) < 16 {
			return verdictShort
		}
		etype, b = be16(b[14:]), b[16:]
	case linkSLL2:
		if len(b) < 20 {
			return verdictShort
		}
		etype, b = be16(b[0:]), b[20:]
	case linkNull, linkLoop:
		if len(b) < 4 {
			return verdictShort
		}
		// Families are small numbers: whichever byte order the writer used,
		// one reading is below 2^16. LOOP is defined as network order, but
		// some writers get it wrong.
		fam := binary.LittleEndian.Uint32(b)
		if fam > 0xffff {
			fam = bits.ReverseBytes32(fam)
		}
		switch fam {
		case 2: // AF_INET everywhere
			return decodeIPv4(b[4:], seg)
		case 24, 28, 30: // AF_INET6 on NetBSD/OpenBSD, FreeBSD, Darwin
			return decodeIPv6(b[4:], seg)
		}
		return verdictNotIP
	default:
		return verdictLinkType
	}
	// libpcap puts VLAN tags that the kernel stripped back in front of the
	// EtherType, for Ethernet and for the cooked headers alike.
	for tags := 0; etype == etherVLAN || etype == etherQinQ || etype == etherQinQ2; tags++ {
		if tags == maxTags {
			return verdictNotIP
		}
		if len(b) < 4 {
			return verdictShort
		}
		etype, b = be16(b[2:]), b[4:]
	}
	switch etype {
	case etherIPv4:
		return decodeIPv4(b, seg)
	case etherIPv6:
		return decodeIPv6(b, seg)
	}
	return verdictNotIP
}

func decodeIPv4(b []byte, seg *reassembly.Segment) verdict {
	if len(b) < 20 {
		return verdictShort
	}
	if b[0]>>4 != 4 {
		return verdictNotIP
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(be16(b[2:]))
	if total == 0 {
		// A TSO packet captured on the sending host before segmentation:
		// like tcpdump, take what was captured.
		total = len(b)
	}
	if ihl < 20 || total < ihl || len(b) < ihl {
		return verdictShort
	}
	if b[9] != 6 {
		return verdictNotTCP
	}
	if be16(b[6:])&0x3fff != 0 { // more fragments, or a fragment offset
		return verdictFragment
	}
	cut := total > len(b)
	if cut {
		total = len(b)
	}
	// Slicing at total drops Ethernet padding and trailers.
	return decodeTCP(b[ihl:total], netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), cut, seg)
}

// IPv6 extension headers that are skipped on the way to TCP.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6AH       = 51
	ipv6DestOpts = 60
	protoTCP     = 6
)

func decodeIPv6(b []byte, seg *reassembly.Segment) verdict {
	if len(b) < 40 {
		return verdictShort
	}
	if b[0]>>4 != 6 {
		return verdictNotIP
	}
	end := 40 + int(be16(b[4:]))
	if end == 40 {
		// A jumbogram or a TSO packet: the captured length is all there is.
		end = len(b)
	}
	cut := end > len(b)
	if cut {
		end = len(b)
	}
	next, off := b[6], 40
	for next != protoTCP {
		var n int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if off+2 > end {
				return verdictShort
			}
			n = (int(b[off+1]) + 1) * 8
		case ipv6AH:
			if off+2 > end {
				return verdictShort
			}
			n = (int(b[off+1]) + 2) * 4
		case ipv6Fragment:
			return verdictFragment
		default:
			return verdictNotTCP
		}
		next = b[off]
		if off += n; off > end {
			return verdictShort
		}
	}
	return decodeTCP(b[off:end], netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), cut, seg)
}

// decodeTCP fills seg from a TCP header and payload. cut tells that the IP
// layer announced more bytes than were captured.
func decodeTCP(t []byte, src, dst netip.Addr, cut bool, seg *reassembly.Segment) verdict {
	if len(t) < 20 {
		return verdictShort
	}
	doff := int(t[12]>>4) * 4
	if doff < 20 || doff > len(t) {
		return verdictShort
	}
	seg.Flow.Src = netip.AddrPortFrom(src, be16(t[0:]))
	seg.Flow.Dst = netip.AddrPortFrom(dst, be16(t[2:]))
	seg.Seq = binary.BigEndian.Uint32(t[4:])
	seg.Ack = binary.BigEndian.Uint32(t[8:])
	seg.Flags = reassembly.Flags(t[13] & 0x1f)
	seg.Payload = t[doff:]
	if cut {
		return verdictSnaplen
	}
	return verdictSegment
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
