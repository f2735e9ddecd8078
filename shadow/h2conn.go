package shadow

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shadowtee/shadowtee/httpmsg"
)

const (
	// defaultPeerStreams is what a connection being opened is expected to
	// carry before any shadow's SETTINGS was seen (x/net's first guess).
	defaultPeerStreams = 100
	// unlimitedStreams caps the streams of a shadow that sets no
	// SETTINGS_MAX_CONCURRENT_STREAMS (x/net's cap too).
	unlimitedStreams = 1000
	// The windows we give the shadow: answers are read and thrown away at
	// once (or kept up to AnswerBodyCap), so large windows cost no memory
	// and save the shadow waiting for WINDOW_UPDATE.
	recvStreamWindow = 4 << 20
	recvConnWindow   = 16 << 20
	// initialWindow and defaultMaxFrame are HTTP/2's until the shadow's
	// SETTINGS say otherwise; we read frames of defaultMaxFrame at most.
	initialWindow   = 65535
	defaultMaxFrame = 16384
	maxWindow       = 1<<31 - 1
	maxStreamID     = 1<<31 - 1
	// maxWriteBatch bounds the DATA one write carries, so that one large
	// body does not hold the others back for long (streams take turns,
	// one frame each).
	maxWriteBatch = 64 << 10
	// maxBacklog is how much may wait for a connection's writer before the
	// connection takes no new stream: a shadow that stops reading holds
	// this much at most, plus the control frames it asked for.
	maxBacklog = 256 << 10
	// maxRequeues bounds how often one request is put back in line after
	// a GOAWAY that did not take it (net/http's Transport gives up after
	// as many retries).
	maxRequeues = 6
)

var errNoH2 = errors.New("shadow did not negotiate h2")

// h2conn is one HTTP/2 connection to the shadow. Its reader goroutine
// (run) dials it, exchanges the preface and SETTINGS, then reads frames
// for its whole life and ends the streams they answer. Its writer
// goroutine (writeLoop) writes what the others append to out, and the
// DATA of the streams in sendq as the windows allow. Everything but the
// socket, the reader's framer and HPACK decoder is guarded by the
// sender's lock.
type h2conn struct {
	s      *HTTP2Sender
	nc     net.Conn // TCP, or TLS over it
	raw    net.Conn // the TCP connection, closed to end nc without waiting
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: there may be something to write
	wdone  chan struct{} // closed when the writer goroutine has ended
	// reads counts the frames read on streams (not stream 0): a stream
	// that times out with none read since it started makes the sender
	// PING the shadow, which may be gone rather than slow. SETTINGS, PING
	// and the connection's WINDOW_UPDATE do not count: a server's HTTP/2
	// layer sends them while its handlers hang, and SETTINGS ACK comes
	// just after the start.
	reads atomic.Uint64

	// The reader's.
	fr   *http2.Framer
	dec  *hpack.Decoder
	blk  headerBlock
	work h2work
	redo []*record
	ids  []uint32

	// The writer's.
	wwork h2work
	wdl   time.Time // the write deadline set on nc

	// Guarded by s.mu.
	streams    map[uint32]*h2stream
	active     int // streams on the connection
	maxStreams int // the shadow's SETTINGS_MAX_CONCURRENT_STREAMS
	nextID     uint32
	open       bool // in s.conns: its SETTINGS arrived
	dead       bool // takes no new stream
	closing    bool // its socket is being closed
	shut       bool // closed by Close: what it carries fails with FailShutdown
	hung       bool // a PING went unanswered
	// A PING sent when a stream timed out with nothing read on any stream
	// since it started, and when the connection is taken for gone.
	pingOut   bool
	pingDue   time.Time
	goAway    bool // the shadow sent GOAWAY
	causeSet  bool
	cause     CloseCause
	gauge     connGauge
	idleUntil time.Time

	// The write side, guarded by s.mu.
	cur             *h2stream // the stream startLocked is opening, for the visitors
	visitBody       func([]byte) bool
	visitTrailers   func(_, _ []byte) bool
	enc             *hpack.Encoder
	hbuf            bytes.Buffer // one header block, encoded
	fields          []httpmsg.Field
	fbuf            []byte
	interned        map[string]string
	out, spare      []byte // frames for the writer; its other buffer
	outBase         int64  // bytes handed to the writer before out
	flushed         int64  // bytes written to the socket
	ends            uint64 // requests whose last frame is in out
	sendq           []*h2stream
	pumpq           []*h2stream // streaming requests whose body goroutine starts once their HEADERS are written
	window          int64       // what the shadow lets us send on the connection
	peerInit        int64       // its SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame        int         // its SETTINGS_MAX_FRAME_SIZE
	recvUnacked     int64       // DATA read and not yet given back in WINDOW_UPDATE
	closeAfterFlush bool        // GOAWAY is in out: close once it is written
	werr            error
}

// headerBlock is what the reader decodes of one header block.
type headerBlock struct {
	id        uint32
	end       bool // END_STREAM
	keep      bool // keep the fields (SenderConfig.Answer)
	bad       bool // malformed: a stream error
	sawStatus bool
	regular   bool // a regular field was seen (pseudo-headers come first)
	status    int
	grpc      uint8
	size      int
	start     time.Time
	fields    fieldList
}

// h2stream is one request on a connection.
type h2stream struct {
	id     uint32
	rec    *record
	window int64  // what the shadow lets us send on it
	reads  uint64 // the connection's reads when it started
	hdrEnd int64  // where its HEADERS end in the connection's output
	endAt  int64  // where its END_STREAM frame ends, once endSent

	// A whole body: its pieces, and how far they are sent.
	pieces   [][]byte
	pi, off  int
	trailers bool // it has trailers to send after the body

	// A streaming body: the chunks taken and how far they are sent.
	bs      *httpmsg.BodyStream
	chunks  [][]byte
	ci, cof int
	eof     bool          // the stream ended: trailers (or END_STREAM) may go
	pumped  bool          // its body goroutine runs: it cannot be sent again
	drained chan struct{} // the writer sent the chunks taken
	cancel  context.CancelFunc

	inSendq bool
	endSent bool // its END_STREAM is in the output
	ended   bool // taken off the connection

	// The answer.
	final       bool // the final HEADERS arrived
	status      int
	grpc        uint8
	recvUnacked int64
	cp          *capture
	start       time.Time
}

