package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// A testCase is one synthesised capture: its file, what it holds, what
// replaying it must give, and how to build it.
type testCase struct {
	file   string
	format format
	holds  string
	expect string
	build  func() *capture
}

// Addresses and names shared by the cases: the client and server of the
// gateway topology of the end-to-end tests.
const (
	client  = "198.18.0.1"
	server  = "198.18.0.2:8080"
	client6 = "[fd00::1]"
	server6 = "[fd00::2]:8080"
	host    = "shadowing.example"
)

// ok is the server's answer when its content does not matter.
const ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

func clientAddr(port int) string { return fmt.Sprintf("%s:%d", client, port) }

// get returns a GET request with a Host header and the extra header lines.
func get(target string, extra ...string) []byte {
	return request("GET", target, host, "", nil, extra...)
}

// request returns method target HTTP/1.1 with Host (when not empty), the
// extra header lines, and a Content-Length body (when contentType is set).
func request(method, target, hostValue, contentType string, body []byte, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	if hostValue != "" {
		fmt.Fprintf(&b, "Host: %s\r\n", hostValue)
	}
	b.WriteString("User-Agent: shadowtee-testdata/1.0\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n", contentType, len(body))
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), body...)
}

// text returns n bytes of lower-case words from a fixed seed: a body that
// cannot be mistaken for a request line when framing is lost inside it.
func text(seed uint64, n int) []byte {
	words := []string{"shadow", "mirror", "replay", "capture", "segment", "stream", "request", "body", "tee", "lorem", "ipsum"}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:n]
}

// noise returns n bytes from a fixed seed.
func noise(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), 's', 'h', 'a', 'd', 'o', 'w'})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// cases lists every synthesised capture, in the order of the README table.
var cases = []testCase{
	{
		file: "retransmit.pcap", format: pcapMicro,
		holds:  "a GET sent twice (RTO retransmission), then a 3-segment POST whose middle segment is retransmitted whole after the last one",
		expect: "2 requests, each once; duplicates counted",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40001), server, 1000001).open()
			req := get("/retransmit/1")
			k.send(req)
			c.wait(200 * time.Millisecond)
			k.segment(0, req)
			k.reply(ok)
			start := k.csent
			post := request("POST", "/retransmit/2", host, "text/plain", text(1, 3000))
			k.send(post)
			k.segment(start+mss, post[mss:2*mss])
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "retransmit-overlap.pcapng", format: pcapng,
		holds:  "a POST whose lost second segment comes back in a retransmission that overlaps the bytes before and after it, then a GET sent in a segment that repeats the POST's last 100 bytes",
		expect: "2 requests with the POST body intact; no gap (the bytes seen twice are trimmed)",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40002), server, 2000002).open()
			post := request("POST", "/overlap", host, "text/plain", text(2, 4000))
			k.segment(0, post[:1000])
			k.segment(2000, post[2000:3000]) // [1000, 2000) was lost
			k.ackUpTo(1000)
			k.ackUpTo(1000)
			k.segment(500, post[500:2500])
			k.segment(3000, post[3000:])
			next := append(append([]byte(nil), post[len(post)-100:]...), get("/overlap/after")...)
			k.segment(len(post)-100, next)
			k.reply(ok + ok)
			k.close()
			return c
		},
	},
	{
		file: "out-of-order.pcap", format: pcapNano,
		holds:  "a 4-segment POST whose segments arrive 1, 3, 2, then the next keep-alive GET, then segment 4",
		expect: "the POST then the GET, both intact; out-of-order segments counted",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40003), server, 3000003).open()
			post := request("POST", "/ooo", host, "application/octet-stream", noise(3, 5000))
			p := pieces(post, mss)
			next := get("/ooo/next")
			k.segment(p[0].off, p[0].b)
			k.segment(p[2].off, p[2].b)
			k.segment(p[1].off, p[1].b)
			k.segment(len(post), next)
			k.segment(p[3].off, p[3].b)
			k.reply(ok + ok)
			k.close()
			return c
		},
	},
	{
		file: "lost-segment.pcap", format: pcapMicro,
		holds:  "3 keep-alive requests; the middle segment of the 2nd (a 3-segment POST) is missing from the capture for good, though the server acknowledged and answered it",
		expect: "the 1st and 3rd requests; the 2nd counted incomplete; one gap",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40004), server, 4000004).open()
			k.send(get("/keepalive/1"))
			k.reply(ok)
			start := k.csent
			post := request("POST", "/keepalive/2", host, "text/plain", text(4, 3500))
			p := pieces(post, mss)
			k.segment(start+p[0].off, p[0].b)
			// p[1] never reaches the capture.
			k.segment(start+p[2].off, p[2].b)
			k.ack()
			k.reply(ok)
			k.send(get("/keepalive/3"))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "client-only.pcap", format: pcapMicro,
		holds:  "only client-to-server packets, no SYN: 2 keep-alive GETs; a POST in 3 segments; 2 pipelined GETs (3 connections)",
		expect: "5 requests without --port: the client side is found from the request lines",
		build: func() *capture {
			c := newCapture(ethernet)
			c.clientOnly = true
			k := c.conn(clientAddr(40005), server, 5000005)
			k.send(get("/client-only/1"))
			k.reply(ok)
			k.send(get("/client-only/2"))
			k.reply(ok)
			k2 := c.conn(clientAddr(40006), server, 5000006)
			post := request("POST", "/client-only/post", host, "text/plain", text(5, 3000))
			k2.send(post)
			k2.reply(ok)
			k3 := c.conn(clientAddr(40007), server, 5000007)
			k3.send(append(get("/client-only/p1"), get("/client-only/p2")...))
			k3.reply(ok + ok)
			k.close()
			k2.close()
			k3.close()
			return c
		},
	},
	{
		file: "mid-stream.pcap", format: pcapMicro,
		holds:  "a keep-alive connection joined in its middle: the first packet is the last 600 bytes of a POST body, then the server's answer, a GET and a POST",
		expect: "the GET and the POST; the body tail is dropped before the connection's client is known",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40008), server, 6000008)
			before := request("POST", "/upload", host, "text/plain", text(6, 2000))
			k.segment(len(before)-600, before[len(before)-600:])
			k.reply("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
			k.send(get("/after/1"))
			k.reply(ok)
			k.send(request("POST", "/after/2", host, "application/json", []byte(`{"after":2}`)))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "vlan.pcap", format: pcapMicro,
		holds:  "Ethernet with an 802.1Q tag (VLAN 100): a GET and a POST; a second connection with 802.1ad and 802.1Q tags (VLAN 10, 100): a GET",
		expect: "3 requests",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40009), server, 7000009)
			k.vlans = []uint16{100}
			k.open()
			k.send(get("/vlan/1"))
			k.reply(ok)
			k.send(request("POST", "/vlan/2", host, "application/json", []byte(`{"vlan":100}`)))
			k.reply(ok)
			k.close()
			q := c.conn(clientAddr(40010), server, 7000010)
			q.vlans = []uint16{10, 100}
			q.open()
			q.send(get("/qinq"))
			q.reply(ok)
			q.close()
			return c
		},
	},
	{
		file: "ipv6.pcapng", format: pcapng,
		holds:  "IPv6 over Ethernet: a GET with Host [fd00::2]:8080, then a POST on the same connection",
		expect: "2 requests; the shadow Host is [fd00::2]-shadow:8080",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(client6+":40011", server6, 8000011).open()
			k.send(request("GET", "/ipv6", "[fd00::2]:8080", "", nil))
			k.reply(ok)
			k.send(request("POST", "/ipv6/post", "[fd00::2]:8080", "text/plain", text(11, 2000)))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "sll2.pcap", format: pcapNano,
		holds:  "Linux cooked v2 framing (tcpdump -i any), nanosecond timestamps: a GET, a POST and a GET on one connection",
		expect: "3 requests",
		build: func() *capture {
			c := newCapture(sll2)
			k := c.conn(clientAddr(40012), server, 9000012).open()
			k.send(get("/sll2/1"))
			k.reply(ok)
			k.send(request("POST", "/sll2/2", host, "text/plain", text(12, 1800)))
			k.reply(ok)
			k.send(get("/sll2/3"))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "null-loopback.pcap", format: pcapMicro,
		holds:  "BSD loopback (NULL) framing: a GET over IPv4 (family 2) and a GET over IPv6 (family 30, as macOS writes it)",
		expect: "2 requests",
		build: func() *capture {
			c := newCapture(null)
			k := c.conn("127.0.0.1:50001", "127.0.0.1:8080", 10000013).open()
			k.send(request("GET", "/loopback/4", "localhost:8080", "", nil))
			k.reply(ok)
			k.close()
			k6 := c.conn("[::1]:50002", "[::1]:8080", 10000014).open()
			k6.send(request("GET", "/loopback/6", "[::1]:8080", "", nil))
			k6.reply(ok)
			k6.close()
			return c
		},
	},
	{
		file: "chunked-trailers.pcap", format: pcapMicro,
		holds:  "a chunked POST (a chunk extension, a trailer field, segment boundaries inside chunk-size lines), then a GET on the same connection",
		expect: "2 requests; the POST chunked with its decoded body length and hash",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40015), server, 11000015).open()
			head := "POST /chunked HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: shadowtee-testdata/1.0\r\n" +
				"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
			var body strings.Builder
			body.WriteString(head)
			for i, n := range []int{26, 400, 1, 1500} {
				ext := ""
				if i == 1 {
					ext = ";part=two"
				}
				fmt.Fprintf(&body, "%x%s\r\n%s\r\n", n, ext, text(uint64(20+i), n))
			}
			body.WriteString("0\r\nX-Checksum: 5f1e0c\r\n\r\n")
			b := []byte(body.String())
			// Cut inside the second chunk-size line and inside the trailer.
			cut1 := len(head) + 4 + 26 + 2 + 2
			cut2 := len(b) - 12
			k.segment(0, b[:cut1])
			k.segment(cut1, b[cut1:cut2])
			k.segment(cut2, b[cut2:])
			k.reply(ok)
			k.send(get("/chunked/after"))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "pipelined.pcap", format: pcapMicro,
		holds:  "pipelining: one segment holding a GET, a POST with a 5-byte body and a GET; then 2 more GETs whose second is split across two segments",
		expect: "5 requests, in order",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40016), server, 12000016).open()
			var one []byte
			one = append(one, get("/pipelined/1")...)
			one = append(one, request("POST", "/pipelined/2", host, "text/plain", []byte("hello"))...)
			one = append(one, get("/pipelined/3")...)
			k.send(one)
			more := append(get("/pipelined/4"), get("/pipelined/5")...)
			cut := len(more) - 20
			k.segment(k.csent, more[:cut])
			k.segment(k.csent, more[cut:])
			k.reply(ok + ok + ok + ok + ok)
			k.close()
			return c
		},
	},
	{
		file: "large-post.pcap", format: pcapMicro,
		holds:  "a POST with a 200 KiB binary body in 1448-byte segments, the server acknowledging every 8th",
		expect: "1 request, body_len 204800",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40017), server, 13000017).open()
			post := request("POST", "/upload/large", host, "application/octet-stream", noise(17, 200<<10))
			for i, p := range pieces(post, mss) {
				k.segment(p.off, p.b)
				if i%8 == 7 {
					k.ack()
				}
			}
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "http10-no-host.pcap", format: pcapMicro,
		holds:  "an HTTP/1.0 GET without Host; the server answers and closes",
		expect: "1 request; Host absent, the shadow Host made from the server address",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40018), server, 14000018).open()
			k.send([]byte("GET /legacy HTTP/1.0\r\nUser-Agent: legacy-client/1.0\r\nAccept: */*\r\n\r\n"))
			k.reply("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
			k.serverClose()
			return c
		},
	},
	{
		file: "absolute-form.pcap", format: pcapMicro,
		holds:  "absolute-form targets: a GET of http://shadowing.example:8080/absolute?q=1 and a form POST of http://shadowing.example/form",
		expect: "2 requests; shadow_target carries the -shadow authority",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40019), server, 15000019).open()
			k.send(request("GET", "http://"+host+":8080/absolute?q=1", host+":8080", "", nil))
			k.reply(ok)
			k.send(request("POST", "http://"+host+"/form", host, "application/x-www-form-urlencoded", []byte("a=1&b=two")))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "expect-continue.pcap", format: pcapMicro,
		holds:  "a PUT with Expect: 100-continue: head, the server's 100 Continue, a 5000-byte body; then a GET",
		expect: "2 requests; the PUT whole, Expect kept",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40020), server, 16000020).open()
			put := request("PUT", "/put", host, "text/plain", text(20, 5000), "Expect: 100-continue")
			headLen := strings.Index(string(put), "\r\n\r\n") + 4
			k.send(put[:headLen])
			k.reply("HTTP/1.1 100 Continue\r\n\r\n")
			c.wait(time.Millisecond)
			k.send(put[headLen:])
			k.reply(ok)
			k.send(get("/after-put"))
			k.reply(ok)
			k.close()
			return c
		},
	},
	{
		file: "connect.pcap", format: pcapMicro,
		holds:  "a CONNECT, the proxy's 200, then tunnel bytes: a TLS ClientHello and a plain-text GET inside the tunnel",
		expect: "nothing; skipped connect 1 (the tunnel is not framed)",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40021), server, 17000021).open()
			k.send([]byte("CONNECT backend.example:443 HTTP/1.1\r\nHost: backend.example:443\r\n\r\n"))
			k.reply("HTTP/1.1 200 Connection Established\r\n\r\n")
			hello := append([]byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03}, noise(21, 193)...)
			k.send(hello)
			k.reply(string(append([]byte{0x16, 0x03, 0x03, 0x00, 0x40}, noise(22, 64)...)))
			k.send(get("/inside-the-tunnel"))
			k.close()
			return c
		},
	},
	{
		file: "websocket.pcap", format: pcapMicro,
		holds:  "a WebSocket upgrade (GET with Upgrade: websocket), the server's 101, then masked client frames (text, ping, close)",
		expect: "nothing; skipped upgrade 1",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40022), server, 18000022).open()
			k.send(get("/chat", "Upgrade: websocket", "Connection: Upgrade",
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"))
			k.reply("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
			k.send(wsFrame(0x1, []byte("GET / HTTP/1.1 inside a WebSocket message"), 1))
			k.send(wsFrame(0x9, []byte("ping"), 2))
			k.send(wsFrame(0x8, []byte{0x03, 0xe8}, 3))
			k.close()
			return c
		},
	},
	{
		file: "http2-preface.pcap", format: pcapMicro,
		holds:  "HTTP/2 with prior knowledge: the connection preface, a SETTINGS frame and a HEADERS frame",
		expect: "nothing; skipped http2 1",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40023), server, 19000023).open()
			preface := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
			settings := []byte{0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100}
			// HEADERS on stream 1, END_STREAM|END_HEADERS: :method GET,
			// :scheme http, :path /, then :authority as a literal.
			hpack := append([]byte{0x82, 0x86, 0x84, 0x41, byte(len(host))}, host...)
			headers := append([]byte{0, 0, byte(len(hpack)), 0x1, 0x5, 0, 0, 0, 1}, hpack...)
			k.send(append(append(preface, settings...), headers...))
			k.reply(string([]byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}))
			k.close()
			return c
		},
	},
	{
		file: "garbage-then-request.pcap", format: pcapMicro,
		holds:  "a connection (with its SYN) whose first segment is 64 bytes of binary garbage and a line of text, then a valid GET",
		expect: "the GET; the garbage counted as malformed",
		build: func() *capture {
			c := newCapture(ethernet)
			k := c.conn(clientAddr(40024), server, 20000024).open()
			junk := append(noise(24, 64), "\r\nhello there, not http\r\n"...)
			k.send(junk)
			k.send(get("/after-garbage"))
			k.reply(ok)
			k.close()
			return c
		},
	},
}

// piece is part of a byte stream at an offset.
type piece struct {
	off int
	b   []byte
}

// pieces cuts b into pieces of at most n bytes.
func pieces(b []byte, n int) []piece {
	var ps []piece
	for off := 0; off < len(b); off += n {
		ps = append(ps, piece{off, b[off:min(off+n, len(b))]})
	}
	return ps
}

// wsFrame returns a final, masked client WebSocket frame (RFC 6455) with a
// payload shorter than 126 bytes.
func wsFrame(opcode byte, payload []byte, seed uint64) []byte {
	key := noise(seed+100, 4)
	f := []byte{0x80 | opcode, 0x80 | byte(len(payload))}
	f = append(f, key...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}
