package pcapfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// pcapng block types.
const (
	blockIDB = 1          // interface description
	blockPB  = 2          // packet (obsolete, still written by old tools)
	blockSPB = 3          // simple packet
	blockNRB = 4          // name resolution
	blockISB = 5          // interface statistics
	blockEPB = 6          // enhanced packet
	blockJEB = 9          // systemd journal export
	blockDSB = 10         // decryption secrets
	blockCB  = 0x00000bad // custom, may be copied
	blockCBn = 0x40000bad // custom, must not be copied
	blockSHB = magicPcapng

	byteOrderMagic = 0x1a2b3c4d

	// maxInterfaces bounds the interface table of one section, which would
	// otherwise grow with every (tiny) description block of a corrupt file.
	maxInterfaces = 1 << 12
	// maxSkipped bounds blocks that are skipped without being read into
	// memory (name resolution, secrets, custom blocks).
	maxSkipped = 1 << 30
)

// iface is what the packets of one pcapng interface need.
type iface struct {
	link   uint16
	snap   uint32
	units  uint64 // timestamp units per second (if_tsresol)
	offset int64  // seconds added to every timestamp (if_tsoffset)
}

// time converts a packet timestamp of this interface. The fraction is scaled
// with a 128-bit product, so any resolution up to 10^-19 s is exact.
func (f *iface) time(ts uint64) time.Time {
	sec, frac := ts/f.units, ts%f.units
	var ns uint64
	switch f.units {
	case 1e9:
		ns = frac
	case 1e6:
		ns = frac * 1e3
	default:
		hi, lo := bits.Mul64(frac, 1e9)
		ns, _ = bits.Div64(hi, lo, f.units)
	}
	return time.Unix(int64(sec)+f.offset, int64(ns))
}

func blockName(typ uint32) string {
	switch typ {
	case blockSHB:
		return "section header block"
	case blockIDB:
		return "interface description block"
	case blockEPB:
		return "enhanced packet block"
	case blockSPB:
		return "simple packet block"
	case blockPB:
		return "packet block"
	}
	return fmt.Sprintf("block of type %#x", typ)
}

// readFirstSection reads the first section header and the blocks that follow
// it up to the first packet, so that the link types are known and checked
// when Open returns. Damage in those blocks is left for Next to report.
func (r *Reader) readFirstSection() error {
	b, err := r.peek(12)
	if len(b) < 12 {
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		return fmt.Errorf("%s: %w: pcapng section header cut short (%d bytes)", r.name, ErrTruncated, len(b))
	}
	if err := r.section(b); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	for {
		b, _ := r.peek(8)
		if len(b) < 8 {
			break
		}
		if typ := r.u32(b); typ == blockEPB || typ == blockSPB || typ == blockPB {
			break
		}
		if _, _, _, err := r.block(); err != nil {
			if err != io.EOF {
				r.err = err
			}
			break
		}
	}
	if len(r.links) == 0 {
		return nil
	}
	for _, l := range r.links {
		if linkSupported(l) {
			return nil
		}
	}
	labels := ""
	for i, l := range r.links {
		if i > 0 {
			labels += ", "
		}
		labels += linkLabel(l)
	}
	return fmt.Errorf("%s: %w %s; supported: %s", r.name, ErrLinkType, labels, supportedLinks())
}

// section reads and consumes a section header block whose first 12 bytes are
// b. It sets the byte order of the section and forgets the interfaces of the
// previous one.
func (r *Reader) section(b []byte) error {
	switch binary.LittleEndian.Uint32(b[8:]) {
	case byteOrderMagic:
		r.be = false
	case bits.ReverseBytes32(byteOrderMagic):
		r.be = true
	default:
		return &problem{ErrCorrupt, fmt.Sprintf("section header block with an unknown byte-order magic % x", b[8:12])}
	}
	length := r.u32(b[4:])
	if length < 28 || length%4 != 0 || length > maxBlock {
		return &problem{ErrCorrupt, fmt.Sprintf("section header block length %d is invalid", length)}
	}
	blk, err := r.peek(int(length))
	if len(blk) < int(length) {
		if err != nil && err != io.EOF {
			return err
		}
		return &problem{ErrTruncated, fmt.Sprintf("truncated section header block (%d of %d bytes)", len(blk), length)}
	}
	if t := r.u32(blk[length-4:]); t != length {
		return &problem{ErrCorrupt, fmt.Sprintf("section header block: trailing length %d differs from leading length %d", t, length)}
	}
	if major := r.u16(blk[12:]); major != 1 {
		return &problem{ErrCorrupt, fmt.Sprintf("pcapng version %d.%d is not supported (1.x is)", major, r.u16(blk[14:]))}
	}
	r.ifaces = r.ifaces[:0]
	r.consume(int(length))
	return nil
}