var streamPool = sync.Pool{New: func() any { return new(h2stream) }}

func newH2Conn(s *HTTP2Sender) *h2conn {
	c := &h2conn{
		s: s, wake: make(chan struct{}, 1), wdone: make(chan struct{}),
		streams: map[uint32]*h2stream{}, maxStreams: unlimitedStreams, nextID: 1,
		interned: map[string]string{},
		window:   initialWindow, peerInit: initialWindow, maxFrame: defaultMaxFrame,
	}
	c.ctx, c.cancel = context.WithCancel(s.abortCtx)
	// Made once: a closure per request would allocate.
	c.visitBody = func(b []byte) bool {
		if len(b) > 0 {
			c.cur.pieces = append(c.cur.pieces, b)
		}
		return true
	}
	c.visitTrailers = func(_, _ []byte) bool { c.cur.trailers = true; return false }
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.dec = hpack.NewDecoder(4096, c.emit)
	c.dec.SetMaxStringLength(maxHeaderBytes)
	return c
}

// kick wakes the writer.
func (c *h2conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// canTakeLocked reports whether c takes a new stream now.
func (c *h2conn) canTakeLocked() bool {
	// Not while a PING is out: the shadow may be gone.
	return c.open && !c.dead && !c.pingOut && c.active < c.maxStreams && len(c.out) < maxBacklog
}

// run is the connection's reader goroutine: it dials, shakes hands, then
// reads.
func (c *h2conn) run() {
	s := c.s
	defer s.wg.Done()
	defer c.cancel()
	nc, raw, reason, err := s.ep.connect(c.ctx, s.set.timeout)
	if err == nil && s.ep.tls != nil {
		if tc, ok := nc.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol != "h2" {
			raw.Close()
			reason, err = FailTLS, errNoH2
		}
	}
	if err != nil {
		s.dialFailed(reason)
		return
	}
	c.nc, c.raw = nc, raw
	c.fr = http2.NewFramer(nil, bufio.NewReaderSize(nc, readBufferSize))
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(defaultMaxFrame)

	// Our preface and SETTINGS go first, with the connection's window;
	// the shadow's SETTINGS must come within Timeout. Streams are opened
	// only once they have, so that its SETTINGS_MAX_CONCURRENT_STREAMS is
	// honoured from the first one.
	s.mu.Lock()
	c.out = append(c.out, http2.ClientPreface...)
	c.out = appendFrameHeader(c.out, 3*6, http2.FrameSettings, 0, 0)
	c.out = appendSetting(c.out, http2.SettingEnablePush, 0)
	c.out = appendSetting(c.out, http2.SettingInitialWindowSize, recvStreamWindow)
	c.out = appendSetting(c.out, http2.SettingMaxHeaderListSize, maxHeaderBytes)
	c.out = appendWindowUpdate(c.out, 0, recvConnWindow-initialWindow)
	s.mu.Unlock()
	s.wg.Add(1)
	go c.writeLoop()
	c.kick()
	stop := context.AfterFunc(c.ctx, func() { raw.Close() })
	raw.SetReadDeadline(time.Now().Add(s.set.timeout))
	err = c.handshake()
	raw.SetReadDeadline(time.Time{})
	if !stop() && err == nil {
		err = context.Canceled
	}
	if err != nil {
		raw.Close()
		c.cancel()
		<-c.wdone
		reason := FailConnect
		if h2Protocol(err) {
			reason = FailProtocol
		}
		s.dialFailed(reason)
		return
	}

	now := time.Now()
	s.mu.Lock()
	s.connecting--
	s.stats.ConnectionsConnecting.Add(-1)
	s.stats.ConnectionsOpened.Add(1)
	if s.aborting || (s.closed && s.pending.len() == 0) {
		s.mu.Unlock()
		raw.Close()
		c.cancel()
		<-c.wdone
		s.stats.ConnectionsClosed[CloseShutdown].Add(1)
		return
	}
	s.bo.succeeded()
	s.conns = append(s.conns, c)
	c.open = true
	s.peerStreams = c.maxStreams
	s.stats.ConnectionsOpen.Add(1)
	c.gauge.set(s.stats, gaugeIdle)
	s.takePendingLocked(c, now, &c.work)
	c.releasedLocked(now, &c.work)
	s.maybeDialLocked(now) // a dial ended: room for the next
	s.mu.Unlock()
	c.kick()
	s.flush(&c.work)
	c.readLoop()
}

// handshake reads the shadow's first frame, which must be its SETTINGS.
func (c *h2conn) handshake() error {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return err
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	var w h2work
	c.s.mu.Lock()
	err = c.settingsLocked(sf, &w)
	c.s.mu.Unlock()
	return err
}

// readLoop reads frames until the connection ends, then disposes of what
// it carried.
func (c *h2conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.streamFailed(se.StreamID, se.Code)
				continue
			}
			c.fail(err)
			return
		}
		if f.Header().StreamID != 0 {
			c.reads.Add(1)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			err = c.onData(f)
		case *http2.HeadersFrame:
			err = c.onHeaders(f.StreamID, f.HeaderBlockFragment(), true, f.HeadersEnded(), f.StreamEnded())
		case *http2.ContinuationFrame:
			err = c.onHeaders(f.StreamID, f.HeaderBlockFragment(), false, f.HeadersEnded(), false)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.s.mu.Lock()
				err = c.settingsLocked(f, &c.work)
				c.s.takePendingLocked(c, time.Now(), &c.work)
				c.s.mu.Unlock()
				c.s.flush(&c.work)
			}
		case *http2.WindowUpdateFrame:
			err = c.onWindowUpdate(f)
		case *http2.PingFrame:
			c.onPing(f)
		case *http2.RSTStreamFrame:
			c.onReset(f)
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			// We said SETTINGS_ENABLE_PUSH 0.
			err = http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// settingsLocked applies the shadow's SETTINGS and acknowledges them.
