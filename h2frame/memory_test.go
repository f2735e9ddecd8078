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
