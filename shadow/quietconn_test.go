package shadow

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// quietPair returns a quietConn dialled to a loopback listener, and the
// server's end.
func quietPair(t *testing.T) (*quietConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	qc, ok := quiet(nc, nil).(*quietConn)
	if !ok {
		t.Fatalf("quiet(%T) is not a quietConn", nc)
	}
	t.Cleanup(func() { qc.Close(); srv.Close() })
	return qc, srv.(*net.TCPConn)
}

func TestQuietConnReadWrite(t *testing.T) {
	qc, srv := quietPair(t)

	// A write larger than the socket buffers waits for room and writes all.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(srv, int64(len(big))))
		got <- b
	}()
	if n, err := qc.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("the server read %d bytes, not what was written", len(b))
	}

	// A read waits for data, then returns what came.
	go func() {
		time.Sleep(20 * time.Millisecond)
		srv.Write([]byte("answer"))
	}()
	buf := make([]byte, 64)
	n, err := qc.Read(buf)
	if err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}

	// The peer's FIN is io.EOF, as on a net.TCPConn.
	srv.CloseWrite()
	if n, err := qc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after FIN = %d, %v; want 0, EOF", n, err)
	}
}

func TestQuietConnTryWriteNeverWaits(t *testing.T) {
	qc, _ := quietPair(t) // the server never reads
	chunk := make([]byte, 1<<20)
	var total int
	for i := 0; ; i++ {
		n, err := qc.tryWrite(chunk)
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n == 0 {
			break // the socket is full, and tryWrite returned at once
		}
		if i > 1000 {
			t.Fatalf("%d bytes taken by a socket nobody reads", total)
		}
	}
	if total == 0 {
		t.Fatal("an empty socket took nothing")
	}
}

func TestQuietConnErrors(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		qc, _ := quietPair(t)
		qc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := qc.Read(make([]byte, 8))
		if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
			t.Fatalf("Read past the deadline: %v", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("Read past the deadline: %#v, want an OpError named read", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		qc, srv := quietPair(t)
		srv.SetLinger(0) // close sends RST
		srv.Close()
		time.Sleep(20 * time.Millisecond)
		_, err := qc.Read(make([]byte, 8))
		if err == nil || err == io.EOF || !isReset(err) {
			t.Fatalf("Read after RST: %v, want a reset", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		qc, _ := quietPair(t)
		qc.Close()
		if _, err := qc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
		if _, err := qc.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) || isReset(err) {
			t.Fatalf("Read after Close: %v", err)
		}
	})
}

func TestQuietConnAllocs(t *testing.T) {
	qc, srv := quietPair(t)
	msg := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := qc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(srv, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		srv.Write(msg)
		if _, err := io.ReadFull(qc, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	// srv's own Read and Write allocate nothing either, once warm.
	if allocs > 0 {
		t.Fatalf("%.1f allocations per write and read", allocs)
	}
}

// The sender's plain connections are quiet ones, and TLS runs over one.
func TestConnectIsQuiet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ep, err := newEndpoint(&SenderConfig{URL: "http://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	nc, raw, _, err := ep.connect(t.Context(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, ok := nc.(*quietConn); !ok {
		t.Fatalf("connect gave a %T", nc)
	}
	if tryWriterOf(nc) == nil {
		t.Fatal("a quiet connection is not written directly")
	}
}