func (c *h2conn) settingsLocked(f *http2.SettingsFrame, w *h2work) error {
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = int(min(st.Val, unlimitedStreams))
			if c.open {
				c.s.peerStreams = c.maxStreams
			}
		case http2.SettingInitialWindowSize:
			// Every open stream's window moves by the change, and may
			// go below zero (RFC 9113 6.9.2).
			delta := int64(st.Val) - c.peerInit
			c.peerInit = int64(st.Val)
			for _, x := range c.streams {
				x.window += delta
				if delta > 0 && !x.endSent {
					c.queueLocked(x)
				}
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(st.Val)
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSizeLimit(st.Val)
		}
		return nil
	})
	c.out = appendFrameHeader(c.out, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	w.kick(c)
	return err
}

// emit is the HPACK decoder's: it notes what the sender needs of a field
// of the block being read.
func (c *h2conn) emit(hf hpack.HeaderField) {
	b := &c.blk
	if b.bad {
		return
	}
	b.size += len(hf.Name) + len(hf.Value) + 32
	if strings.HasPrefix(hf.Name, ":") {
		if hf.Name != ":status" || b.sawStatus || b.regular || len(hf.Value) != 3 {
			b.bad = true
			return
		}
		b.sawStatus = true
		for i := range 3 {
			d := hf.Value[i]
			if d < '0' || d > '9' {
				b.bad = true
				return
			}
			b.status = b.status*10 + int(d-'0')
		}
		return
	}
	b.regular = true
	if hf.Name == "grpc-status" {
		b.grpc = grpcCode(hf.Value)
	}
	if b.keep {
		b.fields.addString(hf.Name, hf.Value)
	}
}

// onHeaders reads one HEADERS or CONTINUATION frame of the shadow's.
func (c *h2conn) onHeaders(id uint32, frag []byte, first, endHeaders, endStream bool) error {
	b := &c.blk
	if first {
		if id%2 == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		b.fields.reset()
		*b = headerBlock{id: id, end: endStream, keep: c.s.l.answer != nil, start: time.Now(), fields: b.fields}
	}
	// Every block is decoded, also those of streams we no longer follow:
	// the decoder's table must see every one.
	if _, err := c.dec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if b.size += len(frag); b.size > maxHeaderBytes {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if !endHeaders {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	s := c.s
	now := time.Now()
	w := &c.work
	s.mu.Lock()
	err := c.blockLocked(now, w)
	s.mu.Unlock()
	s.flush(w)
	return err
}

// blockLocked applies a whole header block to its stream.
func (c *h2conn) blockLocked(now time.Time, w *h2work) error {
	b := &c.blk
	st := c.streams[b.id]
	if st == nil {
		if b.id >= c.nextID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // a stream never opened
		}
		return nil // one we reset or ended
	}
	if st.start.IsZero() {
		st.start = b.start
	}
	switch {
	case b.bad:
		c.resetLocked(st, http2.ErrCodeProtocol, FailProtocol, now, w)
		return nil
	case !st.final && !b.sawStatus, st.final && (b.sawStatus || !b.end):
		// An answer must start with :status; a block after the final
		// one holds trailers, ends the stream, and has no pseudo-header.
		c.resetLocked(st, http2.ErrCodeProtocol, FailProtocol, now, w)
		return nil
	case !st.final && b.status < 200:
		if b.end || b.status == 101 || b.status < 100 {
			c.resetLocked(st, http2.ErrCodeProtocol, FailProtocol, now, w)
		}
		return nil // 100 Continue and friends: the final answer follows
	}
	if b.grpc != grpcNone {
		st.grpc = b.grpc
	}
	if !st.final {
		st.final, st.status = true, b.status
		if st.cp != nil {
			st.cp.header.copyFrom(&b.fields)
		}
	} else if st.cp != nil {
		st.cp.trailer.copyFrom(&b.fields)
	}
	if b.end {
		c.answeredLocked(st, now, w)
	}
	return nil
}

// onData reads a DATA frame: its bytes are given back to the shadow's
// windows as they are read, kept up to AnswerBodyCap when answers are
// kept, and thrown away.
func (c *h2conn) onData(f *http2.DataFrame) error {
	s := c.s
	n := int64(f.Header().Length)
	w := &c.work
	s.mu.Lock()
	c.recvUnacked += n
	if c.recvUnacked >= recvConnWindow/2 {
		c.out = appendWindowUpdate(c.out, 0, uint32(c.recvUnacked))
		c.recvUnacked = 0
		w.kick(c)
	}
	st := c.streams[f.StreamID]
	var err error
	switch {
	case st == nil:
		if f.StreamID >= c.nextID {
			err = http2.ConnectionError(http2.ErrCodeProtocol)
		}
	case !st.final:
		c.resetLocked(st, http2.ErrCodeProtocol, FailProtocol, time.Now(), w)
	default:
		if st.cp != nil {
			st.cp.keep(f.Data())
		}
		if f.StreamEnded() {
			c.answeredLocked(st, time.Now(), w)
			break
		}
		if st.recvUnacked += n; st.recvUnacked >= recvStreamWindow/2 {
			c.out = appendWindowUpdate(c.out, st.id, uint32(st.recvUnacked))
			st.recvUnacked = 0
			w.kick(c)
		}
	}
	s.mu.Unlock()
	s.flush(w)
	return err
}

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	s := c.s
	w := &c.work
	var err error
	s.mu.Lock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.window += inc; c.window > maxWindow {
			err = http2.ConnectionError(http2.ErrCodeFlowControl)
		} else if len(c.sendq) > 0 {
			w.kick(c)
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		if st.window += inc; st.window > maxWindow {
			c.resetLocked(st, http2.ErrCodeFlowControl, FailProtocol, time.Now(), w)
		} else if !st.endSent {
			c.queueLocked(st)
			w.kick(c)
		}
	}
	s.mu.Unlock()
	s.flush(w)
	return err
}

