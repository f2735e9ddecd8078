package pcapfile

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/shadowtee/shadowtee/reassembly"
)

// goodPcap returns a pcap file of two good records and its length.
func goodPcap() []byte {
	return newPcap(linkEthernet, false, false).
		add(t0, ether(p4.ip()), 0).
		add(t0, ether(p6.ip()), 0).bytes()
}

// goodPcapng returns a pcapng file of two good packets.
func goodPcapng() *ngBuilder {
	return newPcapng(false).
		iface(linkEthernet, 9, 0, 0).
		epb(0, 1, ether(p4.ip()), 0).
		epb(0, 2, ether(p6.ip()), 0)
}

func garbage(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// le32 returns v as 4 little-endian bytes.
func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func TestDamage(t *testing.T) {
	pc := goodPcap()
	rec := ether(p4.ip())
	hdr := newPcap(linkEthernet, false, false).add(t0, rec, 0).bytes()[24:40]
	ng := goodPcapng().bytes()
	ngHead := newPcapng(false).iface(linkEthernet, 9, 0, 0).bytes()
	epb := newPcapng(false).epb(0, 3, rec, 0).bytes()[28:] // one enhanced packet block
	withLen := func(b []byte, n uint32) []byte { b = bytes.Clone(b); copy(b[4:], le32(n)); return b }

	for _, tc := range []struct {
		name   string
		data   []byte
		good   int   // segments returned before the error
		offset int64 // of the damage
		kind   error
		msg    string
	}{
		{"pcap: cut in a record header", cat(pc, hdr[:7]), 2, int64(len(pc)), ErrTruncated,
			"truncated packet record header (7 of 16 bytes)"},
		{"pcap: cut in packet data", cat(pc, hdr, rec[:20]), 2, int64(len(pc)), ErrTruncated,
			"truncated packet record (36 of 88 bytes)"},
		{"pcap: absurd captured length", cat(pc, withCaplen(hdr, 0x7fffffff), rec), 2, int64(len(pc)), ErrCorrupt,
			"corrupt packet record: captured length 2147483647 exceeds the 262144 a capture can hold"},
		{"pcap: garbage after records", cat(pc, garbage(100)), 2, int64(len(pc)), ErrCorrupt, "corrupt packet record"},
		{"pcapng: cut in a block header", cat(ng, epb[:5]), 2, int64(len(ng)), ErrTruncated,
			"truncated block header (5 of 12 bytes)"},
		{"pcapng: cut in a block", cat(ng, epb[:50]), 2, int64(len(ng)), ErrTruncated,
			"truncated enhanced packet block (50 of 124 bytes)"},
		{"pcapng: length not a multiple of 4", cat(ng, withLen(epb, 126)), 2, int64(len(ng)), ErrCorrupt,
			"corrupt enhanced packet block: length 126 is not a multiple of 4 of at least 12"},
		{"pcapng: length below 12", cat(ng, withLen(epb, 8)), 2, int64(len(ng)), ErrCorrupt, "length 8 is not"},
		{"pcapng: absurd length", cat(ng, withLen(epb, 0xfffffff0)), 2, int64(len(ng)), ErrCorrupt,
			"corrupt enhanced packet block: length 4294967280 exceeds the 1048576 this reader accepts"},
		{"pcapng: trailer differs", cat(ng, withLen(epb, 120), epb[120:]), 2, int64(len(ng)), ErrCorrupt,
			"corrupt enhanced packet block: trailing length 0 differs from leading length 120"},
		{"pcapng: captured length past the block", cat(ng, func() []byte { b := bytes.Clone(epb); copy(b[20:], le32(200)); return b }()), 2, int64(len(ng)), ErrCorrupt,
			"corrupt enhanced packet block: captured length 200 does not fit in its 124 bytes"},
		{"pcapng: unknown interface", cat(ng, func() []byte { b := bytes.Clone(epb); copy(b[8:], le32(1)); return b }()), 2, int64(len(ng)), ErrCorrupt,
			"corrupt enhanced packet block: interface 1, but the section describes 1"},
		{"pcapng: packet before any interface", cat(newPcapng(false).bytes(), epb), 0, 28, ErrCorrupt, "interface 0, but the section describes 0"},
		{"pcapng: option past the block", cat(ng, newPcapng(false).block(blockIDB, []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 99, 0}).bytes()[28:]), 2, int64(len(ng)) + 16, ErrCorrupt,
			"corrupt interface description block: option 2 of 99 bytes runs past the block"},
		{"pcapng: timestamp resolution", cat(ng, newPcapng(false).block(blockIDB, []byte{1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 0x7f, 0, 0, 0}).bytes()[28:]), 2, int64(len(ng)) + 16, ErrCorrupt,
			"timestamp resolution 0x7f"},
		{"pcapng: bad byte order in a later section", cat(ng, func() []byte { b := newPcapng(false).bytes(); b[9] = 0; return b }()), 2, int64(len(ng)), ErrCorrupt,
			"unknown byte-order magic"},
		{"pcapng: garbage after blocks", cat(ng, garbage(100)), 2, int64(len(ng)), ErrCorrupt, "corrupt block of type"},
		{"pcapng: large skipped block cut", cat(ngHead, withLen(newPcapng(false).block(blockNRB, make([]byte, 100)).bytes()[28:], 4<<20)), 0, int64(len(ngHead)), ErrTruncated,
			"truncated block of type 0x4 (112 of 4194304 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			segs, _, err := readAll(t, tc.data)
			if len(segs) != tc.good {
				t.Errorf("%d segments before the error, want %d", len(segs), tc.good)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %v (%T), want *Error", err, err)
			}
			if e.File != "test.pcap" || e.Offset != tc.offset || !errors.Is(err, tc.kind) || errors.Is(err, io.EOF) {
				t.Errorf("err %#v, want offset %d, kind %v", e, tc.offset, tc.kind)
			}
			prefix := "test.pcap: offset " + strconv.FormatInt(tc.offset, 10) + ": "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want %q + %q", msg, prefix, tc.msg)
			}
			// The error is sticky.
			r, _ := NewReader(bytes.NewReader(tc.data), "test.pcap", -1)
			var seg reassembly.Segment
			for r.Next(&seg) == nil {
			}
			if err2 := r.Next(&seg); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second error %v, want %v", err2, err)
			}
		})
	}
}

