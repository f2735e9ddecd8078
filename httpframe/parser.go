package httpframe

import (
	"github.com/shadowtee/shadowtee/httpsyntax"

	"net/netip"
	"time"
)

// state is what the parser expects next.
type state uint8

const (
	stHead     state = iota // a request head, or empty lines before one
	stBody                  // Content-Length body bytes
	stChunked               // chunked body bytes
	stResync                // framing is lost: look for a request line
	stOpaque                // a tunnel or HTTP/2: ignore everything
	stSwitched              // the client asked for HTTP/2 (h2c): what follows is not ours
	stDone                  // End was called
)

// Parser frames the HTTP/1.x requests of one client-to-server byte stream.
// It satisfies the Stream interface of package reassembly. Its methods
// must not be called concurrently.
//
// A Parser holds no buffer between requests: bytes are kept only while a
// request (or, while resynchronising, a candidate request line) is split
// across Data calls.
type Parser struct {
	cfg            *Config
	stats          *Stats
	client, server netip.AddrPort

	state  state
	after  state // the state that follows the current body
	lineOK bool  // stHead: the request line is complete and accepted
	nl     uint8 // stHead: progress towards the blank line, see scanHeadEnd
	skip   bool  // stBody, stChunked: the body is skipped, not buffered
	m      lineMatch
	tail   *tail // stResync: the last bytes, which may begin a method

	blk    *block    // bytes of the partial request or candidate line
	held   int64     // bytes reserved in the Budget for blk
	req    *Request  // the request whose body is being buffered
	start  time.Time // capture time of the partial request's first byte
	now    time.Time // capture time of the bytes being framed
	remain int64     // stBody: bytes still to come
	chunk  httpsyntax.ChunkedScanner

	watch   func(method []byte, tag any) // see Watch
	upgrade *Request                     // a kept h2c upgrade request, until TakeUpgrade
}

// NewParser returns a Parser for the bytes that client sends to server.
// midStream says that the stream was joined without its start, so the
// first bytes may be in the middle of a request: the parser then looks for
// a plausible request line first. cfg is shared, not copied, and must not
// change while Parsers use it.
func NewParser(cfg *Config, client, server netip.AddrPort, midStream bool) *Parser {
	p := &Parser{cfg: cfg, stats: cfg.Stats, client: client, server: server}
	if p.stats == nil {
		p.stats = &discard
	}
	p.chunk.MaxTrailerBytes = cfg.maxHeader()
	if midStream {
		p.state = stResync
	}
	return p
}

// Data frames the next bytes of the stream. b is only read during the call.
// t is the capture time of these bytes; it becomes the Time of a request
// whose first byte is in b.
func (p *Parser) Data(b []byte, t time.Time) { p.Feed(b, t) }

// Feed is Data for a caller that may hand the rest of the stream to another
// framer: it returns how many bytes of b were HTTP/1. That is all of them,
// unless a request switched the connection to HTTP/2 (Switched): the bytes
// from the returned count on follow the switch.
func (p *Parser) Feed(b []byte, t time.Time) int {
	p.now = t
	all := len(b)
	for len(b) > 0 {
		var n int
		switch p.state {
		case stHead:
			n = p.head(b, t)
		case stBody:
			n = p.body(b)
		case stChunked:
			n = p.chunked(b)
		case stResync:
			n = p.resync(b, t)
		case stOpaque:
			p.stats.OpaqueBytes.Add(uint64(len(b)))
			return all
		case stSwitched:
			return all - len(b)
		default:
			return all
		}
		b = b[n:]
	}
	return all
}

// Switched reports whether a request asked to switch the connection to
// HTTP/2 (Upgrade: h2c) and the parser has stopped after it. Resume makes
// it frame HTTP/1 again, for a server that refused the upgrade.
func (p *Parser) Switched() bool { return p.state == stSwitched }

// Watch makes the parser call fn with every request head it frames soundly,
// in order, mirrored or not, with the tag Keep gave it (nil when it is not
// mirrored): the order in which the server answers, for a response framer
// to pair answers with requests. method is valid during the call only.
func (p *Parser) Watch(fn func(method []byte, tag any)) { p.watch = fn }

// TakeUpgrade returns the h2c upgrade request that made the parser switch,
// with its tag, if it was kept: the connection mirrors it as HTTP/2's
// stream 1, or, if the server refused the upgrade, as HTTP/1 (Emit). The
// caller owns it.
func (p *Parser) TakeUpgrade() (*Request, any) {
	r := p.upgrade
	p.upgrade = nil
	if r == nil {
		return nil, nil
	}
	tag := r.tag
	r.tag = nil
	return r, tag
}

