package compare

import (
	"unicode/utf8"
)

// diffKind says how one field differs.
type diffKind uint8

// Kinds of difference, as the report names them.
const (
	kindValue   diffKind = iota // both hold the field, with other values
	kindMissing                 // the primary's answer holds it, the shadow's does not
	kindExtra                   // the shadow's answer holds it, the primary's does not
	kindType                    // a JSON value of another type (number and string, ...)
	kindLines                   // text bodies differ in these lines
	kindBytes                   // opaque bodies differ in length or content
	nKinds
)

var kindNames = [nKinds]string{"value", "missing", "extra", "type", "lines", "bytes"}

func (k diffKind) String() string {
	if k < nKinds {
		return kindNames[k]
	}
	return "value"
}

// span is a piece of a pairBuf's arena.
type span struct{ off, n int32 }

// record is one difference between two answers.
type record struct {
	kind       diffKind
	tmpl, inst span // the path of the field, and of this instance of it
	va, vb     span // the values, when kept (capped, redacted)
	hasA, hasB bool // whether each side holds the field
	line       int32
}

// Bounds of what one comparison keeps.
const (
	// maxRecords is the most differences counted for one pair of answers.
	// Beyond it the pair is still judged from those it holds.
	maxRecords = 256
	// valueCap is the most bytes kept of one value in a record.
	valueCap = 240
)

const redacted = "[redacted]"

var redactedBytes = []byte(redacted)

// pairBuf collects the differences of one comparison: records and their
// paths and values in one arena, reused from one pair to the next so that
// comparing allocates nothing once warm.
type pairBuf struct {
	recs      []record
	arena     []byte
	values    bool // keep values (not needed to count noise)
	elided    int  // differences beyond maxRecords
	truncated bool // a body was compared on a prefix only
	red       *redactor
	scratch   []byte
}

func (p *pairBuf) reset(values bool) {
	p.recs = p.recs[:0]
	p.arena = p.arena[:0]
	p.values = values
	p.elided = 0
	p.truncated = false
}

func (p *pairBuf) get(s span) []byte { return p.arena[s.off : s.off+s.n] }

func (p *pairBuf) mark() (int, int) { return len(p.recs), len(p.arena) }

func (p *pairBuf) rollback(r, a int) {
	p.recs = p.recs[:r]
	p.arena = p.arena[:a]
}

func (p *pairBuf) putStr(b string) span {
	off := len(p.arena)
	p.arena = append(p.arena, b...)
	return span{int32(off), int32(len(b))}
}

func (p *pairBuf) put(b []byte) span {
	off := len(p.arena)
	p.arena = append(p.arena, b...)
	return span{int32(off), int32(len(b))}
}

// putValue keeps at most valueCap bytes of v, cut at a rune boundary and
// marked with an ellipsis when cut.
func (p *pairBuf) putValue(v []byte) span {
	if len(v) <= valueCap {
		return p.put(v)
	}
	cut := valueCap
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	off := len(p.arena)
	p.arena = append(p.arena, v[:cut]...)
	p.arena = append(p.arena, "…"...)
	return span{int32(off), int32(len(p.arena) - off)}
}

// full reports whether the pair holds as many records as it may, counting
// the one that does not fit.
func (p *pairBuf) full() bool {
	if len(p.recs) >= maxRecords {
		p.elided++
		return true
	}
	return false
}

// addBody records a difference in a body field, redacting its values as
// the configuration says: a redacted field shows "[redacted]", and a JSON
// value that holds redacted fields shows them redacted.
func (p *pairBuf) addBody(k diffKind, tmpl, inst, va, vb []byte, hasA, hasB bool) {
	if p.full() {
		return
	}
	r := record{kind: k, hasA: hasA, hasB: hasB}
	r.tmpl = p.put(tmpl)
	if string(inst) == string(tmpl) {
		r.inst = r.tmpl
	} else {
		r.inst = p.put(inst)
	}
	if p.values {
		mode := p.red.bodyMode(tmpl)
		if hasA {
			r.va = p.redactedValue(mode, tmpl, va)
		}
		if hasB {
			r.vb = p.redactedValue(mode, tmpl, vb)
		}
	}
	p.recs = append(p.recs, r)
}

func (p *pairBuf) redactedValue(mode redactMode, tmpl, v []byte) span {
	switch mode {
	case redactFull:
		return p.putStr(redacted)
	case redactInside:
		out, ok := rewriteCompact(p.scratch[:0], v, string(tmpl), p.red)
		p.scratch = out[:0]
		if !ok {
			return p.putStr(redacted)
		}
		return p.putValue(out)
	}
	return p.putValue(v)
}

// addRaw records a difference whose values the caller has already made
// fit to show (headers redact by name, status codes hold no secret).
func (p *pairBuf) addRaw(k diffKind, path []byte, va, vb []byte, hasA, hasB bool) {
	if p.full() {
		return
	}
	r := record{kind: k, hasA: hasA, hasB: hasB}
	r.tmpl = p.put(path)
	r.inst = r.tmpl
	if p.values {
		if hasA {
			r.va = p.putValue(va)
		}
		if hasB {
			r.vb = p.putValue(vb)
		}
	}
	p.recs = append(p.recs, r)
}