// pcapngRecord returns the next packet of a pcapng file, handling the other
// blocks on the way.
func (r *Reader) pcapngRecord() ([]byte, uint16, time.Time, error) {
	for {
		data, link, t, err := r.block()
		if err != nil || data != nil {
			return data, link, t, err
		}
	}
}

// block reads one block. For a packet block it returns the packet (non-nil,
// possibly empty), its interface's link type and its time; for any other
// block it returns nil data after taking what it needs from the block.
func (r *Reader) block() ([]byte, uint16, time.Time, error) {
	start := r.off
	h, err := r.peek(12)
	if len(h) < 12 {
		if len(h) == 0 && err == io.EOF {
			return nil, 0, time.Time{}, io.EOF
		}
		return nil, 0, time.Time{}, r.damage(start, err, ErrTruncated, "truncated block header (%d of 12 bytes)", len(h))
	}
	typ := r.u32(h)
	if typ == blockSHB {
		if err := r.section(h); err != nil {
			if p, ok := err.(*problem); ok {
				return nil, 0, time.Time{}, &Error{File: r.name, Offset: start, Err: p}
			}
			return nil, 0, time.Time{}, &Error{File: r.name, Offset: start, Err: err}
		}
		return nil, 0, time.Time{}, nil
	}
	length := r.u32(h[4:])
	if length < 12 || length%4 != 0 {
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt %s: length %d is not a multiple of 4 of at least 12", blockName(typ), length)
	}
	if length > maxBlock {
		switch typ {
		case blockNRB, blockDSB, blockJEB, blockCB, blockCBn:
			if length <= maxSkipped {
				return nil, 0, time.Time{}, r.skipLarge(typ, length)
			}
		}
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt %s: length %d exceeds the %d this reader accepts", blockName(typ), length, maxBlock)
	}
	blk, err := r.peek(int(length))
	if len(blk) < int(length) {
		return nil, 0, time.Time{}, r.damage(start, err, ErrTruncated, "truncated %s (%d of %d bytes)", blockName(typ), len(blk), length)
	}
	if t := r.u32(blk[length-4:]); t != length {
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt %s: trailing length %d differs from leading length %d", blockName(typ), t, length)
	}
	switch typ {
	case blockEPB, blockPB:
		return r.packetBlock(typ, blk)
	case blockSPB:
		return r.simplePacket(blk)
	case blockIDB:
		if err := r.interfaceBlock(blk); err != nil {
			return nil, 0, time.Time{}, err
		}
	}
	r.consume(int(length))
	return nil, 0, time.Time{}, nil
}

// skipLarge skips a block too large to hold, without reading it into memory.
func (r *Reader) skipLarge(typ, length uint32) error {
	start := r.off
	n, err := r.br.Discard(int(length) - 4)
	r.off += int64(n)
	if n < int(length)-4 {
		return r.damage(start, err, ErrTruncated, "truncated %s (%d of %d bytes)", blockName(typ), n, length)
	}
	t, err := r.peek(4)
	if len(t) < 4 {
		return r.damage(start, err, ErrTruncated, "truncated %s (%d of %d bytes)", blockName(typ), n+len(t), length)
	}
	if v := r.u32(t); v != length {
		return r.damage(start, nil, ErrCorrupt, "corrupt %s: trailing length %d differs from leading length %d", blockName(typ), v, length)
	}
	r.consume(4)
	return nil
}

