package compare

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
	"strconv"
)

// errRestEqual stops a lock-step walk whose remaining bytes are the same on
// both sides: nothing after can differ.
var errRestEqual = errors.New("rest equal")

// frame is one level of the path being compared.
type frame struct {
	key []byte // object member: its raw key, between the quotes
	idx int    // array element: its index
	arr bool
}

// chainLevel is one container on the way from a container to the end of
// the run it starts in: where the member that holds the run's end starts,
// and its index.
type chainLevel struct {
	start  int // the container's '{' or '['
	member int // the start of the member (after the bracket or a comma)
	idx    int // the index of that member
}

// member is an object member, for the comparison of objects whose keys
// come in another order.
type member struct {
	key     []byte // as written, for paths
	cmp     []byte // unescaped, to match by
	vs, ve  int
	matched bool
}

// jsonDiff walks two JSON documents in lock step and records where they
// differ. It builds no trees: tokens are compared where they lie, and
// where the bytes of both documents are the same (a run, found with a
// word-at-a-time compare) only one side is scanned. Objects are compared
// member by member while their keys come in the same order; from the first
// key that differs, the rest of both objects is indexed and matched by key.
//
// A jsonDiff is reused from one comparison to the next and allocates
// nothing once its scratch space has grown.
type jsonDiff struct {
	a, b    []byte
	partial bool // either document is a prefix: its end ends the walk
	out     *pairBuf
	base    string

	frames  []frame
	members []member
	depth   int
	loose   int // > 0 while comparing members matched by key

	// The current run: a[i] == b[i+runDelta] for runStart <= i < runEnd.
	runStart, runEnd, runDelta int
	suffix                     int // length of the documents' common suffix

	// The containers from the last container that crossed the end of its
	// run down to the run's end, and the next one to descend into.
	chain      []chainLevel
	chainAt    int
	chainDelta int // the run's delta when the chain was made

	tb, ib, sa, sb []byte // scratch: paths, unescaped strings

	slow bool // tests: compare token by token everywhere, no runs
}

// diff compares a and b, recording differences in out under the path
// base ("body"). It reports false, and records nothing, when either is not
// JSON (or nests deeper than maxJSONDepth). With partial set, a document
// that ends early ends the comparison there, keeping what was found.
func (j *jsonDiff) diff(a, b []byte, partial bool, base string, out *pairBuf) bool {
	j.a, j.b, j.partial, j.base, j.out = a, b, partial, base, out
	j.frames, j.members = j.frames[:0], j.members[:0]
	j.depth, j.loose = 0, 0
	j.chain, j.chainAt = j.chain[:0], 0
	j.runStart, j.runDelta = 0, 0
	j.runEnd = mismatch(a, b)
	j.suffix = mismatchBack(a, b)
	r, q := out.mark()
	ea, eb, err := j.value(0, 0)
	switch {
	case err == nil:
		if ws(a, ea) != len(a) || ws(b, eb) != len(b) {
			out.rollback(r, q)
			return false
		}
	case err == errRestEqual, err == errJSONEOF && partial:
	default:
		out.rollback(r, q)
		return false
	}
	return true
}

// same reports whether the token of a that spans [ia, ea) is repeated in b
// at ib, byte for byte, and so is the byte after it (so that a number or
// literal ends in b where it ends in a).
func (j *jsonDiff) same(ia, ib, ea int) bool {
	if j.slow {
		return false
	}
	if ib-ia != j.runDelta || ia < j.runStart || ia >= j.runEnd {
		j.runStart, j.runDelta = ia, ib-ia
		j.runEnd = ia + mismatch(j.a[ia:], j.b[ib:])
	}
	return ea < j.runEnd
}

// restEqual reports whether what follows ia in a and ib in b is the same,
// in a walk that may stop there: nothing is left to compare.
func (j *jsonDiff) restEqual(ia, ib int) bool {
	ra := len(j.a) - ia
	return !j.slow && j.loose == 0 && ra == len(j.b)-ib && ra <= j.suffix
}