func (c *h2conn) onPing(f *http2.PingFrame) {
	s := c.s
	if f.IsAck() {
		if f.Data == pingData {
			s.mu.Lock()
			c.pingOut = false
			s.mu.Unlock()
		}
		return
	}
	s.mu.Lock()
	// A shadow that pings without reading our answers gets no more.
	if len(c.out) < maxBacklog {
		c.out = appendFrameHeader(c.out, 8, http2.FramePing, http2.FlagPingAck, 0)
		c.out = append(c.out, f.Data[:]...)
	}
	s.mu.Unlock()
	c.kick()
}

// onReset is the shadow's RST_STREAM: REFUSED_STREAM (the shadow did not
// process the stream, RFC 9113 8.7) is sent again once, on whichever
// connection has room; any other code fails the request.
func (c *h2conn) onReset(f *http2.RSTStreamFrame) {
	s := c.s
	now := time.Now()
	w := &c.work
	s.mu.Lock()
	if st := c.streams[f.StreamID]; st != nil {
		rec := st.rec
		if f.ErrCode == http2.ErrCodeRefusedStream && !rec.retried && st.resendable() {
			rec.retried = true
			s.stats.Retried.Add(1)
			c.sentAgainLocked(st)
			c.removeLocked(st, false)
			c.freeStream(st)
			redo := append(c.redo[:0], rec)
			s.redispatchLocked(redo, now, w)
			clear(redo)
			c.redo = redo[:0]
		} else {
			c.removeLocked(st, true)
			c.endLocked(st, outcome{fail: FailReset}, now, w)
		}
		s.takePendingLocked(c, now, w)
		c.releasedLocked(now, w)
	}
	s.mu.Unlock()
	s.flush(w)
}

// onGoAway is the shadow's GOAWAY: the connection takes no new stream;
// the streams above its last stream id were not processed and go again on
// another connection, as net/http's Transport retries them (except the
// connection's first stream after a GOAWAY with an error, which would
// likely fail again); those at or below it are left to finish, and fail
// if the connection ends before their answer.
func (c *h2conn) onGoAway(f *http2.GoAwayFrame) {
	s := c.s
	now := time.Now()
	w := &c.work
	s.mu.Lock()
	c.dead, c.goAway = true, true
	if !c.causeSet {
		c.causeSet, c.cause = true, CloseShadowClosed
		if f.ErrCode != http2.ErrCodeNo {
			c.cause = CloseError
		}
	}
	redo := c.redo[:0]
	for _, st := range c.sortedStreamsLocked() {
		if st.id <= f.LastStreamID {
			continue
		}
		rec := st.rec
		if st.resendable() && rec.requeued < maxRequeues && (f.ErrCode == http2.ErrCodeNo || st.id != 1) {
			rec.requeued++
			s.stats.Requeued.Add(1)
			c.sentAgainLocked(st)
			c.removeLocked(st, false)
			c.freeStream(st)
			redo = append(redo, rec)
			continue
		}
		c.removeLocked(st, true)
		c.endLocked(st, outcome{fail: FailReset}, now, w)
	}
	s.redispatchLocked(redo, now, w)
	clear(redo)
	c.redo = redo[:0]
	c.releasedLocked(now, w)
	s.maybeDialLocked(now)
	s.mu.Unlock()
	s.flush(w)
}

// streamFailed is a stream error found by the framer: the stream is reset
// and its request fails.
func (c *h2conn) streamFailed(id uint32, code http2.ErrCode) {
	s := c.s
	w := &c.work
	s.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.resetLocked(st, code, FailProtocol, time.Now(), w)
	} else {
		c.out = appendRSTStream(c.out, id, code)
		w.kick(c)
	}
	s.mu.Unlock()
	s.flush(w)
}

// answeredLocked ends a stream whose answer is complete. A request still
// being sent is cut with RST_STREAM CANCEL: the shadow has answered it.
func (c *h2conn) answeredLocked(st *h2stream, now time.Time, w *h2work) {
	if !st.endSent {
		c.out = appendRSTStream(c.out, st.id, http2.ErrCodeCancel)
		w.kick(c)
	}
	o := outcome{ok: true, status: st.status, grpc: st.grpc, end: now}
	if st.cp != nil {
		o.answer = st.cp.answer(response{status: st.status, proto: httpmsg.HTTP2})
		o.answer.Start, o.answer.End = st.start, now
	}
	c.removeLocked(st, true)
	c.s.takePendingLocked(c, now, w)
	c.releasedLocked(now, w)
	c.endLocked(st, o, now, w)
}

// resetLocked resets a stream with code and fails its request with why.
func (c *h2conn) resetLocked(st *h2stream, code http2.ErrCode, why FailReason, now time.Time, w *h2work) {
	c.out = appendRSTStream(c.out, st.id, code)
	w.kick(c)
	c.removeLocked(st, true)
	c.s.takePendingLocked(c, now, w)
	c.releasedLocked(now, w)
	c.endLocked(st, outcome{fail: why}, now, w)
}

// endLocked hands st's request to the ledger and recycles st.
func (c *h2conn) endLocked(st *h2stream, o outcome, now time.Time, w *h2work) {
	c.s.endLocked(st.rec, o, now, w)
	c.freeStream(st)
}

// removeLocked takes st off the connection. final: the request ends (its
// body stream, if any, is cancelled), rather than going again.
func (c *h2conn) removeLocked(st *h2stream, final bool) {
	s := c.s
	delete(c.streams, st.id)
	if st.inSendq {
		if i := slices.Index(c.sendq, st); i >= 0 {
			c.sendq = slices.Delete(c.sendq, i, i+1)
		}
		st.inSendq = false
	}
	st.ended = true
	if st.cancel != nil {
		st.cancel()
	}
	if final && st.bs != nil && !st.eof {
		st.bs.Cancel()
	}
	c.active--
	s.inFlight--
	s.stats.addInFlight(-1)
	if c.active == 0 {
		c.gauge.set(s.stats, gaugeIdle)
	}
}

