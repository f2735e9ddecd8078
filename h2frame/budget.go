package h2frame

// Config.Budget is charged for what a Conn holds for requests still
// arriving, so that many connections, each within its own limits, cannot
// together grow memory past the agent's cap:
//   - a held request, for the capacity of its buffer, from the moment its
//     stream is tracked until it is emitted, whole or as streaming, or
//     dropped;
//   - a streaming body, for the bytes written to its BodyStream that the
//     reader has not taken, until the body ends or is aborted (then its
//     bytes are the consumer's, as an emitted request's are).
//
// A body's charge is brought down to what its stream holds at each Write,
// and for every body of the Conn when the Budget refuses; in between it may
// be more than what the reader left, never less.

// hold charges the Budget for the buffer of the request that s has just
// begun to hold. It reports false, and takes nothing, when the Budget
// refuses.
func (c *Conn) hold(s *stream) bool {
	if c.budget == nil {
		return true
	}
	n := int64(cap(s.req.blk.b))
	if !c.budget.Reserve(n) {
		return false
	}
	s.held = n
	return true
}

// holdRoom makes room for n more bytes in the buffer of the request that s
// holds, charging the Budget for the growth: twice what the buffer holds,
// or just what it needs when the Budget cannot spare that. It reports
// false, and changes nothing, when the Budget cannot spare even that.
func (c *Conn) holdRoom(s *stream, n int) bool {
	r := s.req
	need := len(r.blk.b) + n
	if c.budget == nil || need <= cap(r.blk.b) {
		return true
	}
	size := blockSize(max(need, 2*cap(r.blk.b)))
	if !c.budget.Reserve(int64(size) - s.held) {
		if size = blockSize(need); !c.budget.Reserve(int64(size) - s.held) {
			return false
		}
	}
	nb := getBlock(size)
	nb.b = append(nb.b, r.blk.b...)
	putBlock(r.blk)
	r.blk, s.held = nb, int64(size)
	return true
}

// unhold gives back what the buffer of the request that s held was
// charged.
func (c *Conn) unhold(s *stream) {
	if s.held > 0 {
		c.budget.Release(s.held)
		s.held = 0
	}
}

// chargeBody charges the Budget for n bytes about to be written to the
// body of s. When the Budget refuses, the charges of the Conn's bodies are
// brought down to what their readers left, and it is asked once more.
func (c *Conn) chargeBody(s *stream, n int) bool {
	if c.budget == nil || n <= 0 {
		return true
	}
	if !c.budget.Reserve(int64(n)) {
		for _, x := range c.streams {
			if x.body != nil {
				c.settleBody(x)
			}
		}
		if !c.budget.Reserve(int64(n)) {
			return false
		}
	}
	s.bodyHeld += int64(n)
	return true
}

// settleBody brings the charge of the body of s down to what its stream
// holds now.
func (c *Conn) settleBody(s *stream) {
	if s.bodyHeld == 0 {
		return
	}
	if h := int64(s.body.Held()); h < s.bodyHeld {
		c.budget.Release(s.bodyHeld - h)
		s.bodyHeld = h
	}
}

// endBody lets go of the body of s: nothing more is written to it, and its
// charge is given back.
func (c *Conn) endBody(s *stream) {
	if s.bodyHeld > 0 {
		c.budget.Release(s.bodyHeld)
		s.bodyHeld = 0
	}
	s.body = nil
}
