package bpf

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shadowtee/shadowtee/internal/sandbox"
	"github.com/shadowtee/shadowtee/reassembly"
)

// collector is a Sink that keeps copies of every segment, with the time it
// received each.
type collector struct {
	mu        sync.Mutex
	segs      []reassembly.Segment
	ifindexes []int
	received  []time.Time
	flushes   int
	sleeps    int // Sleep calls
	flushedAt int // flushes at the last Sleep
}

func (c *collector) Segment(seg *reassembly.Segment, ifindex int) {
	s := *seg
	s.Payload = bytes.Clone(seg.Payload)
	now := time.Now()
	c.mu.Lock()
	c.segs = append(c.segs, s)
	c.ifindexes = append(c.ifindexes, ifindex)
	c.received = append(c.received, now)
	c.mu.Unlock()
}

func (c *collector) Flush() {
	c.mu.Lock()
	c.flushes++
	c.mu.Unlock()
}

func (c *collector) Sleep() {
	c.mu.Lock()
	c.sleeps++
	c.flushedAt = c.flushes
	c.mu.Unlock()
}

// sleepState returns the Sleep calls, and whether a Flush came after the
// last of them.
func (c *collector) sleepState() (sleeps int, flushedSince bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sleeps, c.flushes > c.flushedAt
}

// len returns the number of segments received.
func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.segs)
}

// stream reassembles the bytes of one flow from the records read: under
// load TCP retransmits, and a copied segment may come twice.
func (c *collector) stream(src net.Addr) (data []byte, largest int) {
	return c.flowStream(src.String(), "")
}

// flowStream reassembles the bytes that src sent (to dst, unless dst is
// empty).
func (c *collector) flowStream(src, dst string) (data []byte, largest int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &bytesStream{}
	asm := reassembly.New(reassembly.Config{
		NewStream: func(*reassembly.Segment, bool) reassembly.Stream { return out },
	})
	for i := range c.segs {
		if s := &c.segs[i]; s.Flow.Src.String() == src && (dst == "" || s.Flow.Dst.String() == dst) {
			asm.Add(s)
			largest = max(largest, len(s.Payload))
		}
	}
	asm.Close()
	return out.b, largest
}

// bytesStream keeps what a reassembly stream delivers.
type bytesStream struct{ b []byte }

func (s *bytesStream) Data(b []byte, _ time.Time) { s.b = append(s.b, b...) }
func (s *bytesStream) Gap()                       {}
func (s *bytesStream) End()                       {}

type topology struct {
	sb             *sandbox.Sandbox
	client, server *sandbox.Netns
}

// newTopology makes a client and a server namespace joined by veth c0-s0.
func newTopology(t *testing.T) *topology {
	t.Helper()
	sb, err := sandbox.New("stee-bpf")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { sb.Close() })
	c, err := sb.Netns("c")
	if err != nil {
		t.Fatal(err)
	}
	s, err := sb.Netns("s")
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Veth(c, "c0", []string{"198.18.0.1/24", "fd00::1/64"}, s, "s0", []string{"198.18.0.2/24", "fd00::2/64"}); err != nil {
		t.Fatal(err)
	}
	return &topology{sb: sb, client: c, server: s}
}

// attach hooks tee to s0 in the server namespace and starts a reader.
func (tp *topology) attach(t *testing.T, tee *Tee, mode AttachMode) (*collector, *Attachment) {
	t.Helper()
	a := tp.hook(t, tee, mode)
	_, col := startReader(t, tee, time.Millisecond)
	return col, a
}

