package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/reassembly"
)

// bigStats is what writeBig wrote.
type bigStats struct {
	bytes, packets, conns, requests int64
}

// Shape of the large capture: how many connections are open at once, and
// the time between two packets.
const (
	bigConcurrent = 2000
	bigStep       = 20 * time.Microsecond
)

// writeBig writes a capture of about size bytes of HTTP/1.1 traffic in
// both directions, the way a busy service sees it: bigConcurrent keep-alive
// connections open at once, whose segments interleave; each connection
// opens with a handshake, carries 1 to 200 requests of mixed kinds and
// sizes (60 % small GETs, 25 % JSON POSTs, 10 % uploads of 16 to 64 KiB,
// chunked bodies, and 0.2 % uploads of up to 1 MiB),
// each answered before the next, and closes with FINs, when a new
// connection takes its place. A connection sends bursts of 1 to window
// packets at random: with a window of a few dozen packets a large upload
// completes in a few turns, as on a fast network; with a window of 1 every
// connection moves one packet at a time, so that large uploads stay in
// progress for most of the file, which is the hardest case for memory. It holds only the connections in progress,
// so its memory does not grow with size.
func writeBig(path string, size int64, window int) (bigStats, error) {
	window = max(window, 1)
	var st bigStats
	f, err := os.Create(path)
	if err != nil {
		return st, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := pcapfile.NewWriter(bw)
	if err != nil {
		f.Close()
		return st, err
	}
	if _, err := w.AddInterface("eth0"); err != nil {
		f.Close()
		return st, err
	}
	g := &bigGen{r: rand.New(rand.NewPCG(1, 2)), now: epoch, text: text(99, 1<<20)}
	conns := make([]*bigConn, bigConcurrent)
	for i := range conns {
		conns[i] = g.newConn()
	}
	var seg reassembly.Segment
	for w.BytesWritten() < size {
		// The connection picked sends a burst, as a TCP window lets it.
		i := g.r.IntN(len(conns))
		for burst := 1 + g.r.IntN(window); burst > 0 && w.BytesWritten() < size; burst-- {
			if !conns[i].next(g, &seg) {
				conns[i] = g.newConn()
				break
			}
			seg.Time = g.now
			g.now = g.now.Add(bigStep)
			if err := w.WriteSegment(0, &seg); err != nil {
				f.Close()
				return st, err
			}
			st.packets++
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return st, err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return st, err
	}
	st.bytes, st.conns, st.requests = w.BytesWritten(), g.conns, g.requests
	return st, f.Close()
}

// bigGen holds what the connections of the large capture share.
type bigGen struct {
	r        *rand.Rand
	now      time.Time
	text     []byte // bodies are slices of it
	port     uint16
	conns    int64
	requests int64
}

var bigServer = netip.MustParseAddrPort("198.18.255.1:8080")

// newConn starts a connection from the next client address and port.
func (g *bigGen) newConn() *bigConn {
	g.conns++
	g.port++
	if g.port < 1024 {
		g.port = 1024
	}
	// 4096 clients in 198.18.0.0/20, each reusing a port only after 60000
	// others were taken: connections never collide while open.
	n := uint32(g.conns % 4096)
	cl := netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)})
	c := &bigConn{
		flow: reassembly.Flow{Src: netip.AddrPortFrom(cl, g.port), Dst: bigServer},
		cseq: g.r.Uint32(), sseq: g.r.Uint32(),
		left: 1 + int(g.r.ExpFloat64()*8)%200,
	}
	return c
}

// bigConn is one connection in progress: the packets still to write for
// the current exchange, produced one at a time.
type bigConn struct {
	flow       reassembly.Flow
	cseq, sseq uint32 // next sequence number of each side
	phase      int
	req, resp  []byte // what is left to send of the current exchange
	sinceAck   int    // client segments since the server's last ACK
	ackDue     bool   // the server's ACK goes out next
	left       int    // requests still to send before closing
}

const (
	phaseSYN = iota
	phaseSYNACK
	phaseACK
	phaseRequest
	phaseResponse
	phaseFIN
	phaseFINACK
	phaseLastACK
	phaseDone
)