// freeStream recycles st, unless a body goroutine or the pump line may
// still hold it (streaming requests).
func (c *h2conn) freeStream(st *h2stream) {
	if st.bs != nil {
		return
	}
	clear(st.pieces)
	*st = h2stream{pieces: st.pieces[:0]}
	streamPool.Put(st)
}

// releasedLocked is called when c may have become empty: an empty
// connection closes when it takes no more streams, and otherwise idles
// (or, once Close was called and nothing waits, says GOAWAY and closes).
func (c *h2conn) releasedLocked(now time.Time, w *h2work) {
	s := c.s
	if c.active > 0 || c.closing {
		return
	}
	switch {
	case c.dead:
		if !c.causeSet {
			c.causeSet, c.cause = true, CloseConnectionClose // stream ids used up
		}
		c.closing = true
		w.closes = append(w.closes, c.raw)
	case s.closed && s.waiting == 0:
		c.goAwayLocked(CloseShutdown, w)
	default:
		c.idleUntil = now.Add(s.set.idle)
		s.armLocked(c.idleUntil, now)
	}
}

// goAwayLocked closes c, which carries nothing, politely: GOAWAY, then
// the close once it is written.
func (c *h2conn) goAwayLocked(cause CloseCause, w *h2work) {
	if c.closing {
		return
	}
	c.dead, c.closing = true, true
	if !c.causeSet {
		c.causeSet, c.cause = true, cause
	}
	c.out = appendFrameHeader(c.out, 8, http2.FrameGoAway, 0, 0)
	c.out = binary.BigEndian.AppendUint32(c.out, 0)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(http2.ErrCodeNo))
	c.closeAfterFlush = true
	w.kick(c)
}

// shutLocked makes Close close c at once: what it carries fails with
// FailShutdown.
func (c *h2conn) shutLocked(w *h2work) {
	if c.shut {
		return
	}
	c.shut, c.dead, c.closing = true, true, true
	if !c.causeSet {
		c.causeSet, c.cause = true, CloseShutdown
	}
	w.closes = append(w.closes, c.raw)
}

// expireLocked fails c's streams whose Timeout ran out (RST_STREAM
// CANCEL), PINGs the shadow when nothing was read from it since such a
// stream started, and fails the whole connection when that PING goes
// unanswered; and closes c once idle for IdleTimeout. It tells
// due what comes next.
func (c *h2conn) expireLocked(now time.Time, w *h2work, due func(time.Time)) {
	if c.closing {
		return
	}
	if c.pingOut {
		if !now.Before(c.pingDue) {
			// The shadow did not answer a PING: it is gone, not slow.
			// The reader fails what the connection carries.
			c.hung, c.dead, c.closing = true, true, true
			if !c.causeSet {
				c.causeSet, c.cause = true, CloseTimeout
			}
			w.closes = append(w.closes, c.raw)
			return
		}
		due(c.pingDue)
	}
	if c.active == 0 {
		if !now.Before(c.idleUntil) {
			c.goAwayLocked(CloseIdleTimeout, w)
		} else {
			due(c.idleUntil)
		}
		return
	}
	reads := c.reads.Load()
	for _, st := range c.sortedStreamsLocked() {
		if st.ended {
			continue
		}
		if st.bs != nil && !st.endSent && !st.bs.Done() {
			// The client is still sending: its Timeout starts at the
			// client's end (a body the shadow's windows hold back
			// after that times out).
			st.rec.deadline = now.Add(c.s.set.timeout)
		}
		if now.Before(st.rec.deadline) {
			due(st.rec.deadline)
			continue
		}
		if reads == st.reads && !c.pingOut {
			// The shadow sent nothing on any stream since this one
			// started: a PING tells a shadow whose handlers are slow
			// from one that is gone.
			c.pingOut, c.pingDue = true, now.Add(min(c.s.set.timeout, maxPingWait))
			c.out = appendFrameHeader(c.out, 8, http2.FramePing, 0, 0)
			c.out = append(c.out, pingData[:]...)
			w.kick(c)
			due(c.pingDue)
		}
		c.resetLocked(st, http2.ErrCodeCancel, FailTimeout, now, w)
	}
}

// maxPingWait bounds how long the PING that expireLocked sends waits for
// its ACK before the connection is taken for gone.
const maxPingWait = 5 * time.Second

// pingData is the payload of the sender's PINGs.
var pingData = [8]byte{'s', 'h', 'a', 'd', 'o', 'w', 't', 'e'}

// sortedStreamsLocked returns c's streams in the order they were opened.
func (c *h2conn) sortedStreamsLocked() []*h2stream {
	ids := c.ids[:0]
	for id := range c.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]*h2stream, len(ids))
	for i, id := range ids {
		out[i] = c.streams[id]
	}
	c.ids = ids
	return out
}