func (j *jsonDiff) emit(k diffKind, va, vb []byte, hasA, hasB bool) {
	if j.out.full() {
		return
	}
	j.tb = append(j.tb[:0], j.base...)
	j.ib = append(j.ib[:0], j.base...)
	for i := range j.frames {
		f := &j.frames[i]
		if f.arr {
			j.tb = append(j.tb, "[]"...)
			j.ib = append(j.ib, '[')
			j.ib = strconv.AppendInt(j.ib, int64(f.idx), 10)
			j.ib = append(j.ib, ']')
			continue
		}
		j.tb = j.appendKey(j.tb, f.key, true)
		j.ib = j.appendKey(j.ib, f.key, false)
	}
	j.out.addBody(k, j.tb, j.ib, va, vb, hasA, hasB)
}

// appendKey appends the path segment of an object member: ".name" for a
// plain name, `["any name"]` for others, and ".{id}" in a path template for
// a key that looks like an identifier (maps keyed by id).
func (j *jsonDiff) appendKey(dst, raw []byte, fold bool) []byte {
	key := raw
	if bytes.IndexByte(raw, '\\') >= 0 {
		j.sa = unescape(j.sa[:0], raw)
		key = j.sa
	}
	return appendPathKey(dst, key, fold)
}

func appendPathKey(dst, key []byte, fold bool) []byte {
	if fold && looksLikeID(key) {
		return append(dst, ".{id}"...)
	}
	if plainKey(key) {
		dst = append(dst, '.')
		return append(dst, key...)
	}
	dst = append(dst, "[\""...)
	for _, c := range key {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, "\"]"...)
}

func plainKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '$', c == '@':
		default:
			return false
		}
	}
	return true
}

func (j *jsonDiff) value(ia, ib int) (int, int, error) {
	a, b := j.a, j.b
	ia, ib = ws(a, ia), ws(b, ib)
	if ia >= len(a) || ib >= len(b) {
		return ia, ib, errJSONEOF
	}
	if j.restEqual(ia, ib) {
		return ia, ib, errRestEqual
	}
	ka, kb := jsonKinds[a[ia]], jsonKinds[b[ib]]
	if ka == jNone || kb == jNone {
		return ia, ib, errJSONSyntax
	}
	if ka != kb {
		ea, err := skipValue(a, ia)
		if err != nil {
			return ea, ib, err
		}
		eb, err := skipValue(b, ib)
		if err != nil {
			return ea, eb, err
		}
		j.emit(kindType, a[ia:ea], b[ib:eb], true, true)
		return ea, eb, nil
	}
	switch ka {
	case jObject, jArray:
		if j.depth == maxJSONDepth {
			return ia, ib, errJSONDepth
		}
		h := j.hint(ia, ib)
		if h == nil && j.same(ia, ib, ia) {
			// Both documents hold the same bytes here: find where the
			// container ends, or the way to where the run ends, with a
			// scan of one side that looks at brackets and quotes only.
			end, crossed := j.fastScan(ia)
			if !crossed {
				return end, end + j.runDelta, nil
			}
			h = j.hint(ia, ib)
		}
		j.depth++
		var ea, eb int
		var err error
		if ka == jObject {
			ea, eb, err = j.object(ia, ib, h)
		} else {
			ea, eb, err = j.array(ia, ib, h)
		}
		j.depth--
		return ea, eb, err
	}
	ea, err := scanScalar(a, ia, ka)
	if err != nil {
		return ea, ib, err
	}
	if j.partial && ea == len(a) {
		return ea, ib, errJSONEOF // a number or literal may go on
	}
	if j.same(ia, ib, ea) {
		return ea, ib + ea - ia, nil
	}
	eb, err := scanScalar(b, ib, kb)
	if err != nil {
		return ea, eb, err
	}
	if j.partial && eb == len(b) {
		return ea, eb, errJSONEOF
	}
	va, vb := a[ia:ea], b[ib:eb]
	if bytes.Equal(va, vb) {
		return ea, eb, nil
	}
	var eq bool
	switch ka {
	case jString:
		eq = j.stringEqual(va[1:len(va)-1], vb[1:len(vb)-1])
	case jNumber:
		eq = numEqual(va, vb)
	}
	if !eq {
		j.emit(kindValue, va, vb, true, true)
	}
	return ea, eb, nil
}

