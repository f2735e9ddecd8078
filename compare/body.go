package compare

import (
	"bytes"
	"hash/fnv"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// mediaKind is how a body is compared.
type mediaKind uint8

const (
	mediaUnknown mediaKind = iota // no Content-Type: JSON if it looks like it, else text or bytes
	mediaJSON
	mediaForm
	mediaText
	mediaBytes
)

var mediaNames = [...]string{"unknown", "json", "form", "text", "binary"}

func (m mediaKind) String() string { return mediaNames[m] }

// mediaOf classifies an answer by its Content-Type.
func mediaOf(h []httpmsg.Field) mediaKind {
	var ct []byte
	found := false
	for _, f := range h {
		if httpsyntax.EqualFold(f.Name, "content-type") {
			ct, found = f.Value, true
			break
		}
	}
	if !found {
		return mediaUnknown
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = httpsyntax.TrimOWS(ct)
	slash := bytes.IndexByte(ct, '/')
	if slash < 0 {
		return mediaBytes
	}
	typ, sub := ct[:slash], ct[slash+1:]
	switch {
	case httpsyntax.EqualFold(sub, "json") || hasSuffixFold(sub, "+json"):
		return mediaJSON
	case httpsyntax.EqualFold(typ, "application") && httpsyntax.EqualFold(sub, "x-www-form-urlencoded"):
		return mediaForm
	case httpsyntax.EqualFold(typ, "text"),
		httpsyntax.EqualFold(sub, "xml"), hasSuffixFold(sub, "+xml"),
		httpsyntax.EqualFold(sub, "javascript"), httpsyntax.EqualFold(sub, "x-ndjson"),
		httpsyntax.EqualFold(sub, "yaml"), httpsyntax.EqualFold(sub, "x-yaml"),
		httpsyntax.EqualFold(sub, "graphql"), httpsyntax.EqualFold(sub, "csv"):
		return mediaText
	}
	return mediaBytes
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && httpsyntax.EqualFold(b[len(b)-len(suffix):], suffix)
}

func looksJSON(b []byte) bool {
	i := ws(b, 0)
	return i < len(b) && (b[i] == '{' || b[i] == '[')
}

// bodies compares the decoded bodies of two answers.
func (c *comparer) bodies(a, b *view, out *pairBuf) {
	if !a.ready && !b.ready && !a.ans.Truncated && !b.ans.Truncated &&
		bytes.Equal(a.enc, b.enc) && bytes.Equal(a.ans.Body, b.ans.Body) {
		return // the same bytes in the same coding
	}
	c.ensure(a)
	c.ensure(b)
	if a.err != nil || b.err != nil {
		c.undecodable(a, b, out)
		return
	}
	pa, pb := a.body, b.body
	partial := a.cut || b.cut
	if partial {
		out.truncated = true
		// What both hold: the shorter body, when it is cut; all of the
		// shorter and the start of the longer when only the longer is.
		n := min(len(pa), len(pb))
		shortCut := (len(pa) <= len(pb) && a.cut) || (len(pb) <= len(pa) && b.cut)
		if shortCut && bytes.Equal(pa[:n], pb[:n]) {
			return
		}
	} else if bytes.Equal(pa, pb) {
		return
	}
	media := a.media
	if media == mediaUnknown {
		media = b.media
	}
	if media == mediaUnknown && looksJSON(pa) && looksJSON(pb) {
		media = mediaJSON
	}
	switch media {
	case mediaJSON:
		if c.jd.diff(pa, pb, partial, "body", out) {
			return
		}
		if utf8.Valid(pa) && utf8.Valid(pb) {
			textDiff(pa, pb, a.cut, b.cut, out)
			return
		}
	case mediaForm:
		formDiff(pa, pb, a.cut, b.cut, out)
		return
	case mediaText:
		textDiff(pa, pb, a.cut, b.cut, out)
		return
	case mediaUnknown:
		if utf8.Valid(pa) && utf8.Valid(pb) {
			textDiff(pa, pb, a.cut, b.cut, out)
			return
		}
	}
	bytesDiff(pa, pb, a.cut, b.cut, out)
}

// textDiff compares text by lines: the lines before the first difference
// and after the last one are the same; the block between is reported, with
// the number of its first line. When a body is cut, only what both hold is
// compared, and the first differing line is reported.
func textDiff(a, b []byte, cutA, cutB bool, out *pairBuf) {
	p := mismatch(a, b)
	n := min(len(a), len(b))
	cut := cutA || cutB
	if p == len(a) && p == len(b) {
		return
	}
	if cut && p == n && ((len(a) <= len(b) && cutA) || (len(b) <= len(a) && cutB)) {
		return // the shorter one was cut where they still agreed
	}
	ls := bytes.LastIndexByte(a[:p], '\n') + 1
	line := bytes.Count(a[:ls], []byte{'\n'}) + 1
	ea, eb := len(a), len(b)
	if !cut {
		s := mismatchBack(a[ls:], b[ls:])
		ea, eb = len(a)-s, len(b)-s
		// End the block at the end of a line.
		if k := bytes.IndexByte(a[ea:], '\n'); k >= 0 && ((ea > 0 && a[ea-1] != '\n') || (eb > 0 && b[eb-1] != '\n')) {
			ea += k + 1
			eb += k + 1
		}
	} else {
		if k := bytes.IndexByte(a[ls:], '\n'); k >= 0 {
			ea = ls + k + 1
		}
		if k := bytes.IndexByte(b[ls:], '\n'); k >= 0 {
			eb = ls + k + 1
		}
	}
	ha, hb := bytes.TrimSuffix(a[ls:ea], []byte{'\n'}), bytes.TrimSuffix(b[ls:eb], []byte{'\n'})
	if out.full() {
		return
	}
	r := record{kind: kindLines, line: int32(min(line, 1<<30)), hasA: true, hasB: true}
	r.tmpl = out.putStr("body")
	r.inst = r.tmpl
	if out.values {
		r.va, r.vb = out.putValue(ha), out.putValue(hb)
	}
	out.recs = append(out.recs, r)
}

// bytesDiff reports opaque bodies that differ, by length and hash.
func bytesDiff(a, b []byte, cutA, cutB bool, out *pairBuf) {
	if cutA || cutB {
		n := min(len(a), len(b))
		if (len(a) <= len(b) && cutA) || (len(b) <= len(a) && cutB) {
			a, b = a[:n], b[:n]
		}
		if bytes.Equal(a, b) {
			return
		}
	}
	var da, db []byte
	if out.values {
		da = describeBytes(nil, a, cutA)
		db = describeBytes(nil, b, cutB)
	}
	out.addRaw(kindBytes, []byte("body"), da, db, true, true)
}

func describeBytes(dst, b []byte, cut bool) []byte {
	h := fnv.New64a()
	h.Write(b)
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, " bytes"...)
	if cut {
		dst = append(dst, " (a prefix)"...)
	}
	dst = append(dst, ", fnv64a "...)
	dst = strconv.AppendUint(dst, h.Sum64(), 16)
	return dst
}

// formDiff compares application/x-www-form-urlencoded bodies by key: the
// values of each key, in order.
func formDiff(a, b []byte, cutA, cutB bool, out *pairBuf) {
	fa, fb := parseForm(a, cutA), parseForm(b, cutB)
	keys := make([]string, 0, len(fa)+len(fb))
	for k := range fa {
		keys = append(keys, k)
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var tmpl, inst []byte
	for _, k := range keys {
		va, okA := fa[k]
		vb, okB := fb[k]
		if okA && okB && slices.Equal(va, vb) {
			continue
		}
		if (cutA && !okA) || (cutB && !okB) {
			continue // perhaps in the part that was not kept
		}
		tmpl = appendPathKey(append(tmpl[:0], "body"...), []byte(k), true)
		inst = appendPathKey(append(inst[:0], "body"...), []byte(k), false)
		kind := kindValue
		switch {
		case !okB:
			kind = kindMissing
		case !okA:
			kind = kindExtra
		}
		out.addBody(kind, tmpl, inst, []byte(strings.Join(va, ", ")), []byte(strings.Join(vb, ", ")), okA, okB)
	}
}

func parseForm(b []byte, cut bool) map[string][]string {
	s := string(b)
	if cut {
		// The last pair may be cut.
		if i := strings.LastIndexByte(s, '&'); i >= 0 {
			s = s[:i]
		} else {
			s = ""
		}
	}
	m := make(map[string][]string)
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if u, err := url.QueryUnescape(k); err == nil {
			k = u
		}
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
		m[k] = append(m[k], v)
	}
	return m
}

// undecodable compares answers of which one at least could not be
// decoded: as bytes when neither could, else as a difference of the body.
func (c *comparer) undecodable(a, b *view, out *pairBuf) {
	ra, rb := a.ans.Body, b.ans.Body
	if a.err != nil && b.err != nil {
		if !bytes.Equal(ra, rb) {
			bytesDiff(ra, rb, a.ans.Truncated, b.ans.Truncated, out)
		}
		return
	}
	var da, db []byte
	if out.values {
		da = describeDecoded(a)
		db = describeDecoded(b)
	}
	out.addRaw(kindValue, []byte("body"), da, db, true, true)
}

func describeDecoded(v *view) []byte {
	if v.err != nil {
		return []byte("cannot decode: " + v.err.Error())
	}
	d := strconv.AppendInt(nil, int64(len(v.body)), 10)
	d = append(d, " bytes decoded"...)
	if v.removed != nil {
		d = append(d, " from "...)
		d = append(d, v.removed...)
	}
	return d
}
