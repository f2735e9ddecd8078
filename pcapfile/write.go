package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/shadowtee/shadowtee/reassembly"
)

const (
	ipv4Header = 20
	ipv6Header = 40
	tcpHeader  = 20
	epbHeader  = 28 // enhanced packet block up to the packet data
	// maxIPv4Payload and maxIPv6Payload are the most TCP payload one packet
	// carries: the IP length fields are 16 bits wide (IPv4 counts its own
	// header, IPv6 does not).
	etherHeader    = 14
	maxIPv4Payload = 0xffff - ipv4Header - tcpHeader
	maxIPv6Payload = 0xffff - tcpHeader
	userAppl       = "shadowtee"
)

// Writer writes segments as a pcapng file: one section with nanosecond
// timestamps, one interface per captured interface, link type Ethernet.
// Each segment becomes a packet with a synthesised Ethernet, IP and TCP
// header (fixed locally administered MAC addresses; checksums correct), so
// Wireshark and tcpdump show the payload as it was captured, and Reader
// reads the segments back as they were written.
//
// The file is little endian, the byte order of every machine the tee runs
// on, which pcapng readers accept either way. Writer buffers; call Flush
// before closing the underlying file. It is not safe for concurrent use.
//
// The Ethernet header costs 14 bytes a packet; raw IP would save them, but
// libpcap (1.10) refuses a pcapng file with more than one raw-IP interface,
// and a recording usually has several.
type Writer struct {
	bw     *bufio.Writer
	n      int64
	ifaces int
	ipID   uint16
	err    error
	buf    [epbHeader + etherHeader + ipv6Header + tcpHeader]byte
	// tail holds padding and trailers: a field, because a local array
	// handed to the buffered writer would escape, one allocation a packet.
	tail [8]byte
}

// NewWriter writes the section header of a new pcapng file to w.
func NewWriter(w io.Writer) (*Writer, error) {
	wr := &Writer{bw: bufio.NewWriterSize(w, 64<<10)}
	// Section header: type, length, byte-order magic, version 1.0, section
	// length unknown (-1), shb_userappl, end of options, length.
	opts := optionLen(len(userAppl)) + 4
	length := 24 + opts + 4
	b := wr.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, blockSHB)
	b = binary.LittleEndian.AppendUint32(b, uint32(length))
	b = binary.LittleEndian.AppendUint32(b, byteOrderMagic)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint64(b, ^uint64(0))
	wr.write(b)
	wr.option(4, []byte(userAppl))
	wr.endOptions()
	wr.endBlock(length)
	return wr, wr.err
}

// AddInterface adds an interface description (link type Ethernet, nanosecond
// timestamps, if_name name) and returns the id to pass to WriteSegment.
func (w *Writer) AddInterface(name string) (id int, err error) {
	if len(name) > 0xffff {
		return 0, errors.New("interface name too long")
	}
	if w.err != nil {
		return 0, w.err
	}
	opts := optionLen(1) + 4 // if_tsresol, end of options
	if name != "" {
		opts += optionLen(len(name))
	}
	length := 16 + opts + 4
	b := w.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, blockIDB)
	b = binary.LittleEndian.AppendUint32(b, uint32(length))
	b = binary.LittleEndian.AppendUint16(b, linkEthernet)
	b = binary.LittleEndian.AppendUint16(b, 0) // reserved
	b = binary.LittleEndian.AppendUint32(b, 0) // snap length: none
	w.write(b)
	if name != "" {
		w.option(2, []byte(name)) // if_name
	}
	w.option(9, []byte{9}) // if_tsresol: 10^-9 s
	w.endOptions()
	w.endBlock(length)
	if w.err != nil {
		return 0, w.err
	}
	w.ifaces++
	return w.ifaces - 1, nil
}

// WriteSegment writes seg as one packet on interface iface, its Time as the
// timestamp. A payload larger than one IP packet holds is split into
// packets with consecutive sequence numbers: SYN stays on the first, FIN,
// RST and PSH go to the last.
func (w *Writer) WriteSegment(iface int, seg *reassembly.Segment) error {
	if w.err != nil {
		return w.err
	}
	if iface < 0 || iface >= w.ifaces {
		return fmt.Errorf("interface %d not added (have %d)", iface, w.ifaces)
	}
	src, dst := seg.Flow.Src.Addr(), seg.Flow.Dst.Addr()
	var max int
	switch {
	case src.Is4() && dst.Is4():
		max = maxIPv4Payload
	case src.Is6() && dst.Is6():
		max = maxIPv6Payload
	default:
		return fmt.Errorf("segment %v: addresses of one IP version needed", seg.Flow)
	}
	p := seg.Payload
	if len(p) <= max {
		w.packet(iface, seg, seg.Seq, seg.Flags, p)
		return w.err
	}
	seq := seg.Seq
	if seg.Flags.Has(reassembly.SYN) {
		seq++
	}
	for off := 0; off < len(p); off += max {
		n := min(max, len(p)-off)
		flags, s := seg.Flags, seq+uint32(off)
		if off > 0 {
			flags &^= reassembly.SYN
		} else {
			s = seg.Seq
		}
		if off+n < len(p) {
			flags &^= reassembly.FIN | reassembly.RST | reassembly.PSH
		}
		w.packet(iface, seg, s, flags, p[off:off+n])
	}
	return w.err
}

