package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/shadowtee/shadowtee/reassembly"
)

const (
	// maxPacket is the longest packet record accepted, libpcap's
	// MAXIMUM_SNAPLEN. A record that claims more is corrupt: its length is
	// never used to size anything.
	maxPacket = 256 << 10
	// maxBlock bounds a whole record or pcapng block held in memory: a
	// maxPacket packet plus headers and options.
	maxBlock = 1 << 20
	// initialBuffer is the read buffer a Reader starts with. Records are
	// handed out straight from it, so it grows, once, to maxBlock when a
	// record does not fit; small inputs (tests, fuzzing) stay small.
	initialBuffer = 64 << 10
)

// Sentinel errors, matched with errors.Is. Open and NewReader wrap ErrEmpty,
// ErrNotCapture and ErrLinkType; Next returns an *Error whose Err wraps
// ErrTruncated or ErrCorrupt (or an I/O error of the underlying reader).
var (
	ErrEmpty      = errors.New("empty file")
	ErrNotCapture = errors.New("not a capture file")
	ErrLinkType   = errors.New("unsupported link type")
	ErrTruncated  = errors.New("truncated capture")
	ErrCorrupt    = errors.New("corrupt capture")
)

// Error reports damage in a capture file: which file, where, and what is
// wrong. Offset is the byte offset of the damaged record or block (or of the
// damaged field inside it); every packet before it has been returned.
type Error struct {
	File   string
	Offset int64
	Err    error
}

// Error formats the error as "file: offset N: what is wrong".
func (e *Error) Error() string { return fmt.Sprintf("%s: offset %d: %v", e.File, e.Offset, e.Err) }

// Unwrap returns the cause, so that errors.Is(err, ErrTruncated) works.
func (e *Error) Unwrap() error { return e.Err }

// problem is an error with a precise message that still matches its kind.
type problem struct {
	kind error
	msg  string
}

func (p *problem) Error() string { return p.msg }
func (p *problem) Unwrap() error { return p.kind }

// Stats counts what a Reader has read so far.
type Stats struct {
	Packets  uint64 // packet records read
	Segments uint64 // TCP segments returned by Next

	// Packets skipped, by reason.
	SkippedNotIP    uint64 // link layer carries neither IPv4 nor IPv6 (ARP, LLDP, ...)
	SkippedNotTCP   uint64 // IP, but not TCP
	SkippedFragment uint64 // IPv4 fragment or IPv6 fragment header: not followed
	SkippedShort    uint64 // too short to hold its headers, or headers that contradict their lengths
	SkippedLinkType uint64 // from a pcapng interface whose link type is not supported

	// SnaplenTruncated counts segments returned with less payload than their
	// IP length says: the capture was taken with a small snap length.
	SnaplenTruncated uint64

	// LinkType names the link type of the file, or the distinct link types
	// of the interfaces of a pcapng file, comma-separated ("EN10MB",
	// "EN10MB,LINUX_SLL2").
	LinkType string
}

// Skipped returns the number of packets skipped for any reason.
func (s Stats) Skipped() uint64 {
	return s.SkippedNotIP + s.SkippedNotTCP + s.SkippedFragment + s.SkippedShort + s.SkippedLinkType
}

type format uint8

const (
	formatPcap format = iota + 1
	formatPcapng
)

// Reader reads the TCP segments of one capture file, in file order. It is
// not safe for concurrent use.
type Reader struct {
	name   string
	closer io.Closer
	br     *bufio.Reader
	off    int64 // bytes consumed
	size   int64
	err    error // sticky: once damaged, every Next returns the same error
	format format
	be     bool // byte order of the file (pcap) or of the current section (pcapng)

	// pcap
	link      uint16
	fracNanos int64 // nanoseconds per unit of the record's fraction field

	// pcapng
	ifaces   []iface
	links    []uint16 // every link type met, in order, for Stats
	lastTime time.Time

	stats Stats
}

