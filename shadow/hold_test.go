package shadow

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// heldPair is quietPair with answers held by h.
func heldPair(t *testing.T, h *AnswerHold) (*quietConn, *net.TCPConn) {
	t.Helper()
	qc, srv := quietPair(t)
	qc.hold = h
	return qc, srv
}

// lowat reads c's SO_RCVLOWAT.
func lowat(t *testing.T, c *quietConn) int {
	t.Helper()
	var v int
	var gerr error
	if err := c.rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// waitLowat waits until c's mark is want: its reader has parked.
func waitLowat(t *testing.T, c *quietConn, want int) {
	t.Helper()
	for i := 0; lowat(t, c) != want; i++ {
		if i > 500 {
			t.Fatalf("SO_RCVLOWAT is %d, want %d", lowat(t, c), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// pollIn reports whether c's socket polls readable now.
func pollIn(t *testing.T, c *quietConn) bool {
	t.Helper()
	var n int
	var perr error
	c.rc.Control(func(fd uintptr) {
		n, perr = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	})
	if perr != nil {
		t.Fatal(perr)
	}
	return n > 0
}

// checkNotHeld: got, the read parked on qc, takes a byte as it comes, and
// so does the next read, its mark left down.
func checkNotHeld(t *testing.T, qc *quietConn, srv *net.TCPConn, got <-chan readResult) {
	t.Helper()
	srv.Write([]byte("a"))
	if r := <-got; string(r.b) != "a" {
		t.Fatalf("read %q, %v", r.b, r.err)
	}
	got = readAsync(qc)
	time.Sleep(20 * time.Millisecond) // let it park
	if v := lowat(t, qc); v != 1 {
		t.Fatalf("SO_RCVLOWAT %d, want 1: the read is held", v)
	}
	srv.Write([]byte("b"))
	if r := <-got; string(r.b) != "b" {
		t.Fatalf("read %q, %v", r.b, r.err)
	}
}

type readResult struct {
	b   []byte
	err error
}

func readAsync(c net.Conn) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		ch <- readResult{buf[:n], err}
	}()
	return ch
}

func TestAnswerHoldWaitsForTick(t *testing.T) {
	h := NewAnswerHold()
	h.Tick(true) // the capture polls
	qc, srv := heldPair(t, h)
	got := readAsync(qc)
	waitLowat(t, qc, holdLowat)
	// A look that finds nothing for it keeps it held.
	h.Tick(true)
	if v := lowat(t, qc); v != holdLowat {
		t.Fatalf("SO_RCVLOWAT %d after a tick with nothing come, want it held", v)
	}

	srv.Write([]byte("HTTP/1.1 200 OK\r\n"))
	// The kernel keeps the bytes below the mark: the socket is not
	// readable, so the reader is still parked.
	if pollIn(t, qc) {
		t.Fatal("a held socket polls readable")
	}
	select {
	case r := <-got:
		t.Fatalf("read %q, %v before the tick", r.b, r.err)
	default:
	}

	h.Tick(true) // the capture's next look
	r := <-got
	if r.err != nil || string(r.b) != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("after the tick: %q, %v", r.b, r.err)
	}
	if v := lowat(t, qc); v != 1 {
		t.Fatalf("SO_RCVLOWAT %d after the tick, want 1", v)
	}
}

func TestAnswerHoldSleepingCaptureHoldsNothing(t *testing.T) {
	h := NewAnswerHold()
	h.Tick(true)
	qc, srv := heldPair(t, h)
	got := readAsync(qc)
	waitLowat(t, qc, holdLowat)
	// The capture goes to sleep: held sockets are signalled, and no new
	// read is held.
	h.Tick(false)
	waitLowat(t, qc, 1)
	checkNotHeld(t, qc, srv, got)
}

func TestAnswerHoldFINAndDeadline(t *testing.T) {
	t.Run("fin", func(t *testing.T) {
		h := NewAnswerHold()
		h.Tick(true)
		qc, srv := heldPair(t, h)
		got := readAsync(qc)
		waitLowat(t, qc, holdLowat)
		srv.Close() // signalled whatever the mark
		if r := <-got; r.err != io.EOF {
			t.Fatalf("read after FIN: %q, %v", r.b, r.err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		h := NewAnswerHold()
		h.Tick(true)
		qc, srv := heldPair(t, h)
		qc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		got := readAsync(qc)
		waitLowat(t, qc, holdLowat)
		srv.Write([]byte("held"))
		// No tick comes: the deadline finds the bytes in the socket,
		// and they are read, not a timeout.
		if r := <-got; r.err != nil || string(r.b) != "held" {
			t.Fatalf("read at the deadline: %q, %v", r.b, r.err)
		}
		if _, err := qc.Read(make([]byte, 8)); !isTimeout(err) {
			t.Fatalf("read past the deadline with nothing held: %v", err)
		}
	})
}

func TestAnswerHoldClosedConn(t *testing.T) {
	h := NewAnswerHold()
	h.Tick(true)
	qc, _ := heldPair(t, h)
	got := readAsync(qc)
	waitLowat(t, qc, holdLowat)
	qc.Close()
	<-got
	h.Tick(true) // a closed connection in the list is skipped
	h.Tick(false)
	var nilHold *AnswerHold
	nilHold.Tick(true) // replay: no hold
}

// An HTTP/2 sender's answers wait in the socket for the capture's look;
// with the capture asleep they come as they arrive.
func TestHTTP2AnswersHeld(t *testing.T) {
	g := newH2Gate()
	ts, _, _ := newH2Server(t, false, g.handler)
	h := NewAnswerHold()
	s := newH2Sender(t, SenderConfig{URL: ts.URL, Hold: h})
	st := s.Stats()

	h.Tick(true) // the capture polls from now on
	s.Send(h2Fake("1", ""), nil)
	// The shadow's SETTINGS wait for looks too.
	waitFor(t, "the request at the shadow", func() bool {
		h.Tick(true)
		return g.held.Load() == 1
	})
	s.mu.Lock()
	qc := s.conns[0].raw.(*quietConn)
	s.mu.Unlock()
	waitLowat(t, qc, holdLowat)

	close(g.release) // the shadow answers
	waitFor(t, "the answer in the socket", func() bool {
		var n int
		qc.rc.Control(func(fd uintptr) { n = pendingBytes(fd) })
		return n > 0
	})
	if ended(st) != 0 {
		t.Fatal("the answer was read before the capture looked")
	}
	h.Tick(true)
	waitFor(t, "answered after the look", func() bool { return ended(st) == 1 })

	// The capture sleeps: nothing is held.
	h.Tick(false)
	for i := range 10 {
		s.Send(h2Fake(fmt.Sprint("asleep-", i), ""), nil)
	}
	waitFor(t, "answered with no look", func() bool { return ended(st) == 11 })
	closeH2(t, s)
	checkStats(t, st, map[string]uint64{"mirrored": 11})
}

// The HTTP/1 sender does not hold: its answers come with the capture
// polling and no look.
func TestHTTP1AnswersNotHeld(t *testing.T) {
	ts, _ := newRecordingServer(t, false, nil)
	h := NewAnswerHold()
	h.Tick(true)
	s := newSender(t, SenderConfig{URL: ts.URL, Hold: h})
	for i := range 10 {
		s.Send(request(t, clientAddr(i), i, ""), nil)
	}
	st := s.Stats()
	waitFor(t, "answered", func() bool { return st.Mirrored.Load() == 10 })
	closeSender(t, s)
}

// After Stop nothing is held, though the capture's last Flush ticks.
func TestAnswerHoldStop(t *testing.T) {
	h := NewAnswerHold()
	h.Tick(true)
	qc, srv := heldPair(t, h)
	got := readAsync(qc)
	waitLowat(t, qc, holdLowat)
	h.Stop()
	waitLowat(t, qc, 1)
	h.Tick(true) // a last Flush
	checkNotHeld(t, qc, srv, got)
}
