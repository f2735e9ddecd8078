package httpframe

import (
	"github.com/shadowtee/shadowtee/httpsyntax"

	"bytes"
	"sync"
	"time"
)

// toResync loses framing: from now on the parser looks for a plausible
// request line.
func (p *Parser) toResync() {
	p.dropPartial()
	p.state = stResync
}

// resync looks for a plausible request line: a known method, then what
// lineMatch accepts in known mode. The method may start anywhere, not only
// at a line start, because the last body before a loss of framing rarely
// ends with a LF: "...}POST /x HTTP/1.1" must be found. Candidates are
// anchored on the SP after the method, so bytes without SP cost one
// IndexByte.
//
// Only two things outlive a call: the last few token bytes, which may begin
// a method (a small pooled tail), and a candidate line that is accepted so
// far (kept in the parser's buffer until it is accepted or refused).
func (p *Parser) resync(b []byte, t time.Time) int {
	if p.blk != nil {
		// A candidate line began in an earlier call.
		n, res := p.m.feed(b, true)
		switch res {
		case matchMore:
			if int(p.m.total) < p.cfg.maxHeader() && p.appendPartial(b) {
				return len(b)
			}
		case matchOK:
			if p.appendPartial(b[:n]) {
				p.stats.Resyncs.Add(1)
				p.lineDone()
				return n
			}
		}
		// A refused candidate is skipped whole; scan b afresh.
		p.garbage(len(p.blk.b))
		p.dropPartial()
	}
	if p.tail != nil {
		if n, found := p.resyncTail(b, t); found {
			return n
		}
	}
	for from := 0; ; {
		s := bytes.IndexByte(b[from:], ' ')
		if s < 0 {
			break
		}
		s += from
		from = s + 1
		cand := methodBefore(b[:s])
		if cand < 0 {
			continue
		}
		p.m.reset()
		_, res := p.m.feed(b[cand:], true)
		switch res {
		case matchOK:
			// Let the head step parse the request from here, in place.
			p.garbage(cand)
			p.stats.Resyncs.Add(1)
			p.state = stHead
			return cand
		case matchMore:
			p.garbage(cand)
			if int(p.m.total) < p.cfg.maxHeader() && p.appendPartial(b[cand:]) {
				p.start = t
			} else {
				p.garbage(len(b) - cand)
			}
			return len(b)
		}
	}
	// Keep the last token bytes: the next call may end a method with them.
	k := 0
	for k < maxMethodLen && k < len(b) && httpsyntax.Class(b[len(b)-1-k])&httpsyntax.ClassToken != 0 {
		k++
	}
	p.garbage(len(b) - k)
	if k > 0 {
		p.keepTail(b[len(b)-k:], t)
	}
	return len(b)
}

// resyncTail looks for a candidate whose method starts in the tail kept
// from the previous call and ends at a SP in the first bytes of b. It
// reports whether it found one (or grew the tail with all of b), and how
// much of b it consumed then; otherwise the tail is counted as garbage.
func (p *Parser) resyncTail(b []byte, t time.Time) (int, bool) {
	tl := p.tail
	s := bytes.IndexByte(b[:min(len(b), maxMethodLen)], ' ')
	if s < 0 && len(b) < maxMethodLen && httpsyntax.IsToken(b) {
		p.keepTail(b, t) // a method may still be under way
		return len(b), true
	}
	if s < 0 || s > 0 && !httpsyntax.IsToken(b[:s]) {
		p.dropTail()
		return 0, false
	}
	var j [2 * maxMethodLen]byte
	n := copy(j[:], tl.b[:tl.n])
	n += copy(j[n:], b[:s])
	cand := methodBefore(j[:n])
	if cand < 0 || cand >= tl.n {
		p.dropTail()
		return 0, false
	}
	p.m.reset()
	p.m.feed(tl.b[cand:tl.n], true)
	k, res := p.m.feed(b, true)
	if res == matchFail || res == matchMore && int(p.m.total) >= p.cfg.maxHeader() {
		p.dropTail()
		return 0, false
	}
	p.garbage(cand)
	p.start = tl.t[cand]
	ok := p.appendPartial(tl.b[cand:tl.n]) && p.appendPartial(b[:k])
	if !ok {
		p.garbage(tl.n - cand + k)
		p.dropPartial()
	}
	p.tail = nil
	tailPool.Put(tl)
	if ok && res == matchOK {
		p.stats.Resyncs.Add(1)
		p.lineDone()
	}
	return k, true
}

// tail holds the last bytes of earlier calls that may begin a method, each
// with the capture time of its call, so that a request found across calls
// gets the Time of its first byte.
type tail struct {
	n int
	b [maxMethodLen]byte
	t [maxMethodLen]time.Time
}

var tailPool = sync.Pool{New: func() any { return new(tail) }}

// keepTail appends b, bytes of the call at t, to the tail. The oldest bytes
// beyond maxMethodLen cannot begin a method any more: they are garbage.
func (p *Parser) keepTail(b []byte, t time.Time) {
	if p.tail == nil {
		p.tail = tailPool.Get().(*tail)
		p.tail.n = 0
	}
	tl := p.tail
	if drop := tl.n + len(b) - maxMethodLen; drop > 0 {
		p.garbage(drop)
		copy(tl.b[:], tl.b[drop:tl.n])
		copy(tl.t[:], tl.t[drop:tl.n])
		tl.n -= drop
	}
	for _, c := range b {
		tl.b[tl.n], tl.t[tl.n] = c, t
		tl.n++
	}
}

// dropTail counts the tail as garbage and lets go of it.
func (p *Parser) dropTail() {
	if p.tail != nil {
		p.garbage(p.tail.n)
		tailPool.Put(p.tail)
		p.tail = nil
	}
}

// garbage counts n discarded bytes.
func (p *Parser) garbage(n int) {
	if n > 0 {
		p.stats.GarbageBytes.Add(uint64(n))
	}
}