// Open opens a pcap or pcapng file. Errors for a missing, empty or foreign
// file, or one whose link type is not supported, name the file and say what
// is wrong; they are not an *Error, which means damage after good packets.
// Damage after the file header is reported by Next.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	r, err := NewReader(f, path, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads a capture from r, detecting pcap or pcapng by its magic
// number. name is used in error messages; size is the length of the input
// when known (for Size), else -1. Closing the Reader does not close r.
func NewReader(r io.Reader, name string, size int64) (*Reader, error) {
	rd := &Reader{name: name, size: size, br: bufio.NewReaderSize(r, initialBuffer)}
	if err := rd.readFileHeader(); err != nil {
		return nil, err
	}
	return rd, nil
}

// Offset returns how many bytes of the input have been consumed: the file
// header and every record read so far.
func (r *Reader) Offset() int64 { return r.off }

// Size returns the size of the input when known, else -1.
func (r *Reader) Size() int64 { return r.size }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	names := make([]string, 0, len(r.links))
	for _, l := range r.links {
		names = append(names, linkName(l))
	}
	s.LinkType = strings.Join(names, ",")
	return s
}

// Close closes the file opened by Open; for a Reader made by NewReader it
// does nothing.
func (r *Reader) Close() error {
	r.err = errClosed
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	return c.Close()
}

var errClosed = errors.New("pcapfile: reader closed")

// Next fills seg with the next TCP segment of the capture. seg.Payload
// points into the Reader's buffer and is valid until the next call. Next
// returns io.EOF at the end of the capture, and an *Error when the file is
// damaged, after every good packet before the damage. Packets that are not
// TCP over IPv4 or IPv6, IP fragments and packets too short for their
// headers are skipped and counted in Stats.
func (r *Reader) Next(seg *reassembly.Segment) error {
	if r.err != nil {
		return r.err
	}
	for {
		var (
			data []byte
			link uint16
			t    time.Time
			err  error
		)
		if r.format == formatPcap {
			data, t, err = r.pcapRecord()
			link = r.link
		} else {
			data, link, t, err = r.pcapngRecord()
		}
		if err != nil {
			r.err = err
			return err
		}
		r.stats.Packets++
		switch decode(link, data, seg) {
		case verdictSegment:
		case verdictSnaplen:
			r.stats.SnaplenTruncated++
		case verdictNotIP:
			r.stats.SkippedNotIP++
			continue
		case verdictNotTCP:
			r.stats.SkippedNotTCP++
			continue
		case verdictFragment:
			r.stats.SkippedFragment++
			continue
		case verdictShort:
			r.stats.SkippedShort++
			continue
		default:
			r.stats.SkippedLinkType++
			continue
		}
		seg.Time = t
		r.stats.Segments++
		return nil
	}
}

// peek returns the next n bytes (n <= maxBlock) without consuming them,
// straight from the read buffer. Fewer bytes come with the reason: io.EOF
// at the end of the input, or the underlying reader's error.
func (r *Reader) peek(n int) ([]byte, error) {
	if n > r.br.Size() {
		// Grow only when the input holds more than the small buffer: a
		// record cut short near the end of a small input needs no more.
		if b, err := r.br.Peek(r.br.Size()); len(b) < r.br.Size() {
			return b, err
		}
		// Chaining keeps what the small buffer already holds; once it is
		// drained the large one reads from the input directly.
		r.br = bufio.NewReaderSize(r.br, maxBlock)
	}
	return r.br.Peek(n)
}

// consume moves past n bytes that peek returned.
func (r *Reader) consume(n int) {
	d, _ := r.br.Discard(n)
	r.off += int64(d)
}

// damage returns an *Error at offset off. Reasons of the input other than
// the end of it (a failing disk) are reported as they are.
func (r *Reader) damage(off int64, ioErr error, kind error, format string, args ...any) error {
	if ioErr != nil && ioErr != io.EOF {
		return &Error{File: r.name, Offset: off, Err: ioErr}
	}
	return &Error{File: r.name, Offset: off, Err: &problem{kind: kind, msg: fmt.Sprintf(format, args...)}}
}