func withCaplen(hdr []byte, n uint32) []byte {
	hdr = bytes.Clone(hdr)
	copy(hdr[8:], le32(n))
	return hdr
}

func TestLargeSkippedBlock(t *testing.T) {
	// A 2 MiB name resolution block is larger than any block held in memory:
	// it is skipped as it streams by.
	nrb := newPcapng(false).block(blockNRB, make([]byte, 2<<20)).bytes()[28:]
	data := cat(goodPcapng().bytes(), nrb, newPcapng(false).epb(0, 3, ether(p4.ip()), 0).bytes()[28:])
	segs, _, err := readAll(t, data)
	if err != nil || len(segs) != 3 {
		t.Fatalf("%d segments, err %v", len(segs), err)
	}
}

func TestTooManyInterfaces(t *testing.T) {
	f := newPcapng(false)
	for range maxInterfaces + 1 {
		f.iface(linkRaw, 0, 0, 0)
	}
	_, _, err := readAll(t, f.bytes())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "more than 4096 interfaces") {
		t.Fatalf("err %v", err)
	}
}

func TestReadError(t *testing.T) {
	errDisk := errors.New("input/output error")
	pc := goodPcap()
	r, err := NewReader(io.MultiReader(bytes.NewReader(pc[:len(pc)-10]), iotest.ErrReader(errDisk)), "disk.pcap", -1)
	if err != nil {
		t.Fatal(err)
	}
	var seg reassembly.Segment
	if err := r.Next(&seg); err != nil {
		t.Fatal(err)
	}
	err = r.Next(&seg)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, errDisk) || e.Offset != int64(24+16+len(ether(p4.ip()))) {
		t.Fatalf("err %v", err)
	}
}

// TestHugeLengthsAllocateLittle checks that lengths from the file never size
// an allocation: each input claims gigabytes and must cost well under 2 MiB.
func TestHugeLengthsAllocateLittle(t *testing.T) {
	hdr := newPcap(linkEthernet, false, false).add(t0, nil, 0).bytes()[24:]
	ng := goodPcapng().bytes()
	for name, data := range map[string][]byte{
		"pcap caplen":    cat(goodPcap(), withCaplen(hdr, 0xffffffff)),
		"pcapng length":  cat(ng, []byte{6, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff}, make([]byte, 64)),
		"pcapng skipped": cat(ng, []byte{4, 0, 0, 0, 0xfc, 0xff, 0xff, 0x3f}, make([]byte, 64)),
		"pcapng caplen":  cat(ng, newPcapng(false).block(blockEPB, cat(make([]byte, 12), le32(0xffffff00), make([]byte, 8))).bytes()[28:]),
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _, err := readAll(t, data)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}
}