// packetBlock decodes an enhanced packet block or an obsolete packet block,
// which share their layout except for the width of the interface field.
func (r *Reader) packetBlock(typ uint32, blk []byte) ([]byte, uint16, time.Time, error) {
	start := r.off
	if len(blk) < 32 {
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt %s: %d bytes, at least 32 needed", blockName(typ), len(blk))
	}
	var id uint32
	if typ == blockEPB {
		id = r.u32(blk[8:])
	} else {
		id = uint32(r.u16(blk[8:]))
	}
	if id >= uint32(len(r.ifaces)) {
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt %s: interface %d, but the section describes %d", blockName(typ), id, len(r.ifaces))
	}
	caplen := r.u32(blk[20:])
	if caplen > maxPacket || 28+int(caplen)+4 > len(blk) {
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt %s: captured length %d does not fit in its %d bytes", blockName(typ), caplen, len(blk))
	}
	f := &r.ifaces[id]
	t := f.time(uint64(r.u32(blk[12:]))<<32 | uint64(r.u32(blk[16:])))
	r.lastTime = t
	r.consume(len(blk))
	return blk[28 : 28+caplen], f.link, t, nil
}

// simplePacket decodes a simple packet block. It has no timestamp: the
// packet gets the time of the packet before it, which keeps the clock of the
// reassembly monotonic.
func (r *Reader) simplePacket(blk []byte) ([]byte, uint16, time.Time, error) {
	start := r.off
	if len(blk) < 16 || len(r.ifaces) == 0 {
		return nil, 0, time.Time{}, r.damage(start, nil, ErrCorrupt, "corrupt simple packet block: %d bytes, %d interfaces", len(blk), len(r.ifaces))
	}
	n := r.u32(blk[8:])
	if room := uint32(len(blk) - 16); n > room {
		n = room
	}
	if s := r.ifaces[0].snap; s != 0 && n > s {
		n = s
	}
	r.consume(len(blk))
	return blk[12 : 12+n], r.ifaces[0].link, r.lastTime, nil
}

// interfaceBlock adds the interface of a description block to the section.
func (r *Reader) interfaceBlock(blk []byte) error {
	start := r.off
	if len(blk) < 20 {
		return r.damage(start, nil, ErrCorrupt, "corrupt interface description block: %d bytes, at least 20 needed", len(blk))
	}
	if len(r.ifaces) >= maxInterfaces {
		return r.damage(start, nil, ErrCorrupt, "corrupt capture: more than %d interfaces in one section", maxInterfaces)
	}
	f := iface{link: r.u16(blk[8:]), snap: r.u32(blk[12:]), units: 1e6}
	opts := blk[16 : len(blk)-4]
	for pos := 0; len(opts)-pos >= 4; {
		code, n := r.u16(opts[pos:]), int(r.u16(opts[pos+2:]))
		if code == 0 {
			break
		}
		v := opts[pos+4:]
		if n > len(v) {
			return r.damage(start+16+int64(pos), nil, ErrCorrupt, "corrupt interface description block: option %d of %d bytes runs past the block", code, n)
		}
		v = v[:n]
		switch {
		case code == 9 && n >= 1: // if_tsresol
			units, ok := resolution(v[0])
			if !ok {
				return r.damage(start+16+int64(pos), nil, ErrCorrupt, "corrupt interface description block: timestamp resolution %#x", v[0])
			}
			f.units = units
		case code == 14 && n >= 8: // if_tsoffset
			f.offset = int64(r.u64(v))
		}
		pos += 4 + (n+3)&^3
	}
	r.ifaces = append(r.ifaces, f)
	r.noteLink(f.link)
	return nil
}

// resolution returns the timestamp units per second of an if_tsresol value:
// a negative power of ten, or of two when the top bit is set.
func resolution(v byte) (uint64, bool) {
	e := uint(v & 0x7f)
	if v&0x80 != 0 {
		if e > 63 {
			return 0, false
		}
		return 1 << e, true
	}
	if e > 19 {
		return 0, false
	}
	u := uint64(1)
	for range e {
		u *= 10
	}
	return u, true
}

func (r *Reader) u64(b []byte) uint64 {
	if r.be {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

// noteLink remembers a link type for Stats, once.
func (r *Reader) noteLink(l uint16) {
	for _, x := range r.links {
		if x == l {
			return
		}
	}
	if len(r.links) < 16 {
		r.links = append(r.links, l)
	}
}
