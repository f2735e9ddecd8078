package h2frame

import (
	"errors"

	"golang.org/x/net/http2/hpack"
)

// This file is an HPACK decoder (RFC 7541) for an observer. x/net's
// hpack.Decoder serves an endpoint, which always knows its whole table; an
// observer may not: a connection joined mid-stream, or a direction that lost
// bytes, has entries it never saw. This decoder knows which entries it knows.
//
// The table is a list of the newest entries, newest last, each known or not
// (an entry inserted with the name of an unknown entry has an unknown name),
// and perhaps an unknown tail of older entries ("complete" is false). The
// list is always a prefix of the encoder's table, counted from the newest:
// every insertion is seen, eviction only ever cuts the oldest end, and this
// table evicts no sooner than the encoder (it evicts at the encoder's size
// when that is known, else at its own cap, which is larger). So an index
// into the list is always right, and an index past it is unknown unless the
// tail is known to be empty. Nothing is ever guessed.
//
// It also saves memory and garbage against x/net's: entries live in one
// byte buffer, and decoded strings are handed to the sink as byte slices
// valid for the call, with no allocation once the buffers have grown.

const (
	entryOverhead = 32 // RFC 7541 4.1
	staticLen     = 61
	// initialTableSize is SETTINGS_HEADER_TABLE_SIZE's initial value: the
	// table size of a fresh connection until an update says otherwise.
	initialTableSize = 4096
)

// errHPACK reports a header block that a decoder cannot read: the
// connection's compression state is lost.
var errHPACK = errors.New("h2frame: invalid header block")

// fieldSink receives the fields of a header block in order. name and value
// are only valid during the call.
type fieldSink interface {
	field(name, value []byte)
	// unknown reports a field that refers to an entry never seen.
	unknown()
}

type staticEntry struct{ name, value []byte }

var staticTable [staticLen]staticEntry

func init() {
	for i, f := range [staticLen][2]string{
		{":authority", ""}, {":method", "GET"}, {":method", "POST"}, {":path", "/"},
		{":path", "/index.html"}, {":scheme", "http"}, {":scheme", "https"},
		{":status", "200"}, {":status", "204"}, {":status", "206"}, {":status", "304"},
		{":status", "400"}, {":status", "404"}, {":status", "500"},
		{"accept-charset", ""}, {"accept-encoding", "gzip, deflate"},
		{"accept-language", ""}, {"accept-ranges", ""}, {"accept", ""},
		{"access-control-allow-origin", ""}, {"age", ""}, {"allow", ""},
		{"authorization", ""}, {"cache-control", ""}, {"content-disposition", ""},
		{"content-encoding", ""}, {"content-language", ""}, {"content-length", ""},
		{"content-location", ""}, {"content-range", ""}, {"content-type", ""},
		{"cookie", ""}, {"date", ""}, {"etag", ""}, {"expect", ""}, {"expires", ""},
		{"from", ""}, {"host", ""}, {"if-match", ""}, {"if-modified-since", ""},
		{"if-none-match", ""}, {"if-range", ""}, {"if-unmodified-since", ""},
		{"last-modified", ""}, {"link", ""}, {"location", ""}, {"max-forwards", ""},
		{"proxy-authenticate", ""}, {"proxy-authorization", ""}, {"range", ""},
		{"referer", ""}, {"refresh", ""}, {"retry-after", ""}, {"server", ""},
		{"set-cookie", ""}, {"strict-transport-security", ""},
		{"transfer-encoding", ""}, {"user-agent", ""}, {"vary", ""}, {"via", ""},
		{"www-authenticate", ""},
	} {
		staticTable[i] = staticEntry{[]byte(f[0]), []byte(f[1])}
	}
}

// tabEntry is one dynamic table entry: its bytes are data[off:off+nlen]
// (name) and then vlen bytes of value. An unknown entry holds no bytes; its
// size is a lower bound (the value's length is known, the name's is not).
type tabEntry struct {
	off, nlen, vlen uint32
	known           bool
}

func (e *tabEntry) size() uint32 { return e.nlen + e.vlen + entryOverhead }

// decoder is the HPACK state of one direction of one connection.
type decoder struct {
	ents  []tabEntry // oldest first, live from ents[head:]
	head  int
	data  []byte // entry bytes; live from data[dataHead:]
	dHead int

	size     uint32 // sum of the list's entry sizes (lower bounds for unknown ones)
	max      uint32 // the encoder's table size, when maxKnown; else limit
	limit    uint32 // the most this decoder holds
	maxKnown bool
	complete bool // no entry exists beyond the list
	unknowns int  // unknown entries in the list

	scratch []byte // Huffman output for the current field, reused
}

