package pcapfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtee/shadowtee/reassembly"
)

// loopReader returns head once, then body over and over: a capture file
// without end, so that a benchmark op is one packet and the Reader is never
// rebuilt.
type loopReader struct {
	head, body []byte
	pos        int
}

func (l *loopReader) Read(p []byte) (int, error) {
	if len(l.head) > 0 {
		n := copy(p, l.head)
		l.head = l.head[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.body[l.pos:])
		n += c
		l.pos = (l.pos + c) % len(l.body)
	}
	return n, nil
}

// benchCapture returns the header and the records of a capture of many
// small HTTP segments on 256 connections: requests of ~200 bytes and the
// pure ACKs of the other side, as a busy API gateway sees them.
func benchCapture(ng bool) (head, body []byte, packets int) {
	req := "GET /api/v1/items?id=12345 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench\r\nAccept: application/json\r\nX-Request-Id: 0123456789abcdef\r\n\r\n"
	req += strings.Repeat("x", 200-len(req))
	var frames [][]byte
	for i := range 2048 {
		c := i % 256
		p := pkt{
			src: fmt.Sprintf("198.18.%d.%d:%d", c/64, c%64+2, 40000+c), dst: "198.18.0.1:8080",
			seq: uint32(i * 200), ack: 1, flags: ack | psh, data: req,
			tcpOptions: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, // timestamps, as Linux sends
		}
		frames = append(frames, ether(p.ip()))
		p.src, p.dst, p.data, p.flags = p.dst, p.src, "", ack
		frames = append(frames, ether(p.ip()))
	}
	if ng {
		f := newPcapng(false).iface(linkEthernet, 9, 0, 0)
		head = f.bytes()
		for i, fr := range frames {
			f.epb(0, uint64(t0.UnixNano())+uint64(i)*1000, fr, 0)
		}
		return head, f.bytes()[len(head):], len(frames)
	}
	f := newPcap(linkEthernet, false, false)
	head = f.bytes()
	for i, fr := range frames {
		f.add(t0.Add(time.Duration(i)*time.Microsecond), fr, 0)
	}
	return head, f.bytes()[len(head):], len(frames)
}

func benchNext(b *testing.B, ng bool) {
	head, body, packets := benchCapture(ng)
	r, err := NewReader(&loopReader{head: head, body: body}, "bench", -1)
	if err != nil {
		b.Fatal(err)
	}
	var seg reassembly.Segment
	var payload int
	b.SetBytes(int64(len(body) / packets))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := r.Next(&seg); err != nil {
			b.Fatal(err)
		}
		payload += len(seg.Payload)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	if payload == 0 && b.N > 2 {
		b.Fatal("no payload")
	}
}

// BenchmarkNext reads one packet per op. MB/s counts capture file bytes.
func BenchmarkNext(b *testing.B) {
	b.Run("pcap", func(b *testing.B) { benchNext(b, false) })
	b.Run("pcapng", func(b *testing.B) { benchNext(b, true) })
}

// BenchmarkPcapgo reads the same captures with gopacket's pcapgo readers
// (ZeroCopyReadPacketData) and this package's decoder, for comparison with
// BenchmarkNext: the reason this package reads the formats itself.
func BenchmarkPcapgo(b *testing.B) {
	for _, ng := range []bool{false, true} {
		name := map[bool]string{false: "pcap", true: "pcapng"}[ng]
		b.Run(name, func(b *testing.B) {
			head, body, packets := benchCapture(ng)
			src := &loopReader{head: head, body: body}
			var read func() ([]byte, error)
			if ng {
				r, err := pcapgo.NewNgReader(src, pcapgo.NgReaderOptions{})
				if err != nil {
					b.Fatal(err)
				}
				read = func() ([]byte, error) { d, _, err := r.ZeroCopyReadPacketData(); return d, err }
			} else {
				r, err := pcapgo.NewReader(src)
				if err != nil {
					b.Fatal(err)
				}
				read = func() ([]byte, error) { d, _, err := r.ZeroCopyReadPacketData(); return d, err }
			}
			var seg reassembly.Segment
			b.SetBytes(int64(len(body) / packets))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				d, err := read()
				if err != nil {
					b.Fatal(err)
				}
				decode(linkEthernet, d, &seg)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
		})
	}
}