func (r *Reader) u16(b []byte) uint16 {
	if r.be {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *Reader) u32(b []byte) uint32 {
	if r.be {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// Magic numbers, as read little-endian from the first four bytes.
const (
	magicMicro    = 0xa1b2c3d4
	magicNano     = 0xa1b23c4d
	magicMicroBE  = 0xd4c3b2a1
	magicNanoBE   = 0x4d3cb2a1
	magicPcapng   = 0x0a0d0d0a // the section header block type, a palindrome
	pcapHeaderLen = 24
	pcapRecordLen = 16
)

// readFileHeader detects the format and reads the pcap file header or the
// first pcapng section.
func (r *Reader) readFileHeader() error {
	b, err := r.peek(pcapHeaderLen)
	if len(b) == 0 {
		if err == io.EOF || err == nil {
			return fmt.Errorf("%s: %w", r.name, ErrEmpty)
		}
		return fmt.Errorf("%s: %w", r.name, err)
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	if len(b) < 4 {
		return fmt.Errorf("%s: %w (only %d bytes)", r.name, ErrNotCapture, len(b))
	}
	switch magic := binary.LittleEndian.Uint32(b); magic {
	case magicMicro, magicNano, magicMicroBE, magicNanoBE:
		r.be = magic == magicMicroBE || magic == magicNanoBE
		r.fracNanos = 1000
		if magic == magicNano || magic == magicNanoBE {
			r.fracNanos = 1
		}
		return r.readPcapHeader(b)
	case magicPcapng:
		r.format = formatPcapng
		return r.readFirstSection()
	default:
		if b[0] == 0x1f && b[1] == 0x8b {
			return fmt.Errorf("%s: %w: gzip-compressed; decompress it first", r.name, ErrNotCapture)
		}
		return fmt.Errorf("%s: %w (starts with % x; pcap and pcapng are read)", r.name, ErrNotCapture, b[:4])
	}
}

func (r *Reader) readPcapHeader(b []byte) error {
	r.format = formatPcap
	if len(b) < pcapHeaderLen {
		return fmt.Errorf("%s: %w: pcap file header cut short (%d of %d bytes)", r.name, ErrTruncated, len(b), pcapHeaderLen)
	}
	if major := r.u16(b[4:]); major != 2 {
		return fmt.Errorf("%s: %w: pcap version %d.%d (only 2.x exists)", r.name, ErrNotCapture, major, r.u16(b[6:]))
	}
	// The upper bits of the link type field carry FCS information, which
	// does not matter here: the IP length bounds every packet.
	r.link = uint16(r.u32(b[20:]))
	if !linkSupported(r.link) {
		return fmt.Errorf("%s: %w %s; supported: %s", r.name, ErrLinkType, linkLabel(r.link), supportedLinks())
	}
	r.links = append(r.links, r.link)
	r.consume(pcapHeaderLen)
	return nil
}

// pcapRecord reads one pcap packet record.
func (r *Reader) pcapRecord() ([]byte, time.Time, error) {
	h, err := r.peek(pcapRecordLen)
	if len(h) < pcapRecordLen {
		if len(h) == 0 && err == io.EOF {
			return nil, time.Time{}, io.EOF
		}
		return nil, time.Time{}, r.damage(r.off, err, ErrTruncated,
			"truncated packet record header (%d of %d bytes)", len(h), pcapRecordLen)
	}
	caplen := r.u32(h[8:])
	if caplen > maxPacket {
		return nil, time.Time{}, r.damage(r.off, nil, ErrCorrupt,
			"corrupt packet record: captured length %d exceeds the %d a capture can hold", caplen, maxPacket)
	}
	n := pcapRecordLen + int(caplen)
	rec, err := r.peek(n)
	if len(rec) < n {
		return nil, time.Time{}, r.damage(r.off, err, ErrTruncated,
			"truncated packet record (%d of %d bytes)", len(rec), n)
	}
	t := time.Unix(int64(r.u32(rec[0:])), int64(r.u32(rec[4:]))*r.fracNanos)
	r.consume(n)
	return rec[pcapRecordLen:], t, nil
}
