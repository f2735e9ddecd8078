package h2frame

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// An idle connection holds its Conn and its HPACK tables, nothing more: no
// Framer, no frame buffer, no request.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	cfg := &Config{
		Emit:   func(r httpmsg.Request, _ any) { r.Release() },
		Answer: func(any, *httpmsg.Answer) {},
	}
	cw, sw := clientWire(), serverWire()
	for i := range 3 {
		id := uint32(2*i + 1)
		cw.headers(id, false, post("/api/v1/orders", "user-agent", "svc-client/2.3", "content-type", "application/json", "x-request-id", itoa(i))...)
		cw.data(id, true, `{"item": 1}`)
		sw.headers(id, false, ":status", "200", "content-type", "application/json").data(id, true, `{"ok": true}`)
	}
	client, server := cw.bytes(), sw.bytes()
	const n = 2000
	conns := make([]*Conn, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range conns {
		c := NewConn(cfg, netip.AddrPortFrom(testClient.Addr(), uint16(i)), testServer, false)
		c.ClientData(client, t0)
		c.ServerData(server, t0)
		conns[i] = c
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	t.Logf("%d bytes per idle connection after three requests and answers", per)
	if per > 8<<10 {
		t.Fatalf("%d bytes per idle connection", per)
	}
	for _, c := range conns {
		if len(c.streams) != 0 || c.cli.part != nil || c.srv.part != nil {
			t.Fatal("an idle connection holds a stream or a frame")
		}
	}
	runtime.KeepAlive(conns)
}

// A frame's bytes are held as they arrive, not as its header announces: a
// client that sends only the header of a 1 MiB DATA frame costs what it
// sent.
func TestPartialFrameHoldsWhatArrived(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	cfg := &Config{Emit: func(r httpmsg.Request, _ any) { r.Release() }, MaxFrameSize: 1 << 20}
	cw := clientWire()
	cw.headers(1, false, post("/upload")...)
	// DATA on stream 1, 1 MiB announced, 100 bytes sent.
	cw.buf.Write([]byte{0x10, 0x00, 0x00, 0x0, 0x0, 0, 0, 0, 1})
	cw.buf.Write(make([]byte, 100))
	client := cw.bytes()
	const n = 200
	conns := make([]*Conn, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range conns {
		c := NewConn(cfg, netip.AddrPortFrom(testClient.Addr(), uint16(i)), testServer, false)
		c.ClientData(client, t0)
		if c.cli.part == nil {
			t.Fatal("the DATA frame is not held as partial")
		}
		conns[i] = c
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	per /= n
	t.Logf("%d bytes per connection holding a partial 1 MiB frame", per)
	if per > 64<<10 {
		t.Errorf("%d bytes per connection for 100 bytes of a frame: the announced length was set aside", per)
	}
	runtime.KeepAlive(conns)
}