func newDecoder(limit uint32) decoder {
	fits := initialTableSize <= limit
	return decoder{max: min(initialTableSize, limit), limit: limit, maxKnown: fits, complete: fits}
}

// lose forgets the table: bytes of this direction were lost, or a header
// block could not be read. Entries seen from now on are known again.
func (d *decoder) lose() {
	d.ents, d.head = d.ents[:0], 0
	d.data, d.dHead = d.data[:0], 0
	d.size, d.unknowns = 0, 0
	d.max, d.maxKnown, d.complete = d.limit, false, false
}

// free drops the decoder's buffers (the connection ended).
func (d *decoder) free() {
	*d = decoder{limit: d.limit}
}

func (d *decoder) live() int { return len(d.ents) - d.head }

// entry returns the dynamic entry at index i (1 = newest), or nil when the
// index is past the list.
func (d *decoder) entry(i uint64) *tabEntry {
	n := uint64(d.live())
	if i == 0 || i > n {
		return nil
	}
	return &d.ents[len(d.ents)-int(i)]
}

// lookup resolves index i. It reports known false for an entry never seen,
// and an error for an index that cannot exist.
func (d *decoder) lookup(i uint64) (name, value []byte, known bool, err error) {
	if i == 0 {
		return nil, nil, false, errHPACK
	}
	if i <= staticLen {
		e := &staticTable[i-1]
		return e.name, e.value, true, nil
	}
	e := d.entry(i - staticLen)
	if e == nil {
		if d.complete {
			return nil, nil, false, errHPACK
		}
		return nil, nil, false, nil
	}
	if !e.known {
		return nil, nil, false, nil
	}
	b := d.data[e.off : e.off+e.nlen+e.vlen]
	return b[:e.nlen], b[e.nlen:], true, nil
}

// setMax applies a dynamic table size update.
func (d *decoder) setMax(v uint64) {
	if v > uint64(d.limit) {
		// The encoder may hold more than we will: entries past our cap
		// are unknown from now on.
		d.max, d.maxKnown, d.complete = d.limit, false, false
	} else {
		d.max, d.maxKnown = uint32(v), true
	}
	d.evict()
	d.checkComplete()
}

// checkComplete notices when the unknown tail must be gone: the list's
// entries (their sizes are lower bounds) leave no room for even an empty
// one under the encoder's size.
func (d *decoder) checkComplete() {
	if !d.complete && d.maxKnown && d.size+entryOverhead > d.max {
		d.complete = true
	}
}

func (d *decoder) evict() {
	for d.size > d.max && d.live() > 0 {
		e := &d.ents[d.head]
		d.size -= e.size()
		if !e.known {
			d.unknowns--
		} else {
			d.dHead = int(e.off + e.nlen + e.vlen)
		}
		d.head++
	}
	if d.live() == 0 {
		d.ents, d.head = d.ents[:0], 0
		d.data, d.dHead = d.data[:0], 0
	}
}

// insert adds an entry. name is nil for an entry whose name is unknown.
// Neither slice may alias d.data.
func (d *decoder) insert(name, value []byte, known bool) {
	e := tabEntry{vlen: uint32(len(value)), known: known}
	if known {
		e.nlen = uint32(len(name))
	}
	if e.size() > d.max {
		// An entry larger than the table empties it and is not added; when
		// the encoder's size is unknown, this one may still be there, so
		// the index past the list is unknown.
		d.ents, d.head = d.ents[:0], 0
		d.data, d.dHead = d.data[:0], 0
		d.size, d.unknowns = 0, 0
		if !d.maxKnown {
			d.complete = false
		}
		return
	}
	if known {
		n := len(name) + len(value)
		if len(d.data)+n > cap(d.data) && d.dHead > 0 {
			// Move the live bytes down rather than grow.
			live := copy(d.data, d.data[d.dHead:])
			for i := d.head; i < len(d.ents); i++ {
				if d.ents[i].known {
					d.ents[i].off -= uint32(d.dHead)
				}
			}
			d.data, d.dHead = d.data[:live], 0
		}
		e.off = uint32(len(d.data))
		d.data = append(d.data, name...)
		d.data = append(d.data, value...)
	} else {
		d.unknowns++
	}
	if d.head > 0 && len(d.ents) == cap(d.ents) {
		n := copy(d.ents, d.ents[d.head:])
		d.ents, d.head = d.ents[:n], 0
	}
	d.ents = append(d.ents, e)
	d.size += e.size()
	d.evict()
	d.checkComplete()
}

// readInt reads an integer with an n-bit prefix (RFC 7541 5.1).
func readInt(p []byte, n uint) (uint64, []byte, bool) {
	if len(p) == 0 {
		return 0, p, false
	}
	mask := uint64(1)<<n - 1
	v := uint64(p[0]) & mask
	p = p[1:]
	if v < mask {
		return v, p, true
	}
	for shift := uint(0); shift < 35; shift += 7 {
		if len(p) == 0 {
			return 0, p, false
		}
		b := p[0]
		p = p[1:]
		v += uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v, p, true
		}
	}
	return 0, p, false // longer than any length or index in a valid block
}