// BenchmarkWriteSegment writes one segment per op. MB/s counts payload.
func BenchmarkWriteSegment(b *testing.B) {
	for _, size := range []int{200, 1448, 64 << 10} {
		for _, v6 := range []bool{false, true} {
			flow := flowOf("198.18.0.2:40000", "198.18.0.1:8080")
			name := fmt.Sprintf("ipv4/%d", size)
			if v6 {
				flow = flowOf("[2001:db8::2]:40000", "[2001:db8::1]:8080")
				name = fmt.Sprintf("ipv6/%d", size)
			}
			b.Run(name, func(b *testing.B) {
				w, err := NewWriter(io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				id, _ := w.AddInterface("eth0")
				seg := mkseg(flow, 1, 1, ack|psh, bytes.Repeat([]byte("y"), size), t0)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					seg.Seq += uint32(size)
					if err := w.WriteSegment(id, &seg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSides decides the side of one segment per op, finding the
// clients itself among 256 connections.
func BenchmarkSides(b *testing.B) {
	head, body, packets := benchCapture(false)
	r, _ := NewReader(bytes.NewReader(append(head, body...)), "bench", -1)
	segs := make([]reassembly.Segment, 0, packets)
	var seg reassembly.Segment
	for r.Next(&seg) == nil {
		s := seg
		s.Payload = bytes.Clone(seg.Payload)
		segs = append(segs, s)
	}
	s := NewSides(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.Direction(&segs[i%len(segs)])
	}
}

// TestNextDoesNotAllocate checks the steady state of Next: no allocation per
// packet, for either format.
func TestNextDoesNotAllocate(t *testing.T) {
	for _, ng := range []bool{false, true} {
		head, body, _ := benchCapture(ng)
		r, err := NewReader(&loopReader{head: head, body: body}, "loop", -1)
		if err != nil {
			t.Fatal(err)
		}
		var seg reassembly.Segment
		if n := testing.AllocsPerRun(10000, func() {
			if err := r.Next(&seg); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("pcapng %v: %v allocations per packet", ng, n)
		}
	}
}

// TestStreamingMemory reads 256 MiB of capture (1 GiB without -short) and
// checks that the memory allocated stays that of the read buffer.
func TestStreamingMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 256 << 20
	}
	head, body, _ := benchCapture(true)
	in := io.LimitReader(&loopReader{head: head, body: body}, size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReader(in, "big.pcapng", size)
	if err != nil {
		t.Fatal(err)
	}
	var seg reassembly.Segment
	n := 0
	for {
		err := r.Next(&seg)
		if err != nil {
			// The limit cuts the last block: damage at the end, after
			// every whole packet.
			if !errors.Is(err, ErrTruncated) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	runtime.ReadMemStats(&after)
	t.Logf("%d packets, %d bytes, %d bytes allocated", n, r.Offset(), after.TotalAlloc-before.TotalAlloc)
	if r.Offset() < size-maxBlock || r.Offset() > size {
		t.Errorf("offset %d of %d", r.Offset(), size)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("%d bytes allocated to read %d bytes (%d packets)", alloc, size, n)
	}
}

// TestWriteSegmentDoesNotAllocate checks that recording costs no allocation
// per segment.
func TestWriteSegmentDoesNotAllocate(t *testing.T) {
	w, _ := NewWriter(io.Discard)
	id, _ := w.AddInterface("eth0")
	seg := mkseg(flowOf("198.18.0.2:40000", "198.18.0.1:8080"), 1, 1, ack|psh, make([]byte, 64<<10), t0)
	if n := testing.AllocsPerRun(1000, func() {
		if err := w.WriteSegment(id, &seg); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per segment", n)
	}
}