// fail ends the connection after err, and disposes of every stream on it,
// in the order they were opened:
//
//   - after Close gave up: failed with FailShutdown;
//   - past their Timeout: FailTimeout;
//   - whose HEADERS never reached the socket (the shadow cannot have seen
//     them), and that can be sent again: put back in line (Requeued);
//   - otherwise failed: FailAborted when the connection was found hung,
//     FailWrite when writing failed, else by err (reset, protocol).
func (c *h2conn) fail(err error) {
	s := c.s
	s.mu.Lock()
	c.dead, c.closing = true, true
	if !c.causeSet {
		c.causeSet, c.cause = true, h2CloseCause(err)
	}
	s.mu.Unlock()
	c.raw.Close()
	c.cancel()
	<-c.wdone // what was written is known from now on

	now := time.Now()
	w := &c.work
	reason := FailReset
	switch {
	case c.werr != nil:
		reason = FailWrite
	case h2Protocol(err):
		reason = FailProtocol
	case isTimeout(err):
		reason = FailTimeout
	}
	s.mu.Lock()
	redo := c.redo[:0]
	for _, st := range c.sortedStreamsLocked() {
		rec := st.rec
		switch {
		case c.shut:
			c.removeLocked(st, true)
			c.endLocked(st, outcome{fail: FailShutdown}, now, w)
		case !now.Before(rec.deadline):
			c.removeLocked(st, true)
			c.endLocked(st, outcome{fail: FailTimeout}, now, w)
		case st.hdrEnd > c.flushed && st.resendable() && rec.requeued < maxRequeues:
			rec.requeued++
			s.stats.Requeued.Add(1)
			c.sentAgainLocked(st)
			c.removeLocked(st, false)
			c.freeStream(st)
			redo = append(redo, rec)
		case c.hung:
			c.removeLocked(st, true)
			c.endLocked(st, outcome{fail: FailAborted}, now, w)
		default:
			c.removeLocked(st, true)
			c.endLocked(st, outcome{fail: reason}, now, w)
		}
	}
	clear(c.pumpq)
	c.pumpq = c.pumpq[:0]
	if i := slices.Index(s.conns, c); i >= 0 {
		s.conns = slices.Delete(s.conns, i, i+1)
		s.stats.ConnectionsOpen.Add(-1)
	}
	c.gauge.set(s.stats, gaugeNone)
	s.stats.ConnectionsClosed[c.cause].Add(1)
	s.redispatchLocked(redo, now, w)
	clear(redo)
	c.redo = redo[:0]
	s.maybeDialLocked(now)
	s.mu.Unlock()
	s.flush(w)
}

// resendable reports whether st's request can go again from the start:
// its body is held whole, or none of its streaming body was taken.
func (st *h2stream) resendable() bool { return st.bs == nil || !st.pumped }

// startLocked opens a stream for rec on c: its HEADERS are encoded into
// the output at once (HPACK's state and the stream ids follow the order
// of the output), its body follows as the writer and the windows allow.
func (c *h2conn) startLocked(rec *record, now time.Time) {
	s := c.s
	st := streamPool.Get().(*h2stream)
	st.rec = rec
	st.id = c.nextID
	c.nextID += 2
	if c.nextID > maxStreamID {
		c.dead = true
	}
	c.streams[st.id] = st
	c.active++
	if c.active == 1 {
		c.gauge.set(s.stats, gaugeBusy)
	}
	s.inFlight++
	s.stats.addInFlight(1)
	st.window = c.peerInit
	st.reads = c.reads.Load()
	rec.written = now
	s.stats.QueueDelay.Observe(now.Sub(rec.sent))
	if s.l.answer != nil {
		st.cp = &capture{max: s.set.answerCap}
	}

	r := rec.req
	st.bs = r.Stream()
	if st.bs == nil {
		c.cur = st
		r.VisitBody(c.visitBody)
		r.VisitTrailers(c.visitTrailers)
		c.cur = nil
	} else {
		st.drained = make(chan struct{}, 1)
	}
	end := st.bs == nil && len(st.pieces) == 0 && !st.trailers
	c.fields, c.fbuf = s.rw.appendFields(c.fields[:0], c.fbuf, r)
	c.hbuf.Reset()
	for _, f := range c.fields {
		c.enc.WriteField(c.hpackField(f.Name, f.Value))
	}
	clear(c.fields) // they alias r
	c.appendBlockLocked(st.id, c.hbuf.Bytes(), end)
	st.hdrEnd = c.outBase + int64(len(c.out))
	switch {
	case end:
		c.endSentLocked(st)
	case st.bs != nil:
		c.pumpq = append(c.pumpq, st)
	default:
		c.queueLocked(st)
	}
	s.armLocked(rec.deadline, now)
}

// endSentLocked notes that st's last frame is in the output: the next
// flush counts it in Stats.Sent, unless a write of it counted before (it
// was sent again).
func (c *h2conn) endSentLocked(st *h2stream) {
	st.endSent, st.endAt = true, c.outBase+int64(len(c.out))
	if st.bs != nil {
		// A streamed request's Timeout counts from its end, as Envoy's
		// route timeout does: a long client stream (gRPC's) is not cut
		// while it lasts.
		now := time.Now()
		st.rec.deadline = now.Add(c.s.set.timeout)
		c.s.armLocked(st.rec.deadline, now)
	}
	if c.s.sent.first(st.rec) {
		c.ends++
	}
}

// sentAgainLocked is called when st's request goes back in line: if its
// last frame was written, and so counted in Stats.Sent, the next write of
// it does not count.
func (c *h2conn) sentAgainLocked(st *h2stream) {
	if st.endSent && st.endAt <= c.flushed {
		c.s.sent.add(st.rec)
	}
}

// appendBlockLocked appends a header block as HEADERS and as many
// CONTINUATION frames as the shadow's frame size needs.
func (c *h2conn) appendBlockLocked(id uint32, block []byte, endStream bool) {
	typ, flags := http2.FrameHeaders, http2.Flags(0)
	if endStream {
		flags = http2.FlagHeadersEndStream
	}
	for {
		n := min(len(block), c.maxFrame)
		f := flags
		if n == len(block) {
			f |= http2.FlagHeadersEndHeaders
		}
		c.out = appendFrameHeader(c.out, n, typ, f, id)
		c.out = append(c.out, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return
		}
		typ, flags = http2.FrameContinuation, 0
	}
}

// queueLocked puts st in line for the writer.
func (c *h2conn) queueLocked(st *h2stream) {
	if !st.inSendq && !st.ended {
		st.inSendq = true
		c.sendq = append(c.sendq, st)
	}
}

// What sending one frame of a stream left it as.
type sendState uint8

