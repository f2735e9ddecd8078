package pcapfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/shadowtee/shadowtee/reassembly"
)

// The fuzz input is a mode byte and the bytes of a file. The mode puts a
// valid file header in front of them, so that most inputs reach the
// records:
//
//	mode % 5     0: nothing; 1: pcap, little endian, µs; 2: pcap, big endian,
//	             ns; 3: pcapng, little endian, one interface; 4: pcapng, big
//	             endian, two interfaces (the second one RAW, nanoseconds)
//	mode / 5 % 8 link type of the (first) interface, from supported
var fuzzLinks = supported

func fuzzPrefix(mode byte) []byte {
	link := fuzzLinks[int(mode/5)%len(fuzzLinks)]
	switch mode % 5 {
	case 1:
		return newPcap(uint32(link), false, false).bytes()
	case 2:
		return newPcap(uint32(link), true, true).bytes()
	case 3:
		return newPcapng(false).iface(link, 0, 0, 0).bytes()
	case 4:
		return newPcapng(true).iface(link, 6, 0, 0).iface(linkRaw, 9, 0, 0).bytes()
	}
	return nil
}

// fuzzMode returns the mode that puts the given prefix kind and link first.
func fuzzMode(kind int, link uint16) byte {
	for i, l := range fuzzLinks {
		if l == link {
			return byte(i*5 + kind)
		}
	}
	panic("link type not supported")
}

// addBody adds the records of a built file, without its header, after the
// prefix that gives the header back.
func addBody(f *testing.F, kind int, link uint16, file []byte) {
	mode := fuzzMode(kind, link)
	f.Add(mode, file[len(fuzzPrefix(mode)):])
}

func FuzzReadCapture(f *testing.F) {
	// Whole files, after no prefix.
	f.Add(byte(0), goodPcap())
	f.Add(byte(0), goodPcapng().bytes())
	f.Add(byte(0), garbage(10))
	f.Add(byte(0), []byte{})
	for _, name := range []string{"lo-ipv4-snaplen.pcap"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(byte(0), b)
		}
	}
	// Records after a prefix, for each kind of prefix and link type.
	for _, link := range fuzzLinks {
		frame := func(p pkt) []byte {
			ip := p.ip()
			switch link {
			case linkEthernet:
				return ether(ip, etherVLAN)
			case linkSLL:
				return sll(ip)
			case linkSLL2:
				return sll2(ip)
			case linkNull, linkLoop:
				if ip[0]>>4 == 6 {
					return null(ip, 24, link == linkLoop)
				}
				return null(ip, 2, link == linkLoop)
			case linkIPv6:
				p.src, p.dst = p6.src, p6.dst
				return p.ip()
			}
			return ip
		}
		addBody(f, 1, link, newPcap(uint32(link), false, false).add(t0, frame(p4), 0).add(t0, frame(p6), 0).bytes())
		addBody(f, 2, link, newPcap(uint32(link), true, true).add(t0, frame(tiny), 0).bytes())
		addBody(f, 3, link, newPcapng(false).iface(link, 0, 0, 0).epb(0, 1, frame(p4), 0).spb(frame(p6)).bytes())
		addBody(f, 4, link, newPcapng(true).iface(link, 6, 0, 0).iface(linkRaw, 9, 0, 0).
			epb(1, 1, p6.ip(), 0).pb(0, 2, frame(p4)).block(blockNRB, make([]byte, 8)).bytes())
	}

	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		input := append(fuzzPrefix(mode), data...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fuzzRead(t, input)
		runtime.ReadMemStats(&after)
		// The read buffer (up to 1 MiB) and small change: never what a
		// length in the input says.
		if n := after.TotalAlloc - before.TotalAlloc; n > 3<<20 {
			t.Fatalf("%d bytes allocated for a %d-byte input", n, len(input))
		}
	})
}

func fuzzRead(t *testing.T, input []byte) {
	r, err := NewReader(bytes.NewReader(input), "fuzz.pcap", int64(len(input)))
	if err != nil {
		var e *Error
		if errors.As(err, &e) || errors.Is(err, io.EOF) {
			t.Fatalf("NewReader error %v is an *Error or io.EOF", err)
		}
		return
	}
	var seg reassembly.Segment
	last := r.Offset()
	var good int64 // offset after the last segment: damage is never before it
	if last > int64(len(input)) {
		t.Fatalf("offset %d after the header of a %d-byte input", last, len(input))
	}
	for {
		err := r.Next(&seg)
		off := r.Offset()
		if off < last || off > int64(len(input)) {
			t.Fatalf("offset %d after %d, input %d bytes", off, last, len(input))
		}
		if err != nil {
			if err != io.EOF {
				var e *Error
				if !errors.As(err, &e) || errors.Is(err, io.EOF) || e.Offset < good || e.Offset > int64(len(input)) {
					t.Fatalf("error %v (%T): want an *Error at or after offset %d", err, err, good)
				}
			}
			if err2 := r.Next(&seg); err2 != err {
				t.Fatalf("Next after %v: %v", err, err2)
			}
			break
		}
		if off == last {
			t.Fatalf("a segment without consuming input, at offset %d", off)
		}
		last, good = off, off
		if len(seg.Payload) > maxPacket || seg.Flags&^0x1f != 0 || !seg.Flow.Src.IsValid() || !seg.Flow.Dst.IsValid() {
			t.Fatalf("segment %+v", seg)
		}
		if !bytes.Contains(input, seg.Payload) {
			t.Fatal("payload is not bytes of the input")
		}
	}
	st := r.Stats()
	if st.Packets != st.Segments+st.Skipped() || st.SnaplenTruncated > st.Segments {
		t.Fatalf("stats %+v", st)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
