package h2frame

import (
	"errors"
	"net/netip"
	"time"

	"golang.org/x/net/http2"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// Errors a streaming request's BodyStream is aborted with.
var (
	// ErrReset: the client reset the stream.
	ErrReset = errors.New("h2frame: the client reset the stream")
	// ErrRefused: the server reset the stream or said, in GOAWAY, that it
	// never processed it.
	ErrRefused = errors.New("h2frame: the server reset or refused the stream")
	// ErrGap: the capture lost bytes of the client's side of the
	// connection.
	ErrGap = errors.New("h2frame: the capture lost bytes of the stream")
	// ErrEnded: the connection ended before the stream did.
	ErrEnded = errors.New("h2frame: the connection ended before the stream")
	// ErrProtocol: the client broke the protocol and the connection's
	// client side was given up.
	ErrProtocol = errors.New("h2frame: the connection broke the protocol")
	// ErrMemory: Config.Budget could not spare the bytes to hold more of
	// the body for its reader.
	ErrMemory = errors.New("h2frame: the memory budget for bodies still arriving is spent")
)

type dirState uint8

const (
	stPreface dirState = iota // the client connection preface is next
	stFrames                  // aligned on frame headers
	stSearch                  // looking for frame alignment
	stDead                    // given up
)

// direction is the framing and HPACK state of one side of a connection.
type direction struct {
	server  bool
	state   dirState
	certain bool // framed from its start: a broken frame is the peer's fault
	joined  bool // its start was not seen (mid-stream join, gap)
	first   bool // stSearch: nothing was seen yet, the preface may still come

	dec decoder

	part  *block    // bytes of an incomplete frame (or the search window)
	partT time.Time // capture time of part's first byte
	skip  uint32    // payload bytes of the current frame still to skip

	// maxFrame is the largest frame the peer allowed this side in
	// SETTINGS, when seen (frameKnown): it bounds plausible frames once
	// aligned by a search. The search itself takes frames of at most 16
	// KiB, so that three always fit its window and it always moves on.
	maxFrame   uint32
	frameKnown bool

	hb headerBlock
}

// frameLimit is the longest plausible frame of d: what its peer allowed,
// when seen, else the configured cap.
func (d *direction) frameLimit(cap uint32) uint32 {
	if d.frameKnown {
		return min(d.maxFrame, cap)
	}
	return cap
}

// headerBlock is a header block that spans frames (HEADERS or PUSH_PROMISE
// and CONTINUATION).
type headerBlock struct {
	open      bool
	stream    uint32
	endStream bool
	push      bool
	tooLarge  bool
	buf       *block
	t         time.Time
}

func (hb *headerBlock) reset() {
	putBlock(hb.buf)
	*hb = headerBlock{}
}

// Conn decodes the two directions of one captured HTTP/2 cleartext
// connection. Its methods must not be called concurrently: the agent calls
// them from the goroutine that reassembles the connection. They never
// block, and a Conn holds no buffer between frames but its HPACK tables,
// its streams' held requests and answers, and the start of an incomplete
// frame.
type Conn struct {
	cfg            *Config
	lim            limits
	st             *Stats
	budget         Budget // cfg.Budget; nil: nothing is charged
	client, server netip.AddrPort

	cli, srv direction

	streams []*stream
	lastID  uint32 // highest client stream id seen
	due     int64  // earliest StreamAfter deadline of a held request, Unix ns; 0: none
	ended   bool

	rsink requestSink
	asink answerSink
}

// NewConn returns a Conn for a connection from client to server. midStream
// says that the connection was joined without its start: both directions
// then look for frame alignment first, and header blocks are decoded as far
// as the HPACK entries seen since allow. cfg is shared, not copied, and must
// not change while Conns use it.
func NewConn(cfg *Config, client, server netip.AddrPort, midStream bool) *Conn {
	c := &Conn{cfg: cfg, lim: cfg.limits(), st: cfg.Stats, budget: cfg.Budget, client: client, server: server}
	if c.st == nil {
		c.st = &discard
	}
	c.st.Conns.Add(1)
	for _, d := range []*direction{&c.cli, &c.srv} {
		d.server = d == &c.srv
		d.maxFrame = minMaxFrameSize
		d.dec = newDecoder(c.lim.maxTable)
		switch {
		case midStream:
			d.state, d.joined, d.first = stSearch, true, !d.server
			d.dec.lose()
		case d.server:
			d.state, d.certain = stFrames, true
		default:
			d.state, d.certain = stPreface, true
		}
	}
	if midStream {
		c.st.MidStream.Add(1)
		c.st.StatesLost.Add(1)
	}
	if !c.lim.answerOn {
		c.srv.state = stDead
	}
	return c
}

// ClientData takes the next bytes the client sent, in order: the
// connection preface first unless the connection was joined mid-stream. b
// is only read during the call; t is the capture time of these bytes.
func (c *Conn) ClientData(b []byte, t time.Time) {
	c.clock(t)
	c.feed(&c.cli, b, t)
}

// ServerData takes the next bytes the server sent, in order (after the 101
// response of an upgraded connection). It ignores them when Config.Answer
// is nil.
func (c *Conn) ServerData(b []byte, t time.Time) {
	c.clock(t)
	c.feed(&c.srv, b, t)
}

// ClientGap reports that bytes the client sent were lost before its next
// Data. Requests still arriving are dropped or aborted, since the lost
// bytes may have been theirs; the client's HPACK state is lost, and framing
// resumes at the next plausible frame.
func (c *Conn) ClientGap() {
	if c.ended || c.cli.state == stDead {
		return
	}
	for i := 0; i < len(c.streams); {
		s := c.streams[i]
		if !s.clientDone {
			c.cutRequest(s, ReasonGap, ErrGap)
		}
		if c.streams[i] == s && !c.maybeRemove(i) {
			i++
		}
	}
	c.lose(&c.cli)
}

// ServerGap reports that bytes the server sent were lost before its next
// Data: the answers still arriving are lost.
func (c *Conn) ServerGap() {
	if c.ended || c.srv.state == stDead {
		return
	}
	for i := 0; i < len(c.streams); {
		s := c.streams[i]
		if s.wantAnswer && !s.answered {
			c.answerLost(s)
		}
		if !c.maybeRemove(i) {
			i++
		}
	}
	c.lose(&c.srv)
}

// lose puts d back to searching, with its HPACK state forgotten.
func (c *Conn) lose(d *direction) {
	d.hb.reset()
	putBlock(d.part)
	d.part, d.skip = nil, 0
	d.state, d.certain, d.joined, d.first = stSearch, false, true, false
	d.dec.lose()
	c.st.StatesLost.Add(1)
}

// Tick moves the capture clock to now, so that StreamAfter fires for held
// requests that receive nothing.
func (c *Conn) Tick(now time.Time) { c.clock(now) }

// End reports that the connection is over: streaming bodies are aborted,
// held requests dropped, answers still awaited reported lost, and every
// buffer freed. Nothing is called after it.
func (c *Conn) End() {
	if c.ended {
		return
	}
	for _, s := range c.streams {
		if !s.clientDone {
			c.cutRequest(s, ReasonEnded, ErrEnded)
		}
		if s.wantAnswer && !s.answered && s.emitted {
			c.answerLost(s)
		}
		s.free()
	}
	clear(c.streams)
	c.streams = nil
	for _, d := range []*direction{&c.cli, &c.srv} {
		d.hb.reset()
		putBlock(d.part)
		d.part = nil
		d.dec.free()
		d.state = stDead
	}
	c.ended = true
}

// giveUp stops framing d for good.
func (c *Conn) giveUp(d *direction, why Reason) {
	c.st.GaveUp[why].Add(1)
	d.hb.reset()
	putBlock(d.part)
	d.part, d.state = nil, stDead
	d.dec.free()
	if !d.server {
		for i := 0; i < len(c.streams); {
			s := c.streams[i]
			if !s.clientDone {
				c.cutRequest(s, why, ErrProtocol)
			}
			if !c.maybeRemove(i) {
				i++
			}
		}
	} else {
		for i := 0; i < len(c.streams); {
			s := c.streams[i]
			if s.wantAnswer && !s.answered {
				c.answerLost(s)
			}
			if !c.maybeRemove(i) {
				i++
			}
		}
	}
}

// recover handles a frame that cannot be right: the peer's fault when d was
// framed from its start, else a sign that alignment was lost.
func (c *Conn) recover(d *direction, why Reason) {
	if d.certain {
		c.giveUp(d, why)
		return
	}
	c.lose(d)
}

// feed frames b, bytes of direction d. It never recurses: when a search
// finds alignment, the window and the rest of b become the input.
func (c *Conn) feed(d *direction, b []byte, t time.Time) {
	var own *block
	for len(b) > 0 && !c.ended {
		switch d.state {
		case stDead:
			b = nil
		case stPreface:
			b = c.preface(d, b, t)
		case stFrames:
			b = c.frames(d, b, t)
		case stSearch:
			var off int
			var found bool
			if b, off, found = c.search(d, b, t); found {
				w := d.part
				d.part = nil
				w = appendBlock(w, b)
				putBlock(own)
				own, b = w, w.b[off:]
			}
		}
	}
	putBlock(own)
}

// preface matches the client connection preface.
func (c *Conn) preface(d *direction, b []byte, t time.Time) []byte {
	have := 0
	if d.part != nil {
		have = len(d.part.b)
	}
	n := min(len(b), len(Preface)-have)
	if string(b[:n]) != Preface[have:have+n] {
		c.giveUp(d, ReasonNoPreface)
		return nil
	}
	if have+n < len(Preface) {
		d.part = appendBlock(d.part, b[:n])
		return nil
	}
	putBlock(d.part)
	d.part, d.state = nil, stFrames
	return b[n:]
}

// search takes bytes of b into the search window until a frame start is
// found in it. It returns the bytes of b it did not take and, when found,
// the offset in the window (d.part) where frames start.
func (c *Conn) search(d *direction, b []byte, t time.Time) (rest []byte, off int, found bool) {
	for len(b) > 0 {
		have := 0
		if d.part == nil {
			d.partT = t
		} else {
			have = len(d.part.b)
		}
		n := min(len(b), c.lim.searchLimit-have)
		d.part = appendBlock(d.part, b[:n])
		b = b[n:]
		w := d.part.b
		if d.first {
			if len(w) < len(Preface) && CouldBePreface(w) {
				continue
			}
			d.first = false
			if IsPreface(w) {
				// The connection's start after all: everything is known.
				d.state, d.certain, d.joined = stFrames, true, false
				d.dec = newDecoder(c.lim.maxTable)
				return b, len(Preface), true
			}
		}
		off, st := findAlignment(w, d.server, minMaxFrameSize, len(w) >= c.lim.searchLimit)
		c.st.GarbageBytes.Add(uint64(off))
		if st == alignFound {
			c.st.Resyncs.Add(1)
			d.state = stFrames
			return b, off, true
		}
		if n := copy(w, w[off:]); n > 0 {
			d.part.b = w[:n]
		} else {
			putBlock(d.part)
			d.part = nil
		}
	}
	return nil, 0, false
}

// frames reads frames from b, holding the start of a frame that b does not
// finish. It returns what it did not consume.
func (c *Conn) frames(d *direction, b []byte, t time.Time) []byte {
	if d.skip > 0 {
		n := min(uint32(len(b)), d.skip)
		d.skip -= n
		return b[n:]
	}
	if d.part != nil {
		// Complete the header, then the frame, from b.
		have := len(d.part.b)
		if have < frameHeaderLen {
			n := min(len(b), frameHeaderLen-have)
			d.part.b = append(d.part.b, b[:n]...)
			b = b[n:]
			if len(d.part.b) < frameHeaderLen {
				return nil
			}
			h := parseHeader(d.part.b)
			if !c.admit(d, &h) {
				return b
			}
			if !c.wanted(d, &h) {
				putBlock(d.part)
				d.part, d.skip = nil, h.length
				return b
			}
		}
		// The block grows with the bytes that arrive, not to the length
		// the header announces: a client that sends only frame headers
		// makes the tee hold nothing it did not send.
		h := parseHeader(d.part.b)
		total := frameHeaderLen + int(h.length)
		n := min(len(b), total-len(d.part.b))
		d.part = appendBlock(d.part, b[:n])
		b = b[n:]
		if len(d.part.b) < total {
			return nil
		}
		p := d.part
		d.part = nil
		c.frame(d, &h, p.b, d.partT)
		putBlock(p)
		return b
	}
	if len(b) < frameHeaderLen {
		d.part, d.partT = appendBlock(nil, b), t
		return nil
	}
	h := parseHeader(b)
	if !c.admit(d, &h) {
		return b[1:]
	}
	if !c.wanted(d, &h) {
		b = b[frameHeaderLen:]
		n := min(uint32(len(b)), h.length)
		d.skip = h.length - n
		return b[n:]
	}
	total := frameHeaderLen + int(h.length)
	if len(b) < total {
		d.part, d.partT = appendBlock(nil, b), t
		return nil
	}
	c.frame(d, &h, b[:total], t)
	return b[total:]
}

// admit checks a frame header before its payload is read. On false, d is
// dead or searching again (the caller's remaining bytes go to the search).
func (c *Conn) admit(d *direction, h *frameHeader) bool {
	c.st.Frames.Add(1)
	ok, why := true, ReasonProtocol
	switch {
	case h.length > c.lim.maxFrame:
		ok, why = false, ReasonFrameTooLarge
	case !h.valid():
		ok = false
	case !d.certain && !h.plausible(d.server, d.frameLimit(c.lim.maxFrame), false):
		ok = false
	case d.hb.open:
		ok = h.typ == http2.FrameContinuation && h.stream == d.hb.stream
	case h.typ == http2.FrameContinuation:
		// A CONTINUATION of a block begun before the capture joined: its
		// insertions into the table are unknown.
		ok = d.joined
	}
	if !ok {
		putBlock(d.part)
		d.part = nil
		c.recover(d, why)
	}
	return ok
}

// wanted says whether a frame's payload is needed; the rest are skipped
// without being held.
func (c *Conn) wanted(d *direction, h *frameHeader) bool {
	switch h.typ {
	case http2.FrameHeaders, http2.FramePushPromise, http2.FrameSettings,
		http2.FrameRSTStream, http2.FrameGoAway:
		return true
	case http2.FrameContinuation:
		if !d.hb.open {
			// Its block began before the join: the table cannot follow it.
			if d.dec.live() > 0 || d.dec.complete {
				d.dec.lose()
				c.st.StatesLost.Add(1)
			}
			return false
		}
		return true
	case http2.FrameData:
		s := c.find(h.stream)
		if s != nil && c.wantsData(d, s) {
			return true
		}
		c.st.SkippedDataBytes.Add(uint64(h.length))
		if s != nil && h.flags.Has(http2.FlagDataEndStream) {
			c.dataEnd(d, s, h)
		}
		return false
	}
	// PING, WINDOW_UPDATE, PRIORITY (checked by valid) and unknown types.
	return false
}

// frame handles one whole frame, raw with its header.
func (c *Conn) frame(d *direction, h *frameHeader, raw []byte, t time.Time) {
	payload := raw[frameHeaderLen:]
	switch h.typ {
	case http2.FrameHeaders:
		frag, ok := headersFragment(h, payload)
		if !ok {
			c.recover(d, ReasonProtocol)
			return
		}
		d.hb = headerBlock{open: true, stream: h.stream, endStream: h.flags.Has(http2.FlagHeadersEndStream), t: t}
		c.fragment(d, frag, h.flags.Has(http2.FlagHeadersEndHeaders))
	case http2.FrameContinuation:
		c.fragment(d, payload, h.flags.Has(http2.FlagContinuationEndHeaders))
	default:
		f, fr, err := readFrame(raw)
		if err != nil {
			putFramer(f)
			c.recover(d, ReasonProtocol)
			return
		}
		c.control(d, fr, t)
		putFramer(f)
	}
}

// control handles the frames the Framer parsed.
func (c *Conn) control(d *direction, fr http2.Frame, t time.Time) {
	switch f := fr.(type) {
	case *http2.DataFrame:
		if s := c.find(f.StreamID); s != nil {
			if d.server {
				c.answerData(s, f.Data(), f.StreamEnded(), t)
			} else {
				c.requestData(s, f.Data(), f.StreamEnded(), t)
			}
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return
		}
		if v, ok := f.Value(http2.SettingMaxFrameSize); ok && v >= minMaxFrameSize && v <= maxFrameLimit {
			// A side's SETTINGS bound what the other side sends.
			other := &c.srv
			if d.server {
				other = &c.cli
			}
			other.maxFrame, other.frameKnown = v, true
		}
	case *http2.RSTStreamFrame:
		c.st.Resets.Add(1)
		if s := c.find(f.StreamID); s != nil {
			c.reset(s, d.server)
		}
	case *http2.GoAwayFrame:
		c.st.GoAways.Add(1)
		if d.server {
			c.goAway(f.LastStreamID)
		}
	case *http2.PushPromiseFrame:
		c.st.Pushes.Add(1)
		d.hb = headerBlock{open: true, stream: f.StreamID, push: true, t: t}
		c.fragment(d, f.HeaderBlockFragment(), f.HeadersEnded())
	}
}

// fragment adds a header block fragment; the block is decoded once it is
// whole. A block in one frame is decoded where it lies.
func (c *Conn) fragment(d *direction, frag []byte, end bool) {
	hb := &d.hb
	if end && hb.buf == nil && !hb.tooLarge {
		c.headerBlock(d, frag)
		hb.reset()
		return
	}
	if !hb.tooLarge {
		if hb.buf != nil && len(hb.buf.b)+len(frag) > c.lim.maxBlock {
			hb.tooLarge = true
			putBlock(hb.buf)
			hb.buf = nil
		} else {
			hb.buf = appendBlock(hb.buf, frag)
		}
	}
	if !end {
		return
	}
	if hb.tooLarge {
		// Not held, so not decoded: the table cannot follow.
		d.dec.lose()
		c.st.StatesLost.Add(1)
		c.blockUnread(d, ReasonHeaderTooLarge)
	} else {
		c.headerBlock(d, hb.buf.b)
	}
	hb.reset()
}

// headerBlock decodes a whole block for the stream it belongs to.
func (c *Conn) headerBlock(d *direction, block []byte) {
	hb := &d.hb
	switch {
	case hb.push:
		c.discardBlock(d, block)
	case d.server:
		c.answerBlock(d, hb.stream, block, hb.endStream, hb.t)
	default:
		c.requestBlock(d, hb.stream, block, hb.endStream, hb.t)
	}
}

// discardBlock decodes a block for the table's sake only.
func (c *Conn) discardBlock(d *direction, block []byte) {
	if d.dec.decode(block, nil) != nil {
		c.decodeFailed(d)
	}
}

// decodeFailed forgets a table that a block could not be decoded with.
func (c *Conn) decodeFailed(d *direction) {
	d.dec.lose()
	c.st.StatesLost.Add(1)
}

// blockUnread handles a block that could not be decoded at all.
func (c *Conn) blockUnread(d *direction, why Reason) {
	hb := &d.hb
	if hb.push {
		return
	}
	s := c.find(hb.stream)
	if d.server {
		if s != nil && s.wantAnswer && !s.answered {
			c.answerLost(s)
			c.removeStream(s)
		}
		return
	}
	switch {
	case s != nil:
		c.cutRequest(s, why, ErrProtocol)
		c.removeStream(s)
	case hb.stream > c.lastID:
		c.lastID = hb.stream
		c.st.Skipped[why].Add(1)
	}
}

// clock moves the capture clock, and emits as streaming the held requests
// whose StreamAfter has passed.
func (c *Conn) clock(t time.Time) {
	if c.due == 0 || t.IsZero() || c.ended {
		return
	}
	now := t.UnixNano()
	if now < c.due {
		return
	}
	c.due = 0
	for i := 0; i < len(c.streams); {
		s := c.streams[i]
		switch {
		case s.req == nil:
		case s.due <= now:
			if !c.emitStreaming(s) && c.maybeRemove(i) {
				continue
			}
		case c.due == 0 || s.due < c.due:
			c.due = s.due
		}
		i++
	}
}

// newAnswer makes the Answer to be handed over.
func newAnswer(status int, header []httpmsg.Field, t time.Time) *httpmsg.Answer {
	return &httpmsg.Answer{Proto: httpmsg.HTTP2, Status: status, Header: header, Start: t}
}

// NextDeadline returns when Tick next has work to do: the StreamAfter of
// the earliest held request. It is the zero time when nothing waits for
// time to pass, so that a quiet agent need not wake up for the connection.
func (c *Conn) NextDeadline() time.Time {
	if c.due == 0 || c.ended {
		return time.Time{}
	}
	return time.Unix(0, c.due)
}
