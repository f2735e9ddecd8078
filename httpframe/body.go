package httpframe

// headDone acts on a complete head. When the head was parsed in place
// (p.blk is nil), head and rest are consecutive bytes of the caller's input
// and the whole request may be framed from them; headDone then returns how
// many bytes of rest it consumed. Otherwise head is p.blk.b and rest is nil.
func (p *Parser) headDone(head, rest []byte) int {
	r := getRequest()
	r.Raw = head
	r.ClientAddr, r.ServerAddr, r.Captured = p.client, p.server, p.start
	kind := parseHead(head, r)
	switch kind {
	case headBad:
		r.Release()
		p.skipped(ReasonMalformed)
		p.garbage(len(head))
		p.toResync()
		return 0
	case headConnect:
		if p.watch != nil {
			p.watch(r.Method(), nil)
		}
		r.Release()
		p.stats.Requests.Add(1)
		p.skipped(ReasonConnect)
		p.dropPartial()
		p.state = stOpaque
		return 0
	}
	p.stats.Requests.Add(1)
	p.after = stHead
	if kind == headH2C {
		// The body, if any, comes before the switch (RFC 9113 3.2); then
		// the connection is another framer's, mirrored or not.
		r.UpgradeH2C, p.after = true, stSwitched
	}
	chunked, cl := r.Chunked, r.ContentLength
	skip := NumReasons
	switch {
	case kind == headUpgrade:
		// The switch, if the server agrees, happens after the body.
		skip, p.after = ReasonUpgrade, stResync
	case kind == headReject:
		skip = ReasonMalformed
	case cl > p.cfg.maxBody():
		skip = ReasonBodyTooLarge
	}
	keep := skip == NumReasons
	if keep && p.cfg.Keep != nil {
		// Refused by the consumer: its decision, counted by the consumer.
		r.tag, keep = p.cfg.Keep(r)
	}
	if p.watch != nil {
		var tag any
		if keep {
			tag = r.tag
		}
		p.watch(r.Method(), tag)
	}
	p.skip = !keep
	if p.skip {
		if skip != NumReasons {
			p.skipped(skip)
		}
		r.Release()
		p.dropPartial()
	} else {
		p.req = r
	}

	switch {
	case chunked:
		p.chunk.Reset()
		p.state = stChunked
	case cl > 0:
		p.remain = cl
		p.state = stBody
	default:
		p.bodyDone()
		return 0
	}
	if !p.skip && p.blk == nil {
		return p.bodyInPlace(rest)
	}
	return 0 // the body steps frame (or skip) the body
}

// bodyInPlace frames the start of a kept body from rest, which follows the
// head p.req.Raw in the caller's input. A request that ends within rest is
// copied once, as a whole; otherwise head and body so far are buffered.
func (p *Parser) bodyInPlace(rest []byte) int {
	r := p.req
	hl := len(r.Raw)
	var n, need, want int
	var done bool
	if p.state == stBody {
		n = len(rest)
		if int64(n) >= p.remain {
			n, done = int(p.remain), true
		}
		p.remain -= int64(n)
		// Room for what has arrived, growing as more does: a head that
		// announces a large body does not reserve it before it comes.
		need, want = hl+n, bodyWant(hl+n, hl+int(r.ContentLength))
	} else {
		var err error
		n, done, err = p.chunk.Scan(rest)
		if err != nil {
			p.chunkError()
			return n
		}
		if p.chunkTooLarge(n) {
			if done {
				p.bodyDone()
			}
			return n
		}
		need, want = hl+n, 2*(hl+n)
	}
	if done {
		// head and rest are consecutive in the caller's input, and cap(head)
		// reaches the end of it, so head[:hl+n] is the whole request.
		r.Raw = r.Raw[:hl+n]
		p.bodyDone()
		return n
	}
	if !p.ensure(need, want) {
		p.noMemory()
		return n
	}
	p.blk.b = append(p.blk.b, r.Raw...)
	p.blk.b = append(p.blk.b, rest[:n]...)
	return n
}

// body frames Content-Length body bytes.
func (p *Parser) body(b []byte) int {
	n := len(b)
	if int64(n) > p.remain {
		n = int(p.remain)
	}
	if !p.skip {
		need := len(p.blk.b) + n
		if !p.ensure(need, bodyWant(need, len(p.blk.b)+int(p.remain))) {
			p.noMemory()
		} else {
			p.blk.b = append(p.blk.b, b[:n]...)
		}
	}
	p.remain -= int64(n)
	if p.remain == 0 {
		p.bodyDone()
	}
	return n
}