// next fills seg with the connection's next packet; false once it closed.
func (c *bigConn) next(g *bigGen, seg *reassembly.Segment) bool {
	cs, sc := c.flow, c.flow.Reverse()
	set := func(f reassembly.Flow, seq, ack uint32, flags reassembly.Flags, p []byte) {
		*seg = reassembly.Segment{Flow: f, Seq: seq, Ack: ack, Flags: flags, Payload: p}
	}
	switch c.phase {
	case phaseSYN:
		set(cs, c.cseq, 0, reassembly.SYN, nil)
		c.cseq++
	case phaseSYNACK:
		set(sc, c.sseq, c.cseq, reassembly.SYN|reassembly.ACK, nil)
		c.sseq++
	case phaseACK:
		set(cs, c.cseq, c.sseq, reassembly.ACK, nil)
		c.req = g.request()
		c.phase = phaseRequest
		return true
	case phaseRequest:
		if c.ackDue {
			// The server acknowledges every few segments of a long body.
			c.ackDue = false
			set(sc, c.sseq, c.cseq, reassembly.ACK, nil)
			return true
		}
		n := min(len(c.req), mss)
		set(cs, c.cseq, c.sseq, reassembly.ACK|reassembly.PSH, c.req[:n])
		c.cseq += uint32(n)
		c.req = c.req[n:]
		if len(c.req) == 0 {
			c.resp, c.phase, c.sinceAck = g.response(), phaseResponse, 0
		} else if c.sinceAck++; c.sinceAck == 4 {
			c.sinceAck, c.ackDue = 0, true
		}
		return true
	case phaseResponse:
		n := min(len(c.resp), mss)
		set(sc, c.sseq, c.cseq, reassembly.ACK|reassembly.PSH, c.resp[:n])
		c.sseq += uint32(n)
		c.resp = c.resp[n:]
		if len(c.resp) == 0 {
			if c.left--; c.left > 0 {
				c.req, c.phase = g.request(), phaseRequest
			} else {
				c.phase = phaseFIN
			}
		}
		return true
	case phaseFIN:
		set(cs, c.cseq, c.sseq, reassembly.FIN|reassembly.ACK, nil)
		c.cseq++
	case phaseFINACK:
		set(sc, c.sseq, c.cseq, reassembly.FIN|reassembly.ACK, nil)
		c.sseq++
	case phaseLastACK:
		set(cs, c.cseq, c.sseq, reassembly.ACK, nil)
	default:
		return false
	}
	c.phase++
	return true
}

// request returns the bytes of one request of a realistic mix.
func (g *bigGen) request() []byte {
	g.requests++
	r := g.r
	target := fmt.Sprintf("/api/v1/items/%d?view=%s", r.IntN(1_000_000), []string{"full", "summary", "ids"}[r.IntN(3)])
	headers := []string{
		"Accept: application/json",
		fmt.Sprintf("X-Request-Id: %016x", r.Uint64()),
		"Accept-Encoding: gzip",
	}
	if r.IntN(3) == 0 {
		headers = append(headers, "Cookie: session="+string(g.body(40+r.IntN(200))))
	}
	switch p := r.IntN(100); {
	case p < 60:
		return request("GET", target, host, "", nil, headers...)
	case p < 85:
		return request("POST", "/api/v1/items", host, "application/json", g.body(200+r.IntN(4000)), headers...)
	case p < 95:
		return request("POST", "/api/v1/upload", host, "application/octet-stream", g.body(16<<10+r.IntN(48<<10)), headers...)
	case p < 99 || r.IntN(5) > 0:
		return g.chunked(8<<10 + r.IntN(24<<10))
	default:
		return request("PUT", "/api/v1/blobs/"+fmt.Sprint(r.IntN(1000)), host, "application/octet-stream", g.body(256<<10+r.IntN(768<<10)), headers...)
	}
}

// chunked returns a chunked POST of about n body bytes in chunks of 1 to 4 KiB.
func (g *bigGen) chunked(n int) []byte {
	b := []byte("POST /api/v1/stream HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
	for n > 0 {
		k := min(n, 1024+g.r.IntN(3072))
		b = fmt.Appendf(b, "%x\r\n", k)
		b = append(b, g.body(k)...)
		b = append(b, "\r\n"...)
		n -= k
	}
	return append(b, "0\r\n\r\n"...)
}

// response returns an answer: mostly small, 2 % of 64 KiB.
func (g *bigGen) response() []byte {
	n := 100 + g.r.IntN(1900)
	switch p := g.r.IntN(100); {
	case p >= 98:
		n = 64 << 10
	case p >= 70:
		n = 2<<10 + g.r.IntN(14<<10)
	}
	b := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
	return append(b, g.body(n)...)
}

// body returns n bytes of text from a random place of the shared text.
func (g *bigGen) body(n int) []byte {
	n = min(n, len(g.text))
	off := g.r.IntN(len(g.text) - n + 1)
	return g.text[off : off+n]
}