const (
	sendMore        sendState = iota // it has more to send now
	sendDone                         // its END_STREAM is out
	sendBlocked                      // it waits for its window or for chunks
	sendConnBlocked                  // the connection's window is used up
)

// fillLocked moves DATA and trailers of the streams in sendq into the
// output, one frame per stream in turn, until a batch is there or every
// stream waits.
func (c *h2conn) fillLocked() {
	for len(c.sendq) > 0 && len(c.out) < maxWriteBatch {
		st := c.sendq[0]
		switch c.sendFrameLocked(st) {
		case sendMore:
			copy(c.sendq, c.sendq[1:])
			c.sendq[len(c.sendq)-1] = st
		case sendDone, sendBlocked:
			st.inSendq = false
			c.sendq[0] = nil
			c.sendq = c.sendq[:copy(c.sendq, c.sendq[1:])]
		case sendConnBlocked:
			return
		}
	}
}

// sendFrameLocked appends the next frame of st: DATA as far as the
// windows and the frame size allow, or, once its body is all sent, its
// trailers or an empty DATA frame with END_STREAM.
func (c *h2conn) sendFrameLocked(st *h2stream) sendState {
	var data []byte
	last := false // data is the end of the body
	if st.bs == nil {
		if st.pi < len(st.pieces) {
			data = st.pieces[st.pi][st.off:]
			last = st.pi == len(st.pieces)-1 && !st.trailers
		}
	} else if st.ci < len(st.chunks) {
		data = st.chunks[st.ci][st.cof:]
	}
	if len(data) > 0 {
		if st.window <= 0 {
			return sendBlocked
		}
		if c.window <= 0 {
			return sendConnBlocked
		}
		n := int(min(int64(len(data)), st.window, c.window, int64(c.maxFrame)))
		last = last && n == len(data)
		var flags http2.Flags
		if last {
			flags = http2.FlagDataEndStream
		}
		c.out = appendFrameHeader(c.out, n, http2.FrameData, flags, st.id)
		c.out = append(c.out, data[:n]...)
		st.window -= int64(n)
		c.window -= int64(n)
		if st.bs == nil {
			if st.off += n; st.off == len(st.pieces[st.pi]) {
				st.pi, st.off = st.pi+1, 0
			}
		} else if st.cof += n; st.cof == len(st.chunks[st.ci]) {
			st.chunks[st.ci] = nil
			st.ci, st.cof = st.ci+1, 0
		}
		if last {
			c.endSentLocked(st)
			return sendDone
		}
		return sendMore
	}
	if st.bs != nil && !st.eof {
		// The chunks taken are out: the body goroutine may take more.
		st.chunks, st.ci, st.cof = nil, 0, 0
		select {
		case st.drained <- struct{}{}:
		default:
		}
		return sendBlocked
	}
	c.appendEndLocked(st)
	c.endSentLocked(st)
	return sendDone
}

// appendEndLocked ends st's request: its trailers as a last HEADERS, or an
// empty DATA frame, with END_STREAM.
func (c *h2conn) appendEndLocked(st *h2stream) {
	c.hbuf.Reset()
	add := func(name, value []byte) {
		if h2Trailer(name, value) {
			c.enc.WriteField(c.hpackField(name, value))
		}
	}
	if st.bs != nil {
		for _, f := range st.bs.Trailers() {
			add(f.Name, f.Value)
		}
	} else if st.trailers {
		st.rec.req.VisitTrailers(func(name, value []byte) bool { add(name, value); return true })
	}
	if c.hbuf.Len() == 0 {
		c.out = appendFrameHeader(c.out, 0, http2.FrameData, http2.FlagDataEndStream, st.id)
		return
	}
	c.appendBlockLocked(st.id, c.hbuf.Bytes(), true)
}

// h2Trailer reports whether a trailer field may go to the shadow: not a
// pseudo-header, not one that frames or routes a message, and one that
// can be written safely.
func h2Trailer(name, value []byte) bool {
	if len(name) == 0 || name[0] == ':' {
		return false
	}
	switch classify(name) {
	case fieldHost, fieldContentLength, fieldTransferEncoding, fieldConnection, fieldHopByHop, fieldTE:
		return false
	}
	return sendable(name, value)
}

// Interning bounds: names and values worth indexing are copied once per
// connection, in a table cleared when full.
const (
	maxInterned   = 512
	maxInternSize = 128
)

// hpackField turns a field into what the HPACK encoder takes, without a
// copy per request where it can. Names (lower-cased) and the values worth
// a place in the dynamic table are interned: copied once per connection,
// so that the strings the encoder keeps in its table stay valid. Other
// values (long, or of fields whose values seldom repeat) are given
// without a copy and marked never-indexed, which the encoder copies into
// the block and does not keep: the string lives only for the call.
func (c *h2conn) hpackField(name, value []byte) hpack.HeaderField {
	n := c.intern(name, true)
	if len(value) > maxInternSize || uniqueValues(n) {
		return hpack.HeaderField{Name: n, Value: unsafe.String(unsafe.SliceData(value), len(value)), Sensitive: true}
	}
	return hpack.HeaderField{Name: n, Value: c.intern(value, false)}
}

func (c *h2conn) intern(b []byte, lower bool) string {
	if v, ok := c.interned[string(b)]; ok {
		return v
	}
	if len(c.interned) >= maxInterned {
		clear(c.interned) // the encoder's table keeps its own references
	}
	key := string(b)
	v := key
	if lower && hasUpper(b) {
		v = strings.ToLower(key)
	}
	if len(b) <= maxInternSize {
		c.interned[key] = v
	}
	return v
}

func hasUpper(b []byte) bool {
	for _, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			return true
		}
	}
	return false
}