// chunked frames chunked body bytes.
func (p *Parser) chunked(b []byte) int {
	n, done, err := p.chunk.Scan(b)
	if err != nil {
		p.chunkError()
		return n
	}
	if !p.skip && !p.chunkTooLarge(len(p.blk.b)-p.req.HeadEnd+n) && !p.appendPartial(b[:n]) {
		p.noMemory()
	}
	if done {
		p.bodyDone()
	}
	return n
}

// chunkTooLarge checks a kept chunked body of wire bytes so far against the
// limits, counting the rest of the current chunk before it arrives. When it
// is too large, the request is dropped and the body skipped.
func (p *Parser) chunkTooLarge(wire int) bool {
	if p.chunk.Decoded()+p.chunk.Pending() <= p.cfg.maxBody() && int64(wire) <= p.cfg.maxChunkedWire() {
		return false
	}
	p.skipped(ReasonBodyTooLarge)
	p.dropPartial()
	p.skip = true
	return true
}

// chunkError gives up on a chunked body that breaks the coding: a server
// would answer 400 and close, so look for a request line again.
func (p *Parser) chunkError() {
	if !p.skip {
		p.skipped(ReasonMalformed)
	}
	p.toResync()
}

// noMemory drops the request being buffered because the Budget is spent;
// the rest of its body is skipped.
func (p *Parser) noMemory() {
	p.skipped(ReasonMemory)
	p.dropPartial()
	p.skip = true
}

// bodyDone ends the current request: a kept one is emitted, then the parser
// moves on to what follows the body.
func (p *Parser) bodyDone() {
	if !p.skip {
		r := p.req
		p.req = nil
		if p.blk == nil {
			// Framed in place: this is the one copy.
			p.blk = getBlock(len(r.Raw))
			p.blk.b = append(p.blk.b, r.Raw...)
		}
		r.Raw, r.blk, p.blk = p.blk.b, p.blk, nil
		p.cfg.Budget.Release(p.held)
		p.held = 0
		if r.Chunked {
			r.DecodedLen = p.chunk.Decoded()
		}
		r.Completed = p.now
		if r.UpgradeH2C {
			// Held for the connection, which knows from what follows
			// whether the server switched (TakeUpgrade).
			p.upgrade = r
		} else {
			p.emit(r)
		}
	}
	p.skip = false
	switch p.after {
	case stResync:
		p.toResync()
	case stSwitched:
		p.state = stSwitched
	default:
		p.state = stHead
	}
}

// emit hands over a complete request.
func (p *Parser) emit(r *Request) {
	p.stats.Emitted.Add(1)
	p.stats.EmittedBytes.Add(uint64(len(r.Raw)))
	if p.cfg.Emit != nil {
		tag := r.tag
		r.tag = nil
		p.cfg.Emit(r, tag)
	} else {
		r.Release()
	}
}

// bodyWant is the buffer to ask for when a Content-Length body needs room
// for need bytes of the total it will reach: twice what has arrived, so
// that growing costs few copies, never more than the total.
func bodyWant(need, total int) int {
	return min(total, 2*need+4096)
}

// appendPartial appends b to the partial request, growing the buffer (and
// its reservation) as needed. It reports false, and changes nothing, when
// the Budget refuses.
func (p *Parser) appendPartial(b []byte) bool {
	need := len(b)
	if p.blk != nil {
		need += len(p.blk.b)
	}
	if !p.ensure(need, 2*need) {
		return false
	}
	p.blk.b = append(p.blk.b, b...)
	return true
}

// ensure makes room for need bytes in the partial request buffer. When it
// must allocate, it takes a buffer of about want bytes, or of need bytes if
// the Budget cannot spare want. It reports false, and changes nothing, when
// the Budget cannot spare need either.
func (p *Parser) ensure(need, want int) bool {
	if p.blk != nil && cap(p.blk.b) >= need {
		return true
	}
	_, size := sizeClass(max(need, want))
	if !p.cfg.Budget.Reserve(int64(size) - p.held) {
		if _, size = sizeClass(need); !p.cfg.Budget.Reserve(int64(size) - p.held) {
			return false
		}
	}
	nb := getBlock(size)
	if p.blk != nil {
		nb.b = append(nb.b, p.blk.b...)
		putBlock(p.blk)
	}
	p.blk, p.held = nb, int64(size)
	return true
}

// dropPartial lets go of the partial request, if any, and of its buffer
// and reservation. A kept request dropped here is told to Config.Drop.
func (p *Parser) dropPartial() {
	if p.req != nil {
		if p.cfg.Drop != nil {
			p.cfg.Drop(p.req.tag)
		}
		p.req.Release()
		p.req = nil
	}
	if p.blk != nil {
		putBlock(p.blk)
		p.blk = nil
	}
	p.cfg.Budget.Release(p.held)
	p.held = 0
}
