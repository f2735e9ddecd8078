package h2frame

import (
	"errors"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// stream is a kept request that is not finished with: held while its body
// arrives, streaming, or waiting for its answer.
type stream struct {
	id  uint32
	tag any

	req        *Request            // held: the request being assembled; nil once emitted or dropped
	body       *httpmsg.BodyStream // streaming: where DATA goes; nil when whole, or after the reader stopped
	due        int64               // held: when StreamAfter emits it, Unix ns; 0: never
	emitted    bool
	clientDone bool  // the request's side is over: END_STREAM, reset, or dropped
	held       int64 // Config.Budget bytes taken for req's buffer
	bodyHeld   int64 // Config.Budget bytes taken for body: at least what it holds

	wantAnswer bool // emitted (or to be) with Config.Answer set: one Answer call is owed
	answered   bool // the Answer call was made
	ans        *httpmsg.Answer
	ansDone    bool // ans is whole, waiting for the request's Emit
	ansLost    bool // the answer cannot come: report nil once emitted
}

var streamPool = sync.Pool{New: func() any { return new(stream) }}

func (s *stream) free() {
	if s.req != nil {
		s.req.Release()
	}
	*s = stream{}
	streamPool.Put(s)
}

func (c *Conn) find(id uint32) *stream {
	for _, s := range c.streams {
		if s.id == id {
			return s
		}
	}
	return nil
}

// maybeRemove drops c.streams[i] when nothing more is owed for it, and
// reports whether it did.
func (c *Conn) maybeRemove(i int) bool {
	s := c.streams[i]
	if !s.clientDone || (s.wantAnswer && !s.answered && s.emitted) {
		return false
	}
	last := len(c.streams) - 1
	c.streams[i] = c.streams[last]
	c.streams[last] = nil
	c.streams = c.streams[:last]
	s.free()
	return true
}

func (c *Conn) removeStream(s *stream) {
	for i, x := range c.streams {
		if x == s {
			c.maybeRemove(i)
			return
		}
	}
}

// room makes room for one more stream, giving up the answer of the oldest
// stream that waits only for one, and reports whether there is room.
func (c *Conn) room() bool {
	if len(c.streams) < c.lim.maxStreams {
		return true
	}
	for i, s := range c.streams {
		if s.clientDone && s.emitted {
			c.answerLost(s)
			c.maybeRemove(i)
			return true
		}
	}
	return false
}

// requestBlock handles a whole header block from the client.
func (c *Conn) requestBlock(d *direction, id uint32, block []byte, end bool, t time.Time) {
	if s := c.find(id); s != nil {
		c.trailerBlock(d, s, block, end)
		return
	}
	if id <= c.lastID {
		// Trailers of a stream not tracked (not kept, or skipped).
		c.discardBlock(d, block)
		return
	}
	c.lastID = id
	r := newRequest(id, c.client, c.server, t)
	sink := c.requestSink(r, false)
	if d.dec.decode(block, sink) != nil {
		c.decodeFailed(d)
		r.Release()
		c.st.Skipped[ReasonProtocol].Add(1)
		return
	}
	if sink.unknowns > 0 {
		c.st.UnknownFields.Add(uint64(sink.unknowns))
	}
	why := sink.check()
	if why == ReasonMalformed && d.joined && !sink.pseudo && end {
		// The trailers of a stream begun before the capture joined.
		r.Release()
		return
	}
	c.st.Requests.Add(1)
	if why == NumReasons && !c.room() {
		why = ReasonTooManyStreams
	}
	if why != NumReasons {
		c.st.Skipped[why].Add(1)
		r.Release()
		return
	}
	var tag any
	if c.cfg.Keep != nil {
		var keep bool
		if tag, keep = c.cfg.Keep(r); !keep {
			r.Release()
			return
		}
	}
	s := streamPool.Get().(*stream)
	s.id, s.tag, s.req, s.wantAnswer = id, tag, r, c.lim.answerOn
	c.streams = append(c.streams, s)
	if end {
		c.emitWhole(s)
		return
	}
	if !c.hold(s) {
		c.cutRequest(s, ReasonMemory, nil)
		c.removeStream(s)
		return
	}
	if c.lim.after >= 0 && !t.IsZero() {
		s.due = t.UnixNano() + c.lim.after
		if c.due == 0 || s.due < c.due {
			c.due = s.due
		}
	}
}

// requestSink readies the Conn's sink for a block of r (the sink is
// reused: handed to the decoder as an interface, a new one would escape).
func (c *Conn) requestSink(r *Request, trailers bool) *requestSink {
	c.rsink = requestSink{blockCheck: blockCheck{limit: c.lim.maxList}, r: r, trailers: trailers}
	return &c.rsink
}

// trailerBlock handles a second header block on a tracked stream.
func (c *Conn) trailerBlock(d *direction, s *stream, block []byte, end bool) {
	switch {
	case s.req != nil:
		sink := c.requestSink(s.req, true)
		if d.dec.decode(block, sink) != nil {
			c.decodeFailed(d)
			c.cutRequest(s, ReasonProtocol, ErrProtocol)
			c.removeStream(s)
			return
		}
		why := sink.reason()
		if why == NumReasons && !end {
			why = ReasonMalformed
		}
		if why != NumReasons {
			c.cutRequest(s, why, ErrProtocol)
			c.removeStream(s)
			return
		}
		c.emitWhole(s)
	case s.body != nil:
		tr := newRequest(0, c.client, c.server, time.Time{})
		sink := c.requestSink(tr, true)
		err := d.dec.decode(block, sink)
		if err != nil {
			c.decodeFailed(d)
		}
		why := sink.reason()
		switch {
		case err != nil:
			c.cutRequest(s, ReasonProtocol, ErrProtocol)
		case why != NumReasons || !end:
			c.cutRequest(s, max(why, ReasonMalformed), ErrProtocol)
		default:
			var fs []httpmsg.Field
			tr.VisitTrailers(func(name, value []byte) bool {
				fs = append(fs, httpmsg.Field{Name: name, Value: value})
				return true
			})
			s.body.End(fs)
			c.endBody(s)
			s.clientDone = true
		}
		tr.Release()
		c.removeStream(s)
	default:
		c.discardBlock(d, block)
		if end {
			s.clientDone = true
			c.removeStream(s)
		}
	}
}

// wantsData says whether the DATA of s on side d is needed.
func (c *Conn) wantsData(d *direction, s *stream) bool {
	if d.server {
		return s.ans != nil && !s.ansDone && !s.answered
	}
	return s.req != nil || s.body != nil
}

// dataEnd notes END_STREAM on DATA that was skipped.
func (c *Conn) dataEnd(d *direction, s *stream, h *frameHeader) {
	if !d.server {
		s.clientDone = true
		c.removeStream(s)
	}
}

// requestData adds DATA from the client to a tracked stream.
func (c *Conn) requestData(s *stream, data []byte, end bool, t time.Time) {
	if r := s.req; r != nil {
		if !r.body.ok() {
			r.body = span{int32(len(r.blk.b)), 0}
		}
		n := int64(r.body.n) + int64(len(data))
		if n > c.lim.maxBody && (c.lim.hold < 0 || n > maxArena) {
			c.cutRequest(s, ReasonBodyTooLarge, nil)
			c.removeStream(s)
			return
		}
		if n <= c.lim.maxBody && (end || c.lim.hold < 0 || n <= c.lim.hold) {
			if !c.holdRoom(s, len(data)) {
				c.cutRequest(s, ReasonMemory, nil)
				c.removeStream(s)
				return
			}
			r.add(data)
			r.body.n = int32(n)
			if end {
				c.emitWhole(s)
			}
			return
		}
		// Past HoldBody: the rest streams.
		if !c.emitStreaming(s) {
			c.removeStream(s)
			return
		}
	}
	if s.body != nil {
		c.writeBody(s, data)
	}
	if end {
		if s.body != nil {
			s.body.End(nil)
			c.endBody(s)
		}
		s.clientDone = true
		c.removeStream(s)
	}
}

// testHookBodyWrite, when a test sets it, runs just before a streaming
// body is written to, after the check that its reader is still there: where
// a reader cancelling on its own goroutine may land.
var testHookBodyWrite func(*httpmsg.BodyStream)

// writeBody writes data to the body of a streaming request. A reader that
// cancelled, before or during the write, only ends the writing: it went
// away, the body did not overflow.
func (c *Conn) writeBody(s *stream, data []byte) {
	bs := s.body
	if bs.Done() {
		c.endBody(s) // the reader gave up
		return
	}
	if len(data) == 0 {
		return
	}
	if !c.chargeBody(s, len(data)) {
		c.st.Aborted[ReasonMemory].Add(1)
		bs.Abort(ErrMemory)
		c.endBody(s)
		return
	}
	if testHookBodyWrite != nil {
		testHookBodyWrite(bs)
	}
	if !bs.Write(data) {
		if errors.Is(bs.Err(), httpmsg.ErrStreamOverflow) {
			c.st.Aborted[ReasonOverflow].Add(1)
		}
		c.endBody(s)
		return
	}
	c.st.BodyBytes.Add(uint64(len(data)))
	c.settleBody(s)
}

// maxArena bounds a held body, whatever MaxBodyBytes says: spans are int32.
const maxArena = 1<<31 - 1<<20

// emitWhole hands over a held request whose stream ended.
func (c *Conn) emitWhole(s *stream) {
	r := s.req
	c.unhold(s)
	s.req, s.clientDone, s.emitted = nil, true, true
	c.st.Emitted.Add(1)
	c.st.BodyBytes.Add(uint64(max(r.body.n, 0)))
	c.emit(r, s)
	c.removeStream(s)
}

// emitStreaming hands over a held request whose body is still arriving,
// with a BodyStream that the body so far is written to. The request's
// buffer goes to the consumer, and the Budget is charged for the stream's
// bytes instead; when it cannot spare them, the request is dropped
// (ReasonMemory) and emitStreaming reports false: the caller removes s.
func (c *Conn) emitStreaming(s *stream) bool {
	r := s.req
	c.unhold(s)
	if !c.chargeBody(s, int(max(r.body.n, 0))) {
		c.cutRequest(s, ReasonMemory, nil)
		return false
	}
	bs := httpmsg.NewBodyStream(c.lim.streamBuf)
	if r.body.n > 0 {
		if bs.Write(r.bytes(r.body)) {
			c.st.BodyBytes.Add(uint64(r.body.n))
		}
		r.blk.b = r.blk.b[:r.body.off]
	}
	r.body, r.stream = none, bs
	s.req, s.body, s.emitted, s.due = nil, bs, true, 0
	if bs.Done() {
		c.st.Aborted[ReasonOverflow].Add(1)
		c.endBody(s)
	}
	c.st.Emitted.Add(1)
	c.st.EmittedStreaming.Add(1)
	c.emit(r, s)
	return true
}

func (c *Conn) emit(r *Request, s *stream) {
	if c.cfg.Emit != nil {
		c.cfg.Emit(r, s.tag)
	} else {
		r.Release()
	}
	switch {
	case !s.wantAnswer:
	case c.srv.state == stDead:
		// The server's side was given up: no answer will come.
		c.deliver(s, nil)
	case s.ansDone:
		a := s.ans
		s.ans = nil
		c.deliver(s, a)
	case s.ansLost:
		c.deliver(s, nil)
	}
}

// cutRequest ends the request side of s before its end: a held request is
// dropped (and the consumer told), a streaming one aborted.
func (c *Conn) cutRequest(s *stream, why Reason, err error) {
	switch {
	case s.req != nil:
		c.st.Skipped[why].Add(1)
		c.unhold(s)
		s.req.Release()
		s.req = nil
		if c.cfg.Drop != nil {
			c.cfg.Drop(s.tag, why)
		}
		s.wantAnswer = false
	case s.body != nil:
		c.st.Aborted[why].Add(1)
		if err == nil {
			err = ErrProtocol
		}
		s.body.Abort(err)
		c.endBody(s)
	}
	s.clientDone = true
}

// answerLost reports that the answer to s cannot be captured.
func (c *Conn) answerLost(s *stream) {
	if !s.wantAnswer || s.answered {
		return
	}
	s.ans, s.ansDone = nil, false
	if s.emitted {
		c.deliver(s, nil)
	} else {
		s.ansLost = true
	}
}

func (c *Conn) deliver(s *stream, a *httpmsg.Answer) {
	s.answered = true
	if a == nil {
		c.st.AnswersLost.Add(1)
	} else {
		c.st.Answers.Add(1)
	}
	c.cfg.Answer(s.tag, a)
}

// reset handles RST_STREAM for a tracked stream.
func (c *Conn) reset(s *stream, fromServer bool) {
	if fromServer {
		c.cutRequest(s, ReasonRefused, ErrRefused)
	} else {
		c.cutRequest(s, ReasonReset, ErrReset)
	}
	c.answerLost(s)
	c.removeStream(s)
}

// goAway handles the server's GOAWAY: streams past last were never
// processed, and the client will retry them elsewhere.
func (c *Conn) goAway(last uint32) {
	for i := 0; i < len(c.streams); {
		s := c.streams[i]
		if s.id > last {
			c.cutRequest(s, ReasonRefused, ErrRefused)
			c.answerLost(s)
		}
		if !c.maybeRemove(i) {
			i++
		}
	}
}

// answerBlock handles a whole header block from the server.
func (c *Conn) answerBlock(d *direction, id uint32, block []byte, end bool, t time.Time) {
	s := c.find(id)
	if s == nil || !s.wantAnswer || s.answered || s.ansDone || s.ansLost {
		c.discardBlock(d, block)
		return
	}
	sink := &c.asink
	buf, spans := sink.buf[:0], sink.spans[:0]
	if cap(buf) > 4<<10 || cap(spans) > maxPooledFields {
		buf, spans = nil, nil // not pinned by an idle connection
	}
	*sink = answerSink{blockCheck: blockCheck{limit: c.lim.maxList}, trailers: s.ans != nil, buf: buf, spans: spans}
	if d.dec.decode(block, sink) != nil {
		c.decodeFailed(d)
		c.answerLost(s)
		c.removeStream(s)
		return
	}
	if sink.reason() != NumReasons || (!sink.trailers && !sink.seen) || (sink.trailers && !end) {
		c.answerLost(s)
		c.removeStream(s)
		return
	}
	if !sink.trailers {
		if sink.status < 200 {
			// An interim answer (100 Continue, 103 Early Hints): the final
			// one follows.
			if end {
				c.answerLost(s)
				c.removeStream(s)
			}
			return
		}
		s.ans = newAnswer(sink.status, sink.fields(), t)
	} else {
		s.ans.Trailer = sink.fields()
	}
	if end {
		c.answerEnd(s, t)
	}
}

// answerData adds DATA from the server to the answer of s.
func (c *Conn) answerData(s *stream, data []byte, end bool, t time.Time) {
	a := s.ans
	if a == nil || s.ansDone {
		return
	}
	a.BodyLen += int64(len(data))
	if room := c.lim.answerCap - len(a.Body); room > 0 {
		if len(data) > room {
			data, a.Truncated = data[:room], true
		}
		a.Body = append(a.Body, data...)
	} else if len(data) > 0 {
		a.Truncated = true
	}
	if end {
		c.answerEnd(s, t)
	}
}

func (c *Conn) answerEnd(s *stream, t time.Time) {
	s.ans.End = t
	if s.emitted {
		a := s.ans
		s.ans = nil
		c.deliver(s, a)
		c.removeStream(s)
		return
	}
	s.ansDone = true
}