// packet writes one enhanced packet block with a synthesised IP and TCP
// header in front of payload.
func (w *Writer) packet(iface int, seg *reassembly.Segment, seq uint32, flags reassembly.Flags, payload []byte) {
	src, dst := seg.Flow.Src.Addr(), seg.Flow.Dst.Addr()
	ipLen, etherType := ipv6Header, uint16(0x86DD)
	if src.Is4() {
		ipLen, etherType = ipv4Header, 0x0800
	}
	caplen := etherHeader + ipLen + tcpHeader + len(payload)
	pad := (4 - caplen&3) & 3
	length := epbHeader + caplen + pad + 4
	var ts uint64
	if !seg.Time.IsZero() {
		ts = uint64(seg.Time.UnixNano())
	}

	b := w.buf[:]
	le := binary.LittleEndian
	le.PutUint32(b[0:], blockEPB)
	le.PutUint32(b[4:], uint32(length))
	le.PutUint32(b[8:], uint32(iface))
	le.PutUint32(b[12:], uint32(ts>>32))
	le.PutUint32(b[16:], uint32(ts))
	le.PutUint32(b[20:], uint32(caplen))
	le.PutUint32(b[24:], uint32(caplen))

	be := binary.BigEndian
	eth := b[epbHeader : epbHeader+etherHeader]
	copy(eth, writerMACs[:])
	be.PutUint16(eth[12:], etherType)
	l3 := epbHeader + etherHeader
	ip := b[l3 : l3+ipLen]
	tcp := b[l3+ipLen : l3+ipLen+tcpHeader]
	var pseudo uint64
	if src.Is4() {
		s4, d4 := src.As4(), dst.As4()
		ip[0], ip[1] = 0x45, 0
		be.PutUint16(ip[2:], uint16(caplen-etherHeader))
		be.PutUint16(ip[4:], w.ipID)
		w.ipID++
		be.PutUint16(ip[6:], 0x4000) // don't fragment
		ip[8], ip[9] = 64, protoTCP
		be.PutUint16(ip[10:], 0)
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		be.PutUint16(ip[10:], ^fold(sum(ip, 0)))
		pseudo = sum(ip[12:20], uint64(protoTCP)+uint64(tcpHeader+len(payload)))
	} else {
		s16, d16 := src.As16(), dst.As16()
		be.PutUint32(ip[0:], 6<<28)
		be.PutUint16(ip[4:], uint16(tcpHeader+len(payload)))
		ip[6], ip[7] = protoTCP, 64
		copy(ip[8:24], s16[:])
		copy(ip[24:40], d16[:])
		pseudo = sum(ip[8:40], uint64(protoTCP)+uint64(tcpHeader+len(payload)))
	}
	be.PutUint16(tcp[0:], seg.Flow.Src.Port())
	be.PutUint16(tcp[2:], seg.Flow.Dst.Port())
	be.PutUint32(tcp[4:], seq)
	be.PutUint32(tcp[8:], seg.Ack)
	tcp[12], tcp[13] = tcpHeader/4<<4, byte(flags&0x1f)
	be.PutUint16(tcp[14:], 0xffff) // window
	be.PutUint16(tcp[16:], 0)      // checksum, below
	be.PutUint16(tcp[18:], 0)      // urgent pointer
	be.PutUint16(tcp[16:], ^fold(sum(payload, sum(tcp, pseudo))))

	w.write(b[:l3+ipLen+tcpHeader])
	w.write(payload)
	w.pad(pad)
	w.endBlock(length)
}

// writerMACs are the destination and source addresses of written frames:
// locally administered, as no real interface has them.
var writerMACs = [12]byte{0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01}

// Flush writes what is buffered to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	w.err = w.bw.Flush()
	return w.err
}

// BytesWritten returns the size of the file written so far, including what
// is still buffered.
func (w *Writer) BytesWritten() int64 { return w.n }

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.bw.Write(b)
	w.n += int64(n)
	w.err = err
}

// optionLen is the size of an option with a value of n bytes.
func optionLen(n int) int { return 4 + (n+3)&^3 }

// option writes one option, padded to 4 bytes.
func (w *Writer) option(code uint16, v []byte) {
	binary.LittleEndian.PutUint16(w.tail[0:], code)
	binary.LittleEndian.PutUint16(w.tail[2:], uint16(len(v)))
	w.write(w.tail[:4])
	w.write(v)
	w.pad((4 - len(v)&3) & 3)
}

// pad writes n (at most 4) zero bytes.
func (w *Writer) pad(n int) {
	clear(w.tail[:4])
	w.write(w.tail[:n])
}

// endOptions writes the end-of-options marker.
func (w *Writer) endOptions() { w.pad(4) }

// endBlock writes the trailing copy of the block length.
func (w *Writer) endBlock(length int) {
	binary.LittleEndian.PutUint32(w.tail[:], uint32(length))
	w.write(w.tail[:4])
}

// sum adds b, as big-endian 16-bit words, to a ones' complement sum. It
// adds eight bytes at a time: the ones' complement sum does not depend on
// the word size as long as carries wrap around, and fold reduces it to 16
// bits at the end. b must start at an even offset of the checksummed data.
func sum(b []byte, acc uint64) uint64 {
	var c uint64
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc += c
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b)), 0)
		acc += c
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), 0)
		acc += c
		b = b[2:]
	}
	if len(b) == 1 {
		acc, c = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += c
	}
	return acc
}

// fold reduces a ones' complement sum to 16 bits.
func fold(acc uint64) uint16 {
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return uint16(acc)
}