// stringEqual compares the contents of two JSON strings after unescaping.
func (j *jsonDiff) stringEqual(x, y []byte) bool {
	if bytes.Equal(x, y) {
		return true
	}
	if bytes.IndexByte(x, '\\') < 0 && bytes.IndexByte(y, '\\') < 0 {
		return false
	}
	j.sa = unescape(j.sa[:0], x)
	j.sb = unescape(j.sb[:0], y)
	return bytes.Equal(j.sa, j.sb)
}

// hint returns the chain level of the container at start, when the walk
// is descending along the chain.
func (j *jsonDiff) hint(start, ib int) *chainLevel {
	if j.chainAt < len(j.chain) && j.chain[j.chainAt].start == start && ib-start == j.chainDelta {
		j.chainAt++
		return &j.chain[j.chainAt-1]
	}
	return nil
}

// hasByte has the high bit set in each byte of w that is c, and maybe in
// bytes after one that is: its lowest set bit is exact.
func hasByte(w uint64, c byte) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x := w ^ (lo * uint64(c))
	return (x - lo) &^ x & hi
}

// structural marks the bytes that fastScan stops at.
var structural = func() (t [256]bool) {
	for _, c := range []byte{'"', '{', '[', ',', '}', ']'} {
		t[c] = true
	}
	return t
}()

// fastScan scans the container at a[start], which lies in the current run,
// for its end. When the end is before the run's end, both documents hold
// the same container and it returns the end. Else it records in j.chain
// the containers that hold the run's end, outermost first, each with the
// member that holds it, and reports crossed. It validates nothing: bytes
// that both documents share cannot differ, whatever they are.
func (j *jsonDiff) fastScan(start int) (end int, crossed bool) {
	a, limit := j.a, j.runEnd
	j.chain, j.chainAt, j.chainDelta = j.chain[:0], 0, j.runDelta
	for i := start; i < limit; i++ {
		for i < limit && !structural[a[i]] {
			i++
		}
		if i >= limit {
			break
		}
		switch a[i] {
		case '"':
			for i++; i < limit; i++ {
				// Eight bytes at a time to the next quote or backslash.
				for i+8 <= limit {
					w := binary.LittleEndian.Uint64(a[i:])
					if m := hasByte(w, '"') | hasByte(w, '\\'); m != 0 {
						i += bits.TrailingZeros64(m) / 8
						break
					}
					i += 8
				}
				if i >= limit {
					break
				}
				if c := a[i]; c == '"' {
					break
				} else if c == '\\' {
					i++
				}
			}
			if i >= limit {
				return limit, true
			}
		case '{', '[':
			if len(j.chain) == maxJSONDepth {
				j.chain = j.chain[:0]
				return i, true
			}
			j.chain = append(j.chain, chainLevel{start: i, member: i + 1})
		case ',':
			if n := len(j.chain); n > 0 {
				j.chain[n-1].member = i + 1
				j.chain[n-1].idx++
			}
		default: // '}', ']'
			j.chain = j.chain[:len(j.chain)-1]
			if len(j.chain) == 0 {
				return i + 1, false
			}
		}
	}
	return limit, true
}

// next reads what follows a value in a container of d: a comma (then a
// member or element must follow) or the closing byte (left unread).
func next(d []byte, i int, closer byte) (int, bool, error) {
	i = ws(d, i)
	if i >= len(d) {
		return i, false, errJSONEOF
	}
	switch d[i] {
	case ',':
		return i + 1, true, nil
	case closer:
		return i, false, nil
	}
	return i, false, errJSONSyntax
}

func (j *jsonDiff) object(ia, ib int, h *chainLevel) (int, int, error) {
	a, b := j.a, j.b
	ia, ib = ia+1, ib+1
	j.frames = append(j.frames, frame{})
	fi := len(j.frames) - 1
	needA, needB := false, false // a comma was read: a member must follow
	if h != nil {
		// The members before this one are the same on both sides.
		ib += h.member - ia
		ia = h.member
		needA, needB = h.idx > 0, h.idx > 0
	}
	for {
		ia, ib = ws(a, ia), ws(b, ib)
		if ia >= len(a) || ib >= len(b) {
			return ia, ib, errJSONEOF
		}
		ca, cb := a[ia], b[ib]
		if (ca == '}' && needA) || (cb == '}' && needB) || (ca != '"' && ca != '}') || (cb != '"' && cb != '}') {
			return ia, ib, errJSONSyntax
		}
		if ca == '}' && cb == '}' {
			j.frames = j.frames[:fi]
			return ia + 1, ib + 1, nil
		}
		if ca == '}' || cb == '}' {
			return j.looseObject(fi, ia, ib)
		}
		if j.restEqual(ia, ib) {
			return ia, ib, errRestEqual
		}
		ka, err := scanString(a, ia)
		if err != nil {
			return ka, ib, err
		}
		var kb int
		if j.same(ia, ib, ka) {
			kb = ib + ka - ia
		} else {
			if kb, err = scanString(b, ib); err != nil {
				return ka, kb, err
			}
			if !j.stringEqual(a[ia+1:ka-1], b[ib+1:kb-1]) {
				return j.looseObject(fi, ia, ib)
			}
		}
		j.frames[fi].key = a[ia+1 : ka-1]
		ia, ib = ws(a, ka), ws(b, kb)
		if ia >= len(a) || ib >= len(b) {
			return ia, ib, errJSONEOF
		}
		if a[ia] != ':' || b[ib] != ':' {
			return ia, ib, errJSONSyntax
		}
		if ia, ib, err = j.value(ia+1, ib+1); err != nil {
			return ia, ib, err
		}
		if ia, needA, err = next(a, ia, '}'); err != nil {
			return ia, ib, err
		}
		if ib, needB, err = next(b, ib, '}'); err != nil {
			return ia, ib, err
		}
	}
}

// collect appends the members of d from i (at a key or at the closing
// brace) to j.members, and returns the index after the object. With
// partial set, a document that ends early ends the object: inc says so.
func (j *jsonDiff) collect(d []byte, i int) (end int, inc bool, err error) {
	need := false
	for {
		i = ws(d, i)
		if i >= len(d) {
			break
		}
		if d[i] == '}' {
			if need {
				return i, false, errJSONSyntax
			}
			return i + 1, false, nil
		}
		if d[i] != '"' {
			return i, false, errJSONSyntax
		}
		ke, err := scanString(d, i)
		if err != nil {
			break
		}
		key := d[i+1 : ke-1]
		vs := ws(d, ke)
		if vs >= len(d) {
			break
		}
		if d[vs] != ':' {
			return vs, false, errJSONSyntax
		}
		vs++
		ve, err := skipValue(d, vs)
		if err != nil {
			if err == errJSONEOF {
				break
			}
			return ve, false, err
		}
		m := member{key: key, cmp: key, vs: vs, ve: ve}
		if bytes.IndexByte(key, '\\') >= 0 {
			m.cmp = unescape(nil, key) // rare: worth a copy
		}
		j.members = append(j.members, m)
		if i, need, err = next(d, ve, '}'); err != nil {
			if err == errJSONEOF {
				break
			}
			return i, false, err
		}
	}
	if !j.partial {
		return len(d), false, errJSONEOF
	}
	return len(d), true, nil
}

// looseObject compares the rest of two objects, from the members at ia and
// ib, matching members by key whatever their order.
func (j *jsonDiff) looseObject(fi, ia, ib int) (int, int, error) {
	base := len(j.members)
	ea, incA, err := j.collect(j.a, ia)
	if err != nil {
		return ea, ib, err
	}
	na := len(j.members) - base
	eb, incB, err := j.collect(j.b, ib)
	if err != nil {
		return ea, eb, err
	}
	nb := len(j.members) - base - na
	j.loose++
	if na*nb > 64 {
		err = j.matchSorted(fi, base, na, nb, incA, incB)
	} else {
		err = j.matchLinear(fi, base, na, nb, incA, incB)
	}
	j.loose--
	j.members = j.members[:base]
	j.frames = j.frames[:fi]
	if err == nil && (incA || incB) {
		err = errJSONEOF
	}
	return ea, eb, err
}

// matchLinear pairs members by key, one search each: for small objects.
func (j *jsonDiff) matchLinear(fi, base, na, nb int, incA, incB bool) error {
	for x := 0; x < na; x++ {
		found := -1
		for y := 0; y < nb; y++ {
			ma, mb := &j.members[base+x], &j.members[base+na+y]
			if !mb.matched && bytes.Equal(ma.cmp, mb.cmp) {
				found = y
				break
			}
		}
		ma := j.members[base+x]
		j.frames[fi].key = ma.key
		if found < 0 {
			if !incB {
				j.emit(kindMissing, j.a[ma.vs:ma.ve], nil, true, false)
			}
			continue
		}
		j.members[base+na+found].matched = true
		if _, _, err := j.value(ma.vs, j.members[base+na+found].vs); err != nil {
			return err
		}
	}
	if !incA {
		for y := 0; y < nb; y++ {
			if mb := j.members[base+na+y]; !mb.matched {
				j.frames[fi].key = mb.key
				j.emit(kindExtra, nil, j.b[mb.vs:mb.ve], false, true)
			}
		}
	}
	return nil
}

func cmpMember(x, y member) int { return bytes.Compare(x.cmp, y.cmp) }

// matchSorted pairs the members of large objects by sorting both sides by
// key and merging.
func (j *jsonDiff) matchSorted(fi, base, na, nb int, incA, incB bool) error {
	slices.SortStableFunc(j.members[base:base+na], cmpMember)
	slices.SortStableFunc(j.members[base+na:base+na+nb], cmpMember)
	x, y := 0, 0
	for x < na || y < nb {
		var c int
		switch {
		case x == na:
			c = 1
		case y == nb:
			c = -1
		default:
			c = bytes.Compare(j.members[base+x].cmp, j.members[base+na+y].cmp)
		}
		switch {
		case c < 0:
			ma := j.members[base+x]
			if !incB {
				j.frames[fi].key = ma.key
				j.emit(kindMissing, j.a[ma.vs:ma.ve], nil, true, false)
			}
			x++
		case c > 0:
			mb := j.members[base+na+y]
			if !incA {
				j.frames[fi].key = mb.key
				j.emit(kindExtra, nil, j.b[mb.vs:mb.ve], false, true)
			}
			y++
		default:
			ma, mb := j.members[base+x], j.members[base+na+y]
			j.frames[fi].key = ma.key
			if _, _, err := j.value(ma.vs, mb.vs); err != nil {
				return err
			}
			x++
			y++
		}
	}
	return nil
}

func (j *jsonDiff) array(ia, ib int, h *chainLevel) (int, int, error) {
	a, b := j.a, j.b
	ia, ib = ia+1, ib+1
	j.frames = append(j.frames, frame{arr: true})
	fi := len(j.frames) - 1
	needA, needB := false, false
	idx := 0
	if h != nil {
		ib += h.member - ia
		ia, idx = h.member, h.idx
		needA, needB = idx > 0, idx > 0
	}
	var err error
	for ; ; idx++ {
		ia, ib = ws(a, ia), ws(b, ib)
		eofA, eofB := ia >= len(a), ib >= len(b)
		endA := !eofA && a[ia] == ']'
		endB := !eofB && b[ib] == ']'
		if (endA && needA) || (endB && needB) {
			return ia, ib, errJSONSyntax
		}
		if endA && endB {
			j.frames = j.frames[:fi]
			return ia + 1, ib + 1, nil
		}
		j.frames[fi].idx = idx
		switch {
		case endA && !eofB: // the shadow's array is longer
			eb, err := skipValue(b, ib)
			if err != nil {
				return ia, eb, err
			}
			j.emit(kindExtra, nil, b[ib:eb], false, true)
			if ib, needB, err = next(b, eb, ']'); err != nil {
				return ia, ib, err
			}
			continue
		case endB && !eofA: // the primary's array is longer
			ea, err := skipValue(a, ia)
			if err != nil {
				return ea, ib, err
			}
			j.emit(kindMissing, a[ia:ea], nil, true, false)
			if ia, needA, err = next(a, ea, ']'); err != nil {
				return ia, ib, err
			}
			continue
		case eofA || eofB:
			return ia, ib, errJSONEOF
		}
		if ia, ib, err = j.value(ia, ib); err != nil {
			return ia, ib, err
		}
		if ia, needA, err = next(a, ia, ']'); err != nil {
			return ia, ib, err
		}
		if ib, needB, err = next(b, ib, ']'); err != nil {
			return ia, ib, err
		}
	}
}