// uniqueValues reports whether a field's values are unlikely to repeat
// (ids, paths, lengths, clocks) or must not be kept (credentials, RFC
// 7541 7.1.3): indexing them would evict the fields that do repeat.
func uniqueValues(name string) bool {
	switch name {
	case ":path", "content-length", "date", "x-request-id", "x-correlation-id", "traceparent", "tracestate",
		"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "b3", "x-amzn-trace-id", "x-cloud-trace-context",
		"uber-trace-id", "sentry-trace", "baggage", "x-forwarded-for", "authorization", "proxy-authorization",
		"cookie", "if-none-match", "if-modified-since", "etag", "grpc-timeout", "idempotency-key", "x-idempotency-key":
		return true
	}
	return false
}

// writeLoop is the writer goroutine: it writes the output in batches
// until the connection ends.
func (c *h2conn) writeLoop() {
	s := c.s
	defer s.wg.Done()
	defer close(c.wdone)
	w := &c.wwork
	for {
		s.mu.Lock()
		c.fillLocked()
		if len(c.out) == 0 {
			closeNow := c.closeAfterFlush
			s.mu.Unlock()
			if closeNow {
				c.raw.Close()
				return
			}
			select {
			case <-c.wake:
			case <-c.ctx.Done():
				return
			}
			continue
		}
		buf := c.out
		c.out, c.spare = c.spare[:0], nil
		c.outBase += int64(len(buf))
		ends := c.ends
		c.ends = 0
		s.mu.Unlock()

		// A safety net: a request's Timeout is kept by the timer; the
		// deadline moves only when it comes within Timeout/2.
		if now := time.Now(); c.wdl.Sub(now) < s.set.timeout/2 {
			c.wdl = now.Add(s.set.timeout)
			c.nc.SetWriteDeadline(c.wdl)
		}
		n, err := c.nc.Write(buf)

		now := time.Now()
		s.mu.Lock()
		c.flushed += int64(n)
		if cap(buf) <= maxKeptWriteBuffer {
			c.spare = buf[:0]
		}
		if err != nil {
			if !c.closing {
				// A write that failed because we closed the socket is
				// not the write's fault.
				c.werr = err
			}
			c.dead = true
			if !c.causeSet {
				c.causeSet, c.cause = true, CloseError
				if isTimeout(err) {
					c.cause = CloseTimeout
				}
			}
			s.mu.Unlock()
			c.raw.Close()
			return
		}
		s.stats.Sent.Add(ends)
		c.startPumpsLocked()
		if s.pending.len() > 0 {
			// The backlog may have kept streams off this connection.
			s.takePendingLocked(c, now, w)
		}
		s.mu.Unlock()
		s.flush(w)
	}
}

// startPumpsLocked starts the body goroutines of the streaming requests
// whose HEADERS are written.
func (c *h2conn) startPumpsLocked() {
	s := c.s
	keep := c.pumpq[:0]
	for _, st := range c.pumpq {
		switch {
		case st.ended:
		case st.hdrEnd <= c.flushed:
			st.pumped = true
			// No deadline: a streamed request's Timeout starts at its
			// end, and the stream's end (whatever the cause) cancels.
			ctx, cancel := context.WithCancel(c.ctx)
			st.cancel = cancel
			s.wg.Add(1)
			go c.pump(st, ctx)
		default:
			keep = append(keep, st)
		}
	}
	clear(c.pumpq[len(keep):])
	c.pumpq = keep
}

// pump moves a streaming body to its stream: it takes what the stream
// holds, hands it to the writer, and takes more only once that is sent, so
// that the request holds at most one batch beside the stream's own buffer
// however long it lasts. A body that ends early (the client reset its
// stream, or the stream overflowed) resets the shadow's stream with
// CANCEL and fails the request as aborted. The stream's end, or its
// connection's, stops the goroutine.
func (c *h2conn) pump(st *h2stream, ctx context.Context) {
	s := c.s
	defer s.wg.Done()
	bs := st.bs
	var w h2work
	for {
		chunks, err := bs.Next(ctx)
		s.mu.Lock()
		if st.ended || ctx.Err() != nil {
			// Its end cancelled ctx, and is counted where it ended.
			s.mu.Unlock()
			return
		}
		if len(chunks) > 0 {
			st.chunks, st.ci, st.cof = chunks, 0, 0
			c.queueLocked(st)
		}
		switch {
		case err == io.EOF:
			st.eof = true
			c.queueLocked(st)
			s.mu.Unlock()
			c.kick()
			return
		case err != nil:
			c.resetLocked(st, http2.ErrCodeCancel, FailAborted, time.Now(), &w)
			s.mu.Unlock()
			s.flush(&w)
			return
		}
		for !st.ended && st.ci < len(st.chunks) {
			s.mu.Unlock()
			c.kick()
			select {
			case <-st.drained:
			case <-ctx.Done():
			}
			s.mu.Lock()
			if ctx.Err() != nil {
				break
			}
		}
		s.mu.Unlock()
	}
}

// h2Protocol reports whether err is the shadow breaking HTTP/2.
func h2Protocol(err error) bool {
	var ce http2.ConnectionError
	var se http2.StreamError
	return errors.As(err, &ce) || errors.As(err, &se) || errors.Is(err, http2.ErrFrameTooLarge)
}

// h2CloseCause says why a connection ends after a read error.
func h2CloseCause(err error) CloseCause {
	switch {
	case isTimeout(err):
		return CloseTimeout
	case h2Protocol(err):
		return CloseError
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isReset(err):
		return CloseShadowClosed
	}
	return CloseError
}

// appendFrameHeader appends an HTTP/2 frame header (RFC 9113 4.1). The
// frames are written by hand into the connection's batch, rather than by
// a Framer into its own buffer and then copied.
func appendFrameHeader(dst []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(dst, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendSetting(dst []byte, id http2.SettingID, v uint32) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(id))
	return binary.BigEndian.AppendUint32(dst, v)
}

func appendWindowUpdate(dst []byte, id, inc uint32) []byte {
	dst = appendFrameHeader(dst, 4, http2.FrameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(dst, inc&0x7fffffff)
}

func appendRSTStream(dst []byte, id uint32, code http2.ErrCode) []byte {
	dst = appendFrameHeader(dst, 4, http2.FrameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(dst, uint32(code))
}
