package h2frame

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/reassembly"
)

// capConn is one connection of a capture, replayed into a Conn.
type capConn struct {
	c              *Conn
	client, server netip.AddrPort
	sent, answered []byte // every byte of each side, for the fuzz seeds
	upgrade        bool   // the client starts with an HTTP/1.1 Upgrade: h2c request
	cliHead        []byte // upgrade: the HTTP/1 bytes so far
	srvHead        []byte
	cliDone        bool
	srvDone        bool
	ends           int
}

// side adapts one direction of a capConn to reassembly.Stream.
type side struct {
	cc     *capConn
	server bool
}

func (s side) Data(b []byte, t time.Time) {
	cc := s.cc
	if s.server {
		cc.answered = append(cc.answered, b...)
		if cc.upgrade && !cc.srvDone {
			// Strip the 101 Switching Protocols.
			cc.srvHead = append(cc.srvHead, b...)
			i := bytes.Index(cc.srvHead, []byte("\r\n\r\n"))
			if i < 0 {
				return
			}
			cc.srvDone, b = true, cc.srvHead[i+4:]
		}
		cc.c.ServerData(b, t)
		return
	}
	cc.sent = append(cc.sent, b...)
	if cc.upgrade && !cc.cliDone {
		cc.cliHead = append(cc.cliHead, b...)
		i := bytes.Index(cc.cliHead, []byte("\r\n\r\n"))
		if i < 0 {
			return
		}
		cc.cliDone = true
		req := parseH1(cc.cliHead[:i+4], cc.client, cc.server, t)
		cc.c.Upgrade(req, "upgrade", true)
		b = cc.cliHead[i+4:]
	}
	cc.c.ClientData(b, t)
}

func (s side) Gap() {
	if s.server {
		s.cc.c.ServerGap()
	} else {
		s.cc.c.ClientGap()
	}
}

func (s side) End() {
	if s.cc.ends++; s.cc.ends == 2 {
		s.cc.c.End()
	}
}

// parseH1 reads a body-less HTTP/1.1 request head.
func parseH1(head []byte, client, server netip.AddrPort, t time.Time) *h1 {
	lines := strings.Split(strings.TrimSuffix(string(head), "\r\n\r\n"), "\r\n")
	parts := strings.SplitN(lines[0], " ", 3)
	r := &h1{client: client, server: server, method: parts[0], target: parts[1]}
	for _, l := range lines[1:] {
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimSpace(value)
		r.headers = append(r.headers, [2]string{name, value})
		if strings.EqualFold(name, "host") {
			r.authority = value
		}
	}
	return r
}

// replay reads a capture made against port and feeds every connection to
// a Conn made with cfg.
func replay(t testing.TB, name string, port uint16, cfg *Config) []*capConn {
	r, err := pcapfile.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sides := pcapfile.NewSides([]uint16{port})
	conns := map[netip.AddrPort]*capConn{}
	var order []*capConn
	asm := reassembly.New(reassembly.Config{NewStream: func(first *reassembly.Segment, mid bool) reassembly.Stream {
		client, server := first.Flow.Src, first.Flow.Dst
		if first.Dir == reassembly.ToClient {
			client, server = server, client
		}
		cc := conns[client]
		if cc == nil {
			cc = &capConn{client: client, server: server, upgrade: strings.Contains(name, "upgrade")}
			cc.c = NewConn(cfg, client, server, mid)
			conns[client] = cc
			order = append(order, cc)
		}
		return side{cc: cc, server: first.Dir == reassembly.ToClient}
	}})
	var seg reassembly.Segment
	for {
		err := r.Next(&seg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sides.Direction(&seg) {
			asm.Add(&seg)
		}
	}
	asm.Close()
	return order
}

// capture is what the tests expect of one capture.
type capture struct {
	file  string
	port  uint16
	conns int
	// requests lists each request and then its answer, as describe and
	// describeAnswer write them, in the order they were emitted,
	// connection after connection.
	requests []string
	// each, when set, is what every one of total requests and answers is
	// (h2load's).
	each  [2]string
	total int
}

const (
	curlAnswer    = "200\ncontent-type: text/plain\nx-seen-path: %s\ncontent-length: %d\ndate: *\nbody %q\n"
	grpcRequest   = "#%d POST http://127.0.0.1:18096 /shadowtee.test.Echo/%s\ncontent-type: application/grpc+proto\nuser-agent: grpc-go/1.85.0\nte: trailers\n%sbody %q\n"
	grpcMetadata  = "x-user: alice\nx-request-id: r-1\nx-trace-bin: AAECYmluYXJ5\n"
	grpcAnswerFmt = "200\ncontent-type: application/grpc+proto\n%sbody %q\ntrailers:\ngrpc-status: 0\ngrpc-message: \n%s"
)

func okAnswer(path, body string) string { return fmt.Sprintf(curlAnswer, path, len(body), body) }

// msgs frames gRPC messages: a zero flag, a 4-byte length, the bytes.
func msgs(ms ...string) string {
	var b []byte
	for _, m := range ms {
		b = append(b, 0, 0, 0, 0, byte(len(m)))
		b = append(b, m...)
	}
	return string(b)
}

var captures = []capture{
	{file: "curl.pcap", port: 18091, conns: 3, requests: []string{
		"#1 GET http://127.0.0.1:18091 /curl/a?x=1\nuser-agent: curl/7.88.1\naccept: */*\n",
		okAnswer("/curl/a", "ok GET /curl/a?x=1 0\n"),
		"#1 GET http://127.0.0.1:18091 /curl/b\nuser-agent: curl/7.88.1\naccept: */*\nx-test: curl\ncookie: c=1; d=2\n",
		okAnswer("/curl/b", "ok GET /curl/b 0\n"),
		"#1 POST http://127.0.0.1:18091 /curl/post\nuser-agent: curl/7.88.1\naccept: */*\ncontent-length: 14\ncontent-type: application/x-www-form-urlencoded\nbody \"name=value&x=1\"\n",
		okAnswer("/curl/post", "ok POST /curl/post 14\n"),
	}},
	{file: "nghttp.pcap", port: 18092, conns: 2, requests: []string{
		// Streams 3 to 11 are RFC 7540 priority groups, made by PRIORITY
		// frames.
		"#13 GET http://127.0.0.1:18092 /nghttp/get\naccept: */*\naccept-encoding: gzip, deflate\nuser-agent: nghttp2/1.52.0\n",
		okAnswer("/nghttp/get", "ok GET /nghttp/get 0\n"),
		"#13 POST http://127.0.0.1:18092 /nghttp/post\naccept: */*\naccept-encoding: gzip, deflate\nuser-agent: nghttp2/1.52.0\ncontent-length: 17\nbody \"posted by nghttp\\n\"\n",
		okAnswer("/nghttp/post", "ok POST /nghttp/post 17\n"),
	}},
	{file: "nghttp-upgrade.pcap", port: 18093, conns: 1, requests: []string{
		// The HTTP/1.1 request, as stream 1: Host, Connection, Upgrade and
		// HTTP2-Settings are gone.
		"#1 GET http://127.0.0.1:18093 /nghttp/upgrade\naccept: */*\nuser-agent: nghttp2/1.52.0\n",
		okAnswer("/nghttp/upgrade", "ok GET /nghttp/upgrade 0\n"),
	}},
	{file: "h2load.pcap", port: 18094, conns: 4, total: 200, each: [2]string{
		"GET http://127.0.0.1:18094 /load\nuser-agent: h2load nghttp2/1.52.0\n",
		okAnswer("/load", "ok GET /load 0\n"),
	}},
	{file: "go-client.pcap", port: 18095, conns: 1, requests: []string{
		"#1 GET http://127.0.0.1:18095 /go/get?q=1\nx-custom: custom value\ncookie: a=1\ncookie: b=2\nuser-agent: shadowtee-capture/1\naccept-encoding: gzip\n",
		okAnswer("/go/get", "ok GET /go/get?q=1 0\n"),
		"#3 POST http://127.0.0.1:18095 /go/post\ncontent-type: text/plain\nuser-agent: shadowtee-capture/1\ncontent-length: 13\naccept-encoding: gzip\nbody \"hello from go\"\n",
		okAnswer("/go/post", "ok POST /go/post 13\n"),
		"#5 PUT http://127.0.0.1:18095 /go/big\nuser-agent: shadowtee-capture/1\ncontent-length: 40960\naccept-encoding: gzip\nbody " + quoteBody(bytes.Repeat([]byte("0123456789abcdef"), 2560)) + "\n",
		okAnswer("/go/big", "ok PUT /go/big 40960\n"),
		"#7 POST http://127.0.0.1:18095 /trailers\ntrailer: X-Client-Trailer\nuser-agent: shadowtee-capture/1\naccept-encoding: gzip\nbody \"part one, part two\"\ntrailers:\nx-client-trailer: done\n",
		"200\ncontent-type: text/plain\ntrailer: X-Done\nx-seen-path: /trailers\ncontent-length: 21\ndate: *\nbody \"ok POST /trailers 18\\n\"\ntrailers:\nx-done: yes done\n",
	}},
	{file: "grpc.pcap", port: 18096, conns: 1, requests: []string{
		fmt.Sprintf(grpcRequest, 1, "Unary", grpcMetadata, msgs("ping")),
		fmt.Sprintf(grpcAnswerFmt, "x-served-by: unary\n", msgs("echo:ping"), "x-trailer: t\n"),
		fmt.Sprintf(grpcRequest, 3, "ClientStream", grpcMetadata, msgs("one", "two", "three")),
		fmt.Sprintf(grpcAnswerFmt, "", msgs("one+two+three"), ""),
		// grpc-go's metadata map has no order.
		fmt.Sprintf(grpcRequest, 5, "ServerStream", "x-request-id: r-1\nx-trace-bin: AAECYmluYXJ5\nx-user: alice\n", msgs("count")),
		fmt.Sprintf(grpcAnswerFmt, "", msgs("count#0", "count#1", "count#2"), ""),
		fmt.Sprintf(grpcRequest, 7, "Bidi", grpcMetadata, msgs("a", "bb", "ccc")),
		fmt.Sprintf(grpcAnswerFmt, "", msgs("bidi:a", "bidi:bb", "bidi:ccc"), ""),
	}},
}

// describe writes a request as the captures list it.
func describe(r httpmsg.Request) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "#%d %s %s://%s %s\n", r.StreamID(), r.Method(), r.Scheme(), r.Authority(), r.Path())
	sb.WriteString(fieldsString(r.VisitHeaders))
	var body []byte
	r.VisitBody(func(b []byte) bool { body = append(body, b...); return true })
	if len(body) > 0 {
		fmt.Fprintf(&sb, "body %s\n", quoteBody(body))
	}
	if tr := fieldsString(r.VisitTrailers); tr != "" {
		sb.WriteString("trailers:\n" + tr)
	}
	return sb.String()
}

func describeAnswer(a *httpmsg.Answer) string {
	if a == nil {
		return "lost\n"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d\n", a.Status)
	for _, f := range a.Header {
		if string(f.Name) == "date" {
			f.Value = []byte("*") // differs each time the captures are made
		}
		fmt.Fprintf(&sb, "%s: %s\n", f.Name, f.Value)
	}
	if a.BodyLen > 0 {
		fmt.Fprintf(&sb, "body %s\n", quoteBody(a.Body))
	}
	if len(a.Trailer) > 0 {
		sb.WriteString("trailers:\n")
		for _, f := range a.Trailer {
			fmt.Fprintf(&sb, "%s: %s\n", f.Name, f.Value)
		}
	}
	return sb.String()
}

// quoteBody quotes a body, long ones by length and a prefix.
func quoteBody(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%d bytes %q...", len(b), b[:32])
	}
	return strconv.Quote(string(b))
}

// decoded is what a replay emitted, per connection in order.
type decoded struct {
	requests [][]string // per connection
	answers  [][]string
	stats    *Stats
	streamed map[string]string // streaming requests: tag -> body and trailers read
}

func decodeCapture(t testing.TB, file string, port uint16) (decoded, []*capConn) {
	d := decoded{stats: &Stats{}, streamed: map[string]string{}}
	answers := map[any]*httpmsg.Answer{}
	type emitted struct {
		client netip.AddrPort
		tag    string
		desc   string
	}
	var all []emitted
	var streams []*httpmsg.BodyStream
	var streamTags []string
	cfg := &Config{
		Stats: d.stats,
		Keep: func(r httpmsg.Request) (any, bool) {
			return fmt.Sprintf("%v/%d", r.Client(), r.StreamID()), true
		},
		Emit: func(r httpmsg.Request, tag any) {
			tag = fmt.Sprintf("%v/%d", r.Client(), r.StreamID())
			all = append(all, emitted{r.Client(), tag.(string), describe(r)})
			if r.Stream() != nil {
				streams = append(streams, r.Stream())
				streamTags = append(streamTags, tag.(string))
			}
			r.Release()
		},
		Answer: func(tag any, a *httpmsg.Answer) {
			if tag == "upgrade" {
				tag = "upgrade"
			}
			answers[tag] = a
		},
	}
	conns := replay(t, file, port, cfg)
	for _, cc := range conns {
		var reqs, ans []string
		for _, e := range all {
			if e.client == cc.client || (cc.upgrade && e.tag == "upgrade") {
				reqs = append(reqs, e.desc)
				a, ok := answers[e.tag]
				if !ok {
					a = answers["upgrade"]
				}
				ans = append(ans, describeAnswer(a))
			}
		}
		d.requests = append(d.requests, reqs)
		d.answers = append(d.answers, ans)
	}
	for i, bs := range streams {
		var body []byte
		var err error
		for {
			var chunks [][]byte
			chunks, err = bs.Take()
			for _, c := range chunks {
				body = append(body, c...)
			}
			if err != nil || chunks == nil {
				break
			}
		}
		d.streamed[streamTags[i]] = fmt.Sprintf("%q %v %q", body, err, bs.Trailers())
	}
	return d, conns
}

func TestCaptures(t *testing.T) {
	for _, want := range captures {
		t.Run(want.file, func(t *testing.T) {
			d, conns := decodeCapture(t, want.file, want.port)
			if len(conns) != want.conns {
				t.Fatalf("%d connections, want %d", len(conns), want.conns)
			}
			var got []string
			for i := range conns {
				for j := range d.requests[i] {
					got = append(got, d.requests[i][j], d.answers[i][j])
				}
			}
			if want.total > 0 {
				mustEqual(t, "requests", len(got)/2, want.total)
				for i := 0; i < len(got); i += 2 {
					_, rest, _ := strings.Cut(got[i], " ") // the stream id varies
					if rest != want.each[0] || got[i+1] != want.each[1] {
						t.Fatalf("request %d:\n%s%s\nwant:\n%s%s", i/2, got[i], got[i+1], want.each[0], want.each[1])
					}
				}
			} else if g, w := strings.Join(got, "--\n"), strings.Join(want.requests, "--\n"); g != w {
				t.Errorf("requests and answers:\n%s\nwant:\n%s", g, w)
			}
			mustEqual(t, "skipped", d.stats.skipped(), "")
			mustEqual(t, "gave up", d.stats.gaveUp(), "")
			mustEqual(t, "answers lost", d.stats.AnswersLost.Load(), 0)
			mustEqual(t, "states lost", d.stats.StatesLost.Load(), 0)
		})
	}
}

// TestDumpCaptures prints what the captures decode to, for writing the
// expectations above: H2FRAME_DUMP=1 go test -run TestDumpCaptures -v.
func TestDumpCaptures(t *testing.T) {
	if os.Getenv("H2FRAME_DUMP") == "" {
		t.Skip("set H2FRAME_DUMP=1 to print the captures")
	}
	for _, c := range captures {
		d, conns := decodeCapture(t, c.file, c.port)
		fmt.Printf("=== %s: %d connections, skipped %q, gave up %q, lost %d\n", c.file, len(conns), d.stats.skipped(), d.stats.gaveUp(), d.stats.AnswersLost.Load())
		for i := range conns {
			fmt.Printf("--- connection %d: %d requests\n", i, len(d.requests[i]))
			for j := range d.requests[i] {
				fmt.Printf("%q\n%q\n", d.requests[i][j], d.answers[i][j])
			}
		}
	}
}