// rawString is an HPACK string as encoded.
type rawString struct {
	b    []byte
	huff bool
}

func readString(p []byte) (rawString, []byte, bool) {
	if len(p) == 0 {
		return rawString{}, p, false
	}
	huff := p[0]&0x80 != 0
	n, p, ok := readInt(p, 7)
	if !ok || n > uint64(len(p)) {
		return rawString{}, p, false
	}
	return rawString{p[:n], huff}, p[n:], true
}

// scratchWriter lets hpack.HuffmanDecode append to the decoder's scratch.
type scratchWriter struct{ d *decoder }

func (w scratchWriter) Write(p []byte) (int, error) {
	w.d.scratch = append(w.d.scratch, p...)
	return len(p), nil
}

// maxKeptScratch bounds the Huffman scratch a decoder keeps between
// blocks, so that one huge field does not stay pinned by an idle
// connection.
const maxKeptScratch = 4 << 10

// decode reads one whole header block, giving its fields to s (nil: keep
// the table only). On error the block is unreadable and the table is
// unreliable: the caller loses it.
func (d *decoder) decode(p []byte, s fieldSink) error {
	err := d.block(p, s)
	if cap(d.scratch) > maxKeptScratch {
		d.scratch = nil
	}
	return err
}

func (d *decoder) block(p []byte, s fieldSink) error {
	d.scratch = d.scratch[:0]
	first := true
	for len(p) > 0 {
		b := p[0]
		switch {
		case b&0x80 != 0: // indexed field
			i, rest, ok := readInt(p, 7)
			if !ok {
				return errHPACK
			}
			p = rest
			name, value, known, err := d.lookup(i)
			if err != nil {
				return err
			}
			if s != nil {
				if known {
					s.field(name, value)
				} else {
					s.unknown()
				}
			}
		case b&0xe0 == 0x20: // dynamic table size update
			// Only at the start of a block (RFC 7541 4.2); like x/net's
			// decoder, allowed later while the table is empty.
			if !first && !(d.complete && d.size == 0) {
				return errHPACK
			}
			v, rest, ok := readInt(p, 5)
			if !ok {
				return errHPACK
			}
			p = rest
			d.setMax(v)
			continue
		default:
			var rest []byte
			var err error
			if rest, err = d.literal(p, s); err != nil {
				return err
			}
			p = rest
		}
		first = false
	}
	return nil
}

// literal reads one literal field representation (RFC 7541 6.2).
func (d *decoder) literal(p []byte, s fieldSink) ([]byte, error) {
	b := p[0]
	indexing := b&0xc0 == 0x40
	prefix := uint(4)
	if indexing {
		prefix = 6
	}
	i, p, ok := readInt(p, prefix)
	if !ok {
		return nil, errHPACK
	}
	var name []byte
	known := true
	nameInTable := false
	var rawName rawString
	if i > 0 {
		var err error
		if name, _, known, err = d.lookup(i); err != nil {
			return nil, err
		}
		nameInTable = i > staticLen
	} else if rawName, p, ok = readString(p); !ok {
		return nil, errHPACK
	}
	rawValue, p, ok := readString(p)
	if !ok {
		return nil, errHPACK
	}
	if s == nil && !indexing {
		return p, nil
	}
	d.scratch = d.scratch[:0]
	if i == 0 {
		var err error
		if name, err = d.str(rawName); err != nil {
			return nil, err
		}
	} else if nameInTable && known && indexing {
		// Insertion may move the table's bytes: copy the name out first.
		d.scratch = append(d.scratch, name...)
		name = d.scratch
	}
	mark := len(d.scratch)
	value, err := d.str(rawValue)
	if err != nil {
		return nil, err
	}
	if i == 0 && rawName.huff {
		name = d.scratch[:len(name)] // scratch may have moved
	} else if nameInTable && known && indexing {
		name = d.scratch[:mark]
	}
	if s != nil {
		if known {
			s.field(name, value)
		} else {
			s.unknown()
		}
	}
	if indexing {
		d.insert(name, value, known)
	}
	return p, nil
}

// str decodes a string: a slice of the block for a plain one, appended to
// the scratch for a Huffman-coded one.
func (d *decoder) str(r rawString) ([]byte, error) {
	if !r.huff {
		return r.b, nil
	}
	start := len(d.scratch)
	if _, err := hpack.HuffmanDecode(scratchWriter{d}, r.b); err != nil {
		return nil, errHPACK
	}
	return d.scratch[start:], nil
}