// Emit hands a request the caller took back to the consumer, as the parser
// would have.
func (p *Parser) Emit(r *Request, tag any) {
	r.tag = tag
	p.emit(r)
}

// Resume goes back to framing HTTP/1 requests after Switched.
func (p *Parser) Resume() {
	if p.state == stSwitched {
		p.state = stHead
	}
}

// Gap reports that bytes were lost before the next Data. A request in
// progress is dropped, and the parser looks for the next request line.
func (p *Parser) Gap() {
	if p.state == stOpaque || p.state == stDone || p.state == stSwitched {
		return
	}
	p.abort()
	p.toResync()
}

// End reports that the stream is over. A request in progress is dropped,
// and every buffer goes back to its pool.
func (p *Parser) End() {
	if p.state != stOpaque && p.state != stDone && p.state != stSwitched {
		p.abort()
	}
	if p.upgrade != nil {
		// Nobody took it: the stream ended right after it. The server
		// may have answered it in HTTP/1, so it goes as that.
		r, tag := p.TakeUpgrade()
		p.Emit(r, tag)
	}
	p.dropPartial()
	p.state = stDone
}

// abort counts what is lost when the stream breaks now.
func (p *Parser) abort() {
	switch p.state {
	case stHead:
		if p.blk != nil {
			p.skipped(ReasonIncomplete)
		}
	case stBody, stChunked:
		if !p.skip {
			p.skipped(ReasonIncomplete)
		}
	case stResync:
		if p.blk != nil {
			p.garbage(len(p.blk.b))
		}
		p.dropTail()
	}
}

func (p *Parser) skipped(r Reason) { p.stats.Skipped[r].Add(1) }

// head frames a request head. When nothing is buffered, the head is parsed
// in place from b; otherwise b continues the buffered part.
func (p *Parser) head(b []byte, t time.Time) int {
	buffered := p.blk != nil
	if !buffered {
		// A server ignores empty lines before a request line (RFC 9112
		// 2.2). Like others, skip any run of CR and LF.
		i := 0
		for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i > 0 {
			return i
		}
		p.start = t
		p.m.reset()
		p.lineOK = false
	}
	n := 0
	if !p.lineOK {
		var res matchResult
		n, res = p.m.feed(b, false)
		switch res {
		case matchFail:
			if buffered {
				p.garbage(len(p.blk.b))
			}
			p.malformedLine(n)
			return n
		case matchMore:
			return p.headPartial(b)
		}
		if p.m.h2() {
			p.http2()
			return n
		}
		p.lineOK, p.nl = true, 1
	}
	end := scanHeadEnd(&p.nl, b[n:])
	if end < 0 {
		return p.headPartial(b)
	}
	use := n + end
	if !buffered {
		if use > p.cfg.maxHeader() {
			p.headerTooLarge(use)
			return use
		}
		return use + p.headDone(b[:use], b[use:])
	}
	if len(p.blk.b)+use > p.cfg.maxHeader() {
		p.headerTooLarge(use)
		return use
	}
	if !p.appendPartial(b[:use]) {
		p.skipped(ReasonMemory)
		p.toResync()
		return use
	}
	return use + p.headDone(p.blk.b, nil)
}

// headPartial keeps all of b, which lies inside a head that is not
// complete yet.
func (p *Parser) headPartial(b []byte) int {
	have := 0
	if p.blk != nil {
		have = len(p.blk.b)
	}
	if have+len(b) >= p.cfg.maxHeader() {
		// The head would pass the limit even if it ended with the next byte.
		p.headerTooLarge(len(b))
		return len(b)
	}
	if !p.appendPartial(b) {
		p.skipped(ReasonMemory)
		p.toResync()
	}
	return len(b)
}

// lineDone goes on in stHead after resync accepted a buffered candidate
// line.
func (p *Parser) lineDone() {
	p.state = stHead
	if p.m.h2() {
		p.http2()
		return
	}
	p.lineOK, p.nl = true, 1
}

// malformedLine gives up on a request line whose byte n of the current
// input is wrong; the bytes before it are garbage.
func (p *Parser) malformedLine(n int) {
	p.skipped(ReasonMalformed)
	p.garbage(n)
	p.toResync()
}

// headerTooLarge gives up on a head that passed MaxHeaderBytes, after n
// more bytes of the current input.
func (p *Parser) headerTooLarge(n int) {
	if p.blk != nil {
		n += len(p.blk.b)
	}
	p.skipped(ReasonHeaderTooLarge)
	p.garbage(n)
	p.toResync()
}

// http2 makes the stream opaque after the HTTP/2 connection preface.
func (p *Parser) http2() {
	p.skipped(ReasonHTTP2)
	p.dropPartial()
	p.state = stOpaque
}