// hook attaches tee to s0 in the server namespace, detached at cleanup.
func (tp *topology) hook(t *testing.T, tee *Tee, mode AttachMode) *Attachment {
	t.Helper()
	var a *Attachment
	err := tp.server.Do(func() (err error) {
		a, err = tee.Attach("s0", mode)
		return err
	})
	skipUnlessAttachable(t, mode, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if a.Mode != mode && mode != AttachAuto {
		t.Fatalf("attached with %s, asked for %s", a.Mode, mode)
	}
	return a
}

// startReader runs a reader of tee into a collector until cleanup.
func startReader(t *testing.T, tee *Tee, poll time.Duration) (*Reader, *collector) {
	t.Helper()
	rd, err := tee.NewReader(poll)
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	done := make(chan error, 1)
	go func() { done <- rd.Run(col) }()
	t.Cleanup(func() {
		rd.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return rd, col
}

// send connects to addr from the client namespace, writes data in one call
// and waits until the server has read all of it.
func (tp *topology) send(t *testing.T, addr string, data []byte) net.Addr {
	t.Helper()
	ln, err := tp.server.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- int(n)
	}()
	conn, err := tp.client.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr()
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-got; n != len(data) {
		t.Fatalf("server read %d bytes, want %d", n, len(data))
	}
	return local
}

// waitUntil polls cond every millisecond until it holds, for at most limit;
// it reports whether it came to hold.
func waitUntil(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for i := 0; i < 100_000; i++ {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// waitStream waits until the collector holds want for the flow from src.
func waitStream(t *testing.T, col *collector, src net.Addr, want []byte) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, largest := col.stream(src)
		if bytes.Equal(got, want) {
			return largest
		}
		if time.Now().After(deadline) {
			t.Fatalf("copied %d bytes of the %d sent", len(got), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Over veth, TCP sends up to 64 KiB as one GSO packet; the program copies it
// whole, in one record, in both attach modes.
func TestLiveGSOPacketCopiedWhole(t *testing.T) {
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			tp := newTopology(t)
			tee := loadForTest(t, Options{Ports: []uint16{8080}})
			col, a := tp.attach(t, tee, mode)
			data := payloadOf(60 << 10)
			before := time.Now()
			src := tp.send(t, "198.18.0.2:8080", data)
			if largest := waitStream(t, col, src, data); largest <= 16<<10 {
				t.Errorf("largest record %d bytes: expected GSO packets of more than 16 KiB", largest)
			}
			// Every record carries the time it was copied and the
			// interface it arrived on.
			col.mu.Lock()
			for i, s := range col.segs {
				if d := s.Time.Sub(before); d < -time.Second || d > 10*time.Second {
					t.Errorf("record %d stamped %v, %v from when it was sent", i, s.Time, d)
				}
				if col.ifindexes[i] != a.Index {
					t.Errorf("record %d from ifindex %d, want %d (%s)", i, col.ifindexes[i], a.Index, a.Iface)
				}
			}
			col.mu.Unlock()
			if c := counters(t, tee); c.DropRingFull+c.DropLoad+c.Truncated != 0 {
				t.Errorf("losses counted: %+v", c)
			}
		})
	}
}

// With BIG TCP, IPv6 packets grow past 64 KiB (payload_len 0); they are
// cut into several records without losing a byte.
func TestLiveBigTCPPacket(t *testing.T) {
	tp := newTopology(t)
	for _, side := range []struct {
		ns    *sandbox.Netns
		iface string
	}{{tp.client, "c0"}, {tp.server, "s0"}} {
		l, err := side.ns.Netlink().LinkByName(side.iface)
		if err != nil {
			t.Fatal(err)
		}
		if err := side.ns.Netlink().LinkSetGSOMaxSize(l, 185000); err != nil {
			t.Skipf("no BIG TCP: %v", err)
		}
		if err := side.ns.Netlink().LinkSetGROMaxSize(l, 185000); err != nil {
			t.Skipf("no BIG TCP: %v", err)
		}
	}
	tee := loadForTest(t, Options{Ports: []uint16{8080}})
	col, _ := tp.attach(t, tee, AttachAuto)
	data := payloadOf(1 << 20)
	src := tp.send(t, "[fd00::2]:8080", data)
	waitStream(t, col, src, data)
	c := counters(t, tee)
	if c.DropRingFull+c.DropLoad+c.Truncated != 0 {
		t.Errorf("losses counted: %+v", c)
	}
	// More records than copied packets: some packet was cut in several.
	col.mu.Lock()
	records := len(col.segs)
	col.mu.Unlock()
	if uint64(records) <= c.Copied {
		t.Errorf("%d records for %d packets: no packet was larger than one record", records, c.Copied)
	}
}

// A device without an Ethernet header gets the L3 variant of the program.
func TestLiveL3Device(t *testing.T) {
	tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 20})
	for _, mode := range []AttachMode{AttachTCX, AttachTC} {
		t.Run(string(mode), func(t *testing.T) {
			tun := newTun(t)
			a, err := tee.Attach(tun.Name, mode)
			skipUnlessAttachable(t, mode, err)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			rd, err := tee.NewReader(time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			col := &collector{}
			done := make(chan error, 1)
			go func() { done <- rd.Run(col) }()
			pkts := []packet{
				{src: client4, dst: server4, seq: 1, ack: 2, flags: 0x18, payload: get},
				{src: client6, dst: server6, seq: 3, ack: 4, flags: 0x18, payload: get},
			}
			for _, p := range pkts {
				if _, err := tun.file.Write(p.ipDatagram()); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				col.mu.Lock()
				n := len(col.segs)
				col.mu.Unlock()
				if n >= len(pkts) || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			rd.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if len(col.segs) != len(pkts) {
				t.Fatalf("got %d records, want %d", len(col.segs), len(pkts))
			}
			for i, p := range pkts {
				checkSegment(t, col.segs[i], p)
			}
		})
	}
}

// A tc filter left by a killed agent is replaced, never duplicated, on
// ingress and on egress, and other filters on the interface are left alone.
func TestStaleFilterReplaced(t *testing.T) {
	tp := newTopology(t)
	nl := tp.server.Netlink()
	link, err := nl.LinkByName("s0")
	if err != nil {
		t.Fatal(err)
	}
	old := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 16, Answers: true})
	var stale *Attachment
	if err := tp.server.Do(func() (err error) { stale, err = old.Attach("s0", AttachTC); return err }); err != nil {
		t.Fatal(err)
	}
	_ = stale // as if the agent had been killed: never closed
	hooks := []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS}
	live := startNamedProcess(t, "shadowtee")
	for _, parent := range hooks {
		// Another tool's filter on the same hook must survive.
		other := ourFilter(link.Attrs().Index, old.program(true, false).FD(), parent)
		other.Name, other.Handle, other.Priority = "othertool", 7, 5
		if err := nl.FilterAdd(other); err != nil {
			t.Fatal(err)
		}
		// A filter of a live agent (a process named shadowtee) must
		// survive, as must one whose name only looks like ours; one of a
		// dead agent goes.
		for _, name := range []string{filterName(live), filterName(1 << 22), "shadowteefoo"} {
			f := ourFilter(link.Attrs().Index, old.program(true, false).FD(), parent)
			f.Name, f.Handle = name, uint32(len(name))<<8|9
			if err := nl.FilterAdd(f); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, c := range []struct {
		mode    AttachMode
		answers bool
	}{{AttachTC, true}, {AttachTC, false}, {AttachTCX, true}} {
		tee := loadForTest(t, Options{Ports: []uint16{8080}, RingBytes: 1 << 16, Answers: c.answers})
		var a *Attachment
		err := tp.server.Do(func() (err error) { a, err = tee.Attach("s0", c.mode); return err })
		skipUnlessAttachable(t, c.mode, err)
		if err != nil {
			t.Fatal(err)
		}
		self := filterName(os.Getpid())
		survivors := func(names map[string]int) bool {
			return names["othertool"] == 1 && names[filterName(live)] == 1 && names["shadowteefoo"] == 1 &&
				names[filterName(1<<22)] == 0
		}
		for _, parent := range hooks {
			wantOurs := 0
			if c.mode == AttachTC && (parent == netlink.HANDLE_MIN_INGRESS || c.answers) {
				wantOurs = 1
			}
			if names := filterNames(t, nl, link, parent); names[self] != wantOurs || !survivors(names) {
				t.Errorf("%s, answers %v, hook %#x: filters after attach: %v", c.mode, c.answers, parent, names)
			}
		}
		if err := tp.server.Do(a.Close); err != nil {
			t.Fatal(err)
		}
		for _, parent := range hooks {
			if names := filterNames(t, nl, link, parent); names[self] != 0 || !survivors(names) {
				t.Errorf("%s, answers %v, hook %#x: filters after detach: %v", c.mode, c.answers, parent, names)
			}
		}
	}
	if _, err := nl.QdiscList(link); err != nil {
		t.Fatal(err)
	}
}

// startNamedProcess starts a process whose name (comm) is name, ended at
// cleanup, and returns its PID.
func startNamedProcess(t *testing.T, name string) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

func filterNames(t *testing.T, nl *netlink.Handle, link netlink.Link, parent uint32) map[string]int {
	t.Helper()
	fs, err := nl.FilterList(link, parent)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok {
			names[bf.Name]++
		}
	}
	return names
}
