package pcapfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/shadowtee/shadowtee/reassembly"
)

// writeSegs writes segs, cycling over two interfaces, and returns the file.
func writeSegs(t testing.TB, segs []reassembly.Segment) []byte {
	return writeSegsOn(t, segs, "eth0", "veth-gw")
}

// writeSegsOn writes segs, cycling over the interfaces named.
func writeSegsOn(t testing.TB, segs []reassembly.Segment, ifaces ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ifaces {
		if _, err := w.AddInterface(name); err != nil {
			t.Fatal(err)
		}
	}
	for i := range segs {
		if err := w.WriteSegment(i%len(ifaces), &segs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.BytesWritten() != int64(buf.Len()) {
		t.Errorf("BytesWritten %d, file %d bytes", w.BytesWritten(), buf.Len())
	}
	return buf.Bytes()
}

func mkseg(flow reassembly.Flow, seq, ackn uint32, flags reassembly.Flags, payload []byte, t time.Time) reassembly.Segment {
	return reassembly.Segment{Flow: flow, Seq: seq, Ack: ackn, Flags: flags, Payload: payload, Time: t}
}

// roundTripSegs covers both IP versions, control segments without payload,
// odd and even payload lengths and the largest payload of one packet.
func roundTripSegs() []reassembly.Segment {
	f4 := flowOf("198.18.0.2:40000", "198.18.0.1:8080")
	f6 := flowOf("[2001:db8::2]:40001", "[2001:db8::1]:8080")
	f46 := flowOf("[::ffff:198.18.0.2]:40002", "[::ffff:198.18.0.1]:8080")
	max4 := bytes.Repeat([]byte("4"), maxIPv4Payload)
	max6 := bytes.Repeat([]byte("6"), maxIPv6Payload)
	return []reassembly.Segment{
		mkseg(f4, 1000, 0, syn, nil, t0),
		mkseg(f4, 1001, 5001, ack|psh, []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), t0.Add(1)),
		mkseg(f4, 1028, 5001, ack|psh, []byte("odd"), t0.Add(time.Second+3)),
		mkseg(f4, 1031, 5001, ack|fin, nil, t0.Add(2*time.Second)),
		mkseg(f6, 0xffffffff, 0, syn, nil, t0.Add(3)),
		mkseg(f6, 0, 77, ack|psh, []byte("POST /x HTTP/1.1\r\n\r\n"), t0.Add(4)),
		mkseg(f6, 20, 77, rst, nil, t0.Add(5)),
		mkseg(f46, 9, 10, ack, []byte("mapped"), t0.Add(6)),
		mkseg(f4, 2000, 1, ack, max4, t0.Add(7)),
		mkseg(f6, 3000, 1, ack, max6, t0.Add(8)),
	}
}

func TestWriterRoundTrip(t *testing.T) {
	segs := roundTripSegs()
	data := writeSegs(t, segs)
	back, st, err := readAll(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(segs) {
		t.Fatalf("read %d segments, wrote %d", len(back), len(segs))
	}
	for i, s := range segs {
		g := back[i]
		if g.flow != s.Flow || g.seq != s.Seq || g.ack != s.Ack || g.flags != s.Flags || g.data != string(s.Payload) || !g.time.Equal(s.Time) {
			t.Errorf("segment %d: read %v at %v, wrote %v at %v", i, g, g.time, s, s.Time)
		}
	}
	if st.LinkType != "EN10MB" || st.Skipped() != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestWriterSplits writes 64 KiB payloads, more than one IP packet holds,
// and checks that the pieces carry consecutive sequence numbers, that the
// control bits sit where TCP puts them, and that the bytes are all there.
func TestWriterSplits(t *testing.T) {
	payload := make([]byte, 64<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name  string
		flow  reassembly.Flow
		flags reassembly.Flags
		sizes []int
	}{
		{"ipv4", flowOf("198.18.0.2:1", "198.18.0.1:2"), ack | psh, []int{maxIPv4Payload, 64<<10 - maxIPv4Payload}},
		{"ipv6 with syn and fin", flowOf("[2001:db8::2]:1", "[2001:db8::1]:2"), syn | fin | psh, []int{maxIPv6Payload, 64<<10 - maxIPv6Payload}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const seq = 0xffffff00 // the pieces wrap around
			data := writeSegs(t, []reassembly.Segment{mkseg(tc.flow, seq, 42, tc.flags, payload, t0)})
			back, _, err := readAll(t, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != len(tc.sizes) {
				t.Fatalf("%d packets, want %d", len(back), len(tc.sizes))
			}
			var all []byte
			next := uint32(seq)
			if tc.flags.Has(syn) {
				next++
			}
			for i, g := range back {
				wantSeq, wantFlags := next, tc.flags
				if i == 0 {
					wantSeq = seq
				} else {
					wantFlags &^= syn
				}
				if i < len(back)-1 {
					wantFlags &^= fin | psh | rst
				}
				if g.seq != wantSeq || g.flags != wantFlags || len(g.data) != tc.sizes[i] || g.ack != 42 || g.flow != tc.flow || !g.time.Equal(t0) {
					t.Errorf("piece %d: seq %#x flags %#x len %d, want seq %#x flags %#x len %d", i, g.seq, g.flags, len(g.data), wantSeq, wantFlags, tc.sizes[i])
				}
				next += uint32(len(g.data))
				all = append(all, g.data...)
			}
			if !bytes.Equal(all, payload) {
				t.Error("payload differs")
			}
		})
	}
}

// TestWriterGopacket reads the file with gopacket's own pcapng reader and
// decoders, an implementation independent of this package, and verifies
// every checksum.
func TestWriterGopacket(t *testing.T) {
	segs := roundTripSegs()
	data := writeSegs(t, segs)
	r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.SectionInfo().Application; got != "shadowtee" {
		t.Errorf("shb_userappl %q", got)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("link type %v", r.LinkType())
	}
	for i := 0; ; i++ {
		pd, ci, err := r.ReadPacketData()
		if err == io.EOF {
			if i != len(segs) || r.NInterfaces() != 2 {
				t.Errorf("%d packets on %d interfaces, want %d on 2", i, r.NInterfaces(), len(segs))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if ifc, _ := r.Interface(0); ifc.Name != "eth0" || ifc.TimestampResolution != 9 {
				t.Errorf("interface 0: %+v", ifc)
			}
		}
		if !ci.Timestamp.Equal(segs[i].Time) || ci.InterfaceIndex != i%2 {
			t.Errorf("packet %d: time %v interface %d", i, ci.Timestamp, ci.InterfaceIndex)
		}
		p := gopacket.NewPacket(pd, layers.LinkTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("packet %d: %v", i, el.Error())
		}
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("packet %d: no TCP layer", i)
		}
		if err := tcp.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		if _, res := tcp.VerifyChecksum(); !res.Valid {
			t.Errorf("packet %d: TCP checksum %#x, want %#x", i, res.Actual, res.Correct)
		}
		if ip4, ok := p.NetworkLayer().(*layers.IPv4); ok {
			if _, res := ip4.VerifyChecksum(); !res.Valid {
				t.Errorf("packet %d: IPv4 checksum %#x, want %#x", i, res.Actual, res.Correct)
			}
		}
		s := segs[i]
		if uint16(tcp.SrcPort) != s.Flow.Src.Port() || tcp.Seq != s.Seq || tcp.Ack != s.Ack || tcp.SYN != s.Flags.Has(syn) ||
			tcp.FIN != s.Flags.Has(fin) || tcp.RST != s.Flags.Has(rst) || !bytes.Equal(tcp.Payload, s.Payload) || tcp.Window != 65535 {
			t.Errorf("packet %d: TCP seq %d ack %d differs from %v", i, tcp.Seq, tcp.Ack, s.Flow)
		}
	}
}

func tcpdumpPath(t *testing.T) string {
	for _, p := range []string{"/usr/sbin/tcpdump", "/usr/bin/tcpdump"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("tcpdump"); err == nil {
		return p
	}
	t.Skip("tcpdump not installed: cannot check that it reads what Writer writes")
	return ""
}

// TestWriterTcpdump checks that tcpdump reads the file, with several
// interfaces, one line per packet, and finds every checksum correct.
func TestWriterTcpdump(t *testing.T) {
	tcpdump := tcpdumpPath(t)
	segs := roundTripSegs()
	path := filepath.Join(t.TempDir(), "rec.pcapng")
	if err := os.WriteFile(path, writeSegs(t, segs), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-r", path, "-nn").Output()
	if err != nil {
		t.Fatalf("tcpdump: %v %s", err, stderr(err))
	}
	if lines := strings.Count(string(out), "\n"); lines != len(segs) {
		t.Errorf("tcpdump printed %d lines, want %d:\n%s", lines, len(segs), out)
	}
	if !strings.Contains(string(out), "198.18.0.2.40000 > 198.18.0.1.8080: Flags [S], seq 1000") ||
		!strings.Contains(string(out), "2001:db8::2.40001 > 2001:db8::1.8080: Flags [P.], seq 0:20, ack 77") {
		t.Errorf("tcpdump output:\n%s", out)
	}
	out, err = exec.Command(tcpdump, "-r", path, "-nn", "-vv").Output()
	if err != nil {
		t.Fatalf("tcpdump -vv: %v %s", err, stderr(err))
	}
	if n := strings.Count(string(out), "incorrect"); n != 0 {
		t.Errorf("tcpdump found %d bad checksums:\n%s", n, out)
	}
	if n := strings.Count(string(out), "(correct)"); n < len(segs) {
		t.Errorf("tcpdump verified %d checksums, want at least %d:\n%s", n, len(segs), out)
	}
}

// TestWriterTshark checks that Wireshark's reader takes a file with several
// interfaces and finds no problem in any packet.
func TestWriterTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed: cannot check that Wireshark reads what Writer writes")
	}
	segs := roundTripSegs()
	path := filepath.Join(t.TempDir(), "rec.pcapng")
	if err := os.WriteFile(path, writeSegs(t, segs), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-r", path, "-n", "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-T", "fields", "-e", "frame.interface_name", "-e", "tcp.checksum.status")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v %s", err, stderr(err))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(segs) {
		t.Fatalf("tshark printed %d lines, want %d:\n%s", len(lines), len(segs), out)
	}
	for i, l := range lines {
		f := strings.Split(l, "\t")
		wantIface := []string{"eth0", "veth-gw"}[i%2]
		if len(f) != 2 || f[0] != wantIface || f[1] != "1" { // 1: good
			t.Errorf("packet %d: %q, want interface %s and checksum status 1 (good)", i, l, wantIface)
		}
	}
}

func stderr(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	s := mkseg(flowOf("198.18.0.2:1", "198.18.0.1:2"), 1, 2, ack, nil, t0)
	if err := w.WriteSegment(0, &s); err == nil {
		t.Error("segment on an interface never added: no error")
	}
	id, _ := w.AddInterface("")
	mixed := mkseg(flowOf("198.18.0.2:1", "[2001:db8::1]:2"), 1, 2, ack, nil, t0)
	if err := w.WriteSegment(id, &mixed); err == nil {
		t.Error("mixed address families: no error")
	}
	var zero reassembly.Segment
	if err := w.WriteSegment(id, &zero); err == nil {
		t.Error("invalid addresses: no error")
	}

	// A failing file: the error comes back, and stays.
	errFull := errors.New("no space left on device")
	w, err = NewWriter(failingWriter{errFull})
	if err != nil {
		t.Fatal(err)
	}
	id, _ = w.AddInterface("eth0")
	big := mkseg(s.Flow, 1, 2, ack, make([]byte, 100<<10), t0)
	if err := w.WriteSegment(id, &big); !errors.Is(err, errFull) {
		t.Errorf("err %v", err)
	}
	if err := w.Flush(); !errors.Is(err, errFull) {
		t.Errorf("flush err %v", err)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }
