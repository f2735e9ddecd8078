package httpframe

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// ResponseConfig configures the ResponseParsers that share it.
type ResponseConfig struct {
	// MaxHeaderBytes caps a response head. Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// BodyCap is how many body bytes an answer keeps; the rest is counted
	// in BodyLen and marked Truncated. Default 64 KiB.
	BodyCap int
	// Answer receives, for every request registered with a non-nil tag, in
	// order, the answer the server gave it, or nil when there is none to
	// give (the stream broke, ended, or lost its pairing). Ownership of the
	// Answer passes to the callee.
	Answer func(tag any, a *httpmsg.Answer)
	// Stats receives the counters; it may be shared. Nil counts nowhere.
	Stats *ResponseStats
	// MaxOutstanding caps the requests of one connection that wait for
	// their answers. Past it the answers are taken for lost (a route on
	// which they are not seen): the requests waiting, and those that
	// follow, get nil, and the parser holds nothing more. Default
	// DefaultMaxOutstanding.
	MaxOutstanding int
}

// DefaultMaxOutstanding is ResponseConfig.MaxOutstanding's default: far
// more requests than a client pipelines.
const DefaultMaxOutstanding = 64

// ResponseStats counts what the ResponseParsers did.
type ResponseStats struct {
	Responses atomic.Uint64 // final responses framed
	Interim   atomic.Uint64 // 1xx responses skipped
	Paired    atomic.Uint64 // answers handed to Answer
	Unpaired  atomic.Uint64 // requests kept whose answer could not be framed
	Orphans   atomic.Uint64 // responses with no request registered for them
	Malformed atomic.Uint64 // heads or bodies that broke the framing
	Overrun   atomic.Uint64 // connections with more requests waiting than MaxOutstanding
}

func (c *ResponseConfig) maxOutstanding() int {
	if c.MaxOutstanding > 0 {
		return c.MaxOutstanding
	}
	return DefaultMaxOutstanding
}

func (c *ResponseConfig) maxHeader() int {
	if c.MaxHeaderBytes > 0 {
		return c.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (c *ResponseConfig) bodyCap() int {
	if c.BodyCap > 0 {
		return c.BodyCap
	}
	return 64 << 10
}

var discardResponses ResponseStats

// expected is a request whose answer has not been framed yet.
type expected struct {
	tag     any
	head    bool // HEAD: the answer has no body, whatever it says
	connect bool // CONNECT: a 2xx answer starts a tunnel
}

// response parser states.
const (
	rsHead     uint8 = iota // a status line and header block
	rsLength                // Content-Length body
	rsChunked               // chunked body
	rsClose                 // body delimited by the end of the connection
	rsLost                  // framing or pairing is lost: nothing more is framed
	rsSwitched              // a 101: what follows is another protocol's
	rsDone
)

// ResponseParser frames the HTTP/1.x responses of one server-to-client byte
// stream and pairs each with the request it answers: responses come in the
// order of the requests (RFC 9112 9.3), so the connection registers every
// request framed on the client's side with Expect, kept or not, and the
// parser hands the answer of each kept one to ResponseConfig.Answer. It
// satisfies the Stream interface of package reassembly.
//
// It follows RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304; chunked
// when the last transfer coding is; else Content-Length; else the rest of
// the connection. Interim 1xx answers are skipped; a 101 or a CONNECT's 2xx
// end HTTP/1 on the stream. Pairing cannot survive a gap, a malformed
// response or a mid-stream start: from then on every kept request gets a
// nil answer, and counts as unpaired.
type ResponseParser struct {
	cfg   *ResponseConfig
	stats *ResponseStats
	queue []expected
	state uint8

	head   []byte // the head so far, while it is split across calls
	cur    *httpmsg.Answer
	curTag any
	wire   []byte // the body as framed, for an answer being kept
	remain int64
	chunk  httpsyntax.ChunkedScanner
	close  bool // the connection ends after this answer
}

// NewResponseParser returns a parser for a server-to-client stream. mid
// says the stream was joined without its start: nothing on it can be
// paired.
func NewResponseParser(cfg *ResponseConfig, mid bool) *ResponseParser {
	p := &ResponseParser{cfg: cfg, stats: cfg.Stats}
	if p.stats == nil {
		p.stats = &discardResponses
	}
	p.chunk.MaxTrailerBytes = cfg.maxHeader()
	if mid {
		p.state = rsLost
	}
	return p
}

// Expect registers the next request of the connection, in order. tag is
// the consumer's for a kept request, nil for one whose answer nobody wants.
func (p *ResponseParser) Expect(method []byte, tag any) {
	if p.state == rsLost || p.state == rsDone || p.state == rsSwitched {
		p.give(tag, nil)
		return
	}
	p.queue = append(p.queue, expected{tag: tag, head: string(method) == "HEAD", connect: string(method) == "CONNECT"})
	if len(p.queue) > p.cfg.maxOutstanding() {
		p.stats.Overrun.Add(1)
		p.lose(false)
	}
}

// Data frames the next bytes of the stream.
func (p *ResponseParser) Data(b []byte, t time.Time) { p.Feed(b, t) }

// Switched reports whether the server switched protocols (101): Feed
// stopped after the 101's head.
func (p *ResponseParser) Switched() bool { return p.state == rsSwitched }

// Feed is Data for a caller that hands the stream on after a 101: it
// returns how many bytes of b were HTTP/1, all of them unless the server
// switched protocols.
func (p *ResponseParser) Feed(b []byte, t time.Time) int {
	all := len(b)
	for len(b) > 0 {
		var n int
		switch p.state {
		case rsSwitched:
			return all - len(b)
		case rsHead:
			n = p.headData(b, t)
		case rsLength:
			n = int(min(int64(len(b)), p.remain))
			p.keep(b[:n])
			p.remain -= int64(n)
			if p.remain == 0 {
				p.finish(t)
			}
		case rsChunked:
			var done bool
			var err error
			n, done, err = p.chunk.Scan(b)
			p.keep(b[:n])
			if err != nil {
				p.lose(true)
				return all
			}
			if done {
				p.finish(t)
			}
		case rsClose:
			p.keep(b)
			if p.cur != nil {
				p.cur.End = t
			}
			return all
		default:
			return all
		}
		b = b[n:]
	}
	return all
}

// headData gathers a head; once whole, it is parsed and the body framing
// chosen.
func (p *ResponseParser) headData(b []byte, t time.Time) int {
	if len(p.head) == 0 {
		// Stray line ends between responses are skipped, as clients do.
		i := 0
		for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i > 0 {
			return i
		}
		p.cur = &httpmsg.Answer{Proto: httpmsg.HTTP11, Start: t}
	}
	var nl uint8
	if len(p.head) == 0 {
		// The common case: the whole head in one piece, parsed in place.
		if end := scanHeadEnd(&nl, b); end >= 0 {
			if end > p.cfg.maxHeader() {
				p.lose(true)
				return end
			}
			p.startBody(b[:end], t)
			return end
		}
	} else {
		// Look again at the last bytes held, which may begin the blank
		// line, then at b.
		for i := max(len(p.head)-3, 0); i < len(p.head); i++ {
			scanHeadEnd(&nl, p.head[i:i+1])
		}
		if end := scanHeadEnd(&nl, b); end >= 0 {
			p.head = append(p.head, b[:end]...)
			if len(p.head) > p.cfg.maxHeader() {
				p.lose(true)
				return end
			}
			raw := p.head
			p.head = p.head[:0]
			p.startBody(raw, t)
			return end
		}
	}
	if len(p.head)+len(b) > p.cfg.maxHeader() {
		p.lose(true)
		return len(b)
	}
	p.head = append(p.head, b...)
	return len(b)
}

// startBody parses the complete head and chooses how the body is framed.
func (p *ResponseParser) startBody(raw []byte, t time.Time) {
	a := p.cur
	status, minor, ok := parseStatusLine(raw)
	if !ok {
		p.lose(true)
		return
	}
	a.Status = status
	if minor == 0 {
		a.Proto = httpmsg.HTTP10
	}
	var length int64 = -1
	chunked, te, closes, keepAlive := false, false, false, false
	bad := false
	lines := raw[bytes.IndexByte(raw, '\n')+1:]
	for len(lines) > 0 {
		line, rest, _ := bytes.Cut(lines, []byte("\n"))
		lines = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !httpsyntax.IsToken(name) {
			bad = true
			break
		}
		value = httpsyntax.TrimOWS(value)
		switch {
		case httpsyntax.EqualFold(name, "content-length"):
			n, ok := httpsyntax.ParseContentLength(value)
			if !ok || length >= 0 && n != length {
				bad = true
			}
			length = n
		case httpsyntax.EqualFold(name, "transfer-encoding"):
			te, chunked = true, httpsyntax.LastElementIs(value, "chunked")
		case httpsyntax.EqualFold(name, "connection"):
			closes = closes || httpsyntax.HasToken(value, "close")
			keepAlive = keepAlive || httpsyntax.HasToken(value, "keep-alive")
		}
		if len(p.queue) > 0 && p.queue[0].tag != nil && status >= 200 {
			a.Header = append(a.Header, httpmsg.Field{Name: clone(name), Value: clone(value)})
		}
	}
	if bad {
		p.lose(true)
		return
	}
	if status >= 100 && status < 200 {
		p.stats.Interim.Add(1)
		if status == 101 {
			// Switched: what follows is not HTTP/1, and the answer to
			// the request that asked comes in the new protocol (an h2c
			// upgrade's, as HTTP/2's stream 1): its expectation goes
			// without an answer from here. Any later request can have
			// no HTTP/1 answer.
			p.cur, p.head = nil, p.head[:0]
			if len(p.queue) > 0 {
				p.queue[0] = expected{}
				p.queue = p.queue[1:]
			}
			p.failQueue()
			p.state = rsSwitched
			return
		}
		p.cur = nil
		return
	}
	p.stats.Responses.Add(1)
	if len(p.queue) == 0 {
		// An answer nobody asked for: the pairing is lost.
		p.stats.Orphans.Add(1)
		p.lose(false)
		return
	}
	e := p.queue[0]
	p.queue[0] = expected{}
	p.queue = p.queue[1:]
	p.curTag = e.tag
	if e.tag == nil {
		a.Header = nil
	}
	p.close = closes || minor == 0 && !keepAlive
	switch {
	case e.connect && status >= 200 && status < 300:
		p.finish(t)
		p.lose(false) // a tunnel follows
	case e.head || status == 204 || status == 304:
		p.finish(t)
	case te && chunked:
		p.chunk.Reset()
		p.state = rsChunked
	case te:
		p.state, p.close = rsClose, true
	case length > 0:
		p.remain, p.state = length, rsLength
	case length == 0:
		p.finish(t)
	default:
		p.state, p.close = rsClose, true
	}
}

// keep holds body bytes of a kept answer, up to what the cap needs: the
// decoded cap, plus chunk framing.
func (p *ResponseParser) keep(b []byte) {
	a := p.cur
	if a == nil || p.curTag == nil {
		return
	}
	limit := p.cfg.bodyCap()
	if p.state == rsChunked {
		limit = 2*limit + 4096
	}
	if room := limit - len(p.wire); room > 0 {
		p.wire = append(p.wire, b[:min(len(b), room)]...)
	}
	if p.state != rsChunked {
		a.BodyLen += int64(len(b))
	}
}

// finish hands over the answer just framed and goes on with the next.
func (p *ResponseParser) finish(t time.Time) {
	a, tag := p.cur, p.curTag
	chunked := p.state == rsChunked
	p.cur, p.curTag, p.state = nil, nil, rsHead
	if a != nil && tag != nil {
		a.End = t
		p.decodeBody(a, chunked)
		p.give(tag, a)
	}
	p.wire = p.wire[:0]
	if p.close {
		p.state = rsDone
		p.failQueue()
	}
}

// decodeBody moves the kept wire bytes into the answer: as they are, or
// with the chunk framing removed.
func (p *ResponseParser) decodeBody(a *httpmsg.Answer, chunked bool) {
	capBytes := p.cfg.bodyCap()
	if !chunked {
		a.Body = clone(p.wire[:min(len(p.wire), capBytes)])
		a.Truncated = a.BodyLen > int64(len(a.Body))
		return
	}
	var body []byte
	walkChunks(p.wire, func(d []byte) bool {
		body = append(body, d[:min(len(d), capBytes-len(body))]...)
		return len(body) < capBytes
	}, func(name, value []byte) bool {
		a.Trailer = append(a.Trailer, httpmsg.Field{Name: clone(name), Value: clone(value)})
		return true
	})
	a.Body = body
	a.BodyLen = p.chunk.Decoded()
	a.Truncated = a.BodyLen > int64(len(body))
}

// Gap: the bytes lost may hold any number of answers; the pairing is lost.
func (p *ResponseParser) Gap() { p.lose(true) }

// End: the stream is over. An answer delimited by the close is complete;
// every other request still waiting gets no answer.
func (p *ResponseParser) End() {
	if p.state == rsClose && p.cur != nil {
		t := p.cur.End
		if t.IsZero() {
			t = p.cur.Start
		}
		p.finish(t)
	} else if p.cur != nil && p.curTag != nil {
		p.give(p.curTag, nil)
		p.cur, p.curTag = nil, nil
	}
	p.state = rsDone
	p.failQueue()
	p.head, p.wire = nil, nil
}

// lose gives up on the stream: malformed says whether the server's bytes
// broke the framing (counted) or HTTP/1 simply ended (a switch, a tunnel).
func (p *ResponseParser) lose(malformed bool) {
	if malformed {
		p.stats.Malformed.Add(1)
	}
	if p.cur != nil && p.curTag != nil {
		p.give(p.curTag, nil)
	}
	p.cur, p.curTag = nil, nil
	p.state = rsLost
	p.failQueue()
	p.head, p.wire = nil, nil
}

func (p *ResponseParser) failQueue() {
	for _, e := range p.queue {
		p.give(e.tag, nil)
	}
	clear(p.queue)
	p.queue = p.queue[:0]
}

// give hands a kept request's answer, or its absence, to the consumer.
func (p *ResponseParser) give(tag any, a *httpmsg.Answer) {
	if tag == nil {
		return
	}
	if a == nil {
		p.stats.Unpaired.Add(1)
	} else {
		p.stats.Paired.Add(1)
	}
	if p.cfg.Answer != nil {
		p.cfg.Answer(tag, a)
	}
}

// parseStatusLine reads "HTTP/1.x SP 3DIGIT [SP reason]".
func parseStatusLine(raw []byte) (status, minor int, ok bool) {
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	status, minor, ok = httpsyntax.ParseStatusLine(line)
	return status, minor, ok && minor <= 1 && status >= 100
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