// The captured bodies come out the same when every request streams.
func TestCapturesStreaming(t *testing.T) {
	for _, c := range captures {
		if c.total > 0 {
			continue
		}
		t.Run(c.file, func(t *testing.T) {
			var whole []string
			cfg := &Config{Emit: func(r httpmsg.Request, _ any) {
				whole = append(whole, bodyAndTrailers(r))
				r.Release()
			}}
			replay(t, c.file, c.port, cfg)
			var streams []*httpmsg.BodyStream
			var streamed []string
			cfg = &Config{HoldBody: 1, Emit: func(r httpmsg.Request, _ any) {
				streams = append(streams, r.Stream())
				streamed = append(streamed, bodyAndTrailers(r))
				r.Release()
			}}
			replay(t, c.file, c.port, cfg)
			n := 0
			for i, bs := range streams {
				if bs == nil {
					continue
				}
				n++
				var body []byte
				for {
					chunks, err := bs.Take()
					for _, ch := range chunks {
						body = append(body, ch...)
					}
					if err == io.EOF {
						break
					}
					if err != nil || chunks == nil {
						t.Fatalf("request %d: stream %v", i, err)
					}
				}
				var tr []string
				for _, f := range bs.Trailers() {
					tr = append(tr, string(f.Name)+": "+string(f.Value))
				}
				streamed[i] = fmt.Sprintf("%q %q", body, tr)
			}
			if g, w := strings.Join(streamed, "\n"), strings.Join(whole, "\n"); g != w {
				t.Fatalf("streamed:\n%s\nwhole:\n%s", g, w)
			}
			t.Logf("%d of %d requests streamed", n, len(streams))
		})
	}
}

func bodyAndTrailers(r httpmsg.Request) string {
	var body []byte
	r.VisitBody(func(b []byte) bool { body = append(body, b...); return true })
	var tr []string
	r.VisitTrailers(func(n, v []byte) bool { tr = append(tr, string(n)+": "+string(v)); return true })
	return fmt.Sprintf("%q %q", body, tr)
}

// Real connections joined at any point, and fed a byte at a time: what is
// emitted is what the whole connection carried.
func TestCapturesMidStreamAndSplit(t *testing.T) {
	for _, c := range captures {
		t.Run(c.file, func(t *testing.T) {
			_, conns := decodeCapture(t, c.file, c.port)
			for _, cc := range conns {
				if cc.upgrade {
					continue
				}
				truth := map[uint32]string{}
				rec := newRecorder()
				rec.cfg.Keep = nil
				rec.cfg.Emit = func(r httpmsg.Request, _ any) { truth[r.StreamID()] = describe(r); r.Release() }
				conn := rec.conn(false)
				conn.ClientData(cc.sent, t0)
				conn.End()
				emitted := 0
				for k := 1; k < len(cc.sent); k += 1 + len(cc.sent)/300 {
					rec.cfg.Emit = func(r httpmsg.Request, _ any) {
						emitted++
						if g := describe(r); g != truth[r.StreamID()] {
							t.Fatalf("joined at %d: emitted\n%s\nwant\n%s", k, g, truth[r.StreamID()])
						}
						r.Release()
					}
					conn := rec.conn(true)
					conn.ClientData(cc.sent[k:], t0)
					conn.End()
				}
				if want := record(cc.sent, cc.answered, whole, false, 0); record(cc.sent, cc.answered, bytewise, false, 0) != want {
					t.Fatalf("a byte at a time differs")
				}
				t.Logf("%v: %d requests, %d emitted over all joins", cc.client, len(truth), emitted)
			}
		})
	}
}

// TestWriteFuzzSeeds writes the client side of every captured connection
// as a FuzzH2Framing seed; make-captures.sh runs it.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("H2FRAME_WRITE_SEEDS") == "" {
		t.Skip("run by make-captures.sh")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzH2Framing")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range captures {
		_, conns := decodeCapture(t, c.file, c.port)
		for i, cc := range conns {
			b := cc.sent
			if cc.upgrade {
				b = b[bytes.Index(b, []byte("\r\n\r\n"))+4:]
			}
			seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			name := fmt.Sprintf("%s-%d", strings.TrimSuffix(c.file, ".pcap"), i)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
