package compare

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// Bounds of an example.
const (
	exampleBodyCap = 16 << 10 // bytes of each body shown
	requestBodyCap = 4 << 10  // bytes of the request body shown and replayed
	maxExampleDiff = 64       // differences listed
)

// example is an endpoint's example, with what the engine needs of it. The
// marks of x are those of when it was taken; Report marks it anew from
// the fields' verdicts of the moment (current).
type example struct {
	x            *Example
	bodyA, bodyB []string // the field path of each part of each body ("" for none)
	hdrA, hdrB   []string // ... of each header row
	status       bool     // the status codes differ
	diffs        []string // ... of each difference
	size         int64
}

func strPtr(b []byte) *string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return &s
}

// makeExample builds the example of a pair judged different, from the
// records in e.pair. Everything in it is redacted.
func (e *Engine) makeExample(rs *ruleState, ep *endpoint, ex *Exchange, pv, sv *view, at time.Time) *example {
	x := &Example{
		Time:      at.UTC(),
		Proto:     ex.Proto.String(),
		Method:    ex.Method,
		Authority: ex.Authority,
		Target:    ex.Path,
		Truncated: e.pair.truncated,
	}
	out := &example{x: x}
	// What each side shows marked, by instance path (body), name
	// (headers) or line, and the field that marks it.
	marksA, marksB := map[string]string{}, map[string]string{}
	hdrA, hdrB := map[string]string{}, map[string]string{}
	var lineA, lineB []lineMark
	for i := range e.pair.recs {
		r := &e.pair.recs[i]
		tmpl, inst := string(e.pair.get(r.tmpl)), string(e.pair.get(r.inst))
		path := e.fbuf[i].path
		if len(x.Differences) < maxExampleDiff {
			d := Difference{Path: inst, Kind: r.kind.String(), Line: int(r.line)}
			if r.hasA {
				d.Primary = strPtr(e.pair.get(r.va))
			}
			if r.hasB {
				d.Shadow = strPtr(e.pair.get(r.vb))
			}
			x.Differences = append(x.Differences, d)
			out.diffs = append(out.diffs, path)
		}
		switch {
		case tmpl == "status":
			out.status = true
		case strings.HasPrefix(tmpl, "header."), strings.HasPrefix(tmpl, "trailer."):
			name := tmpl[strings.IndexByte(tmpl, '.')+1:]
			if r.hasA {
				hdrA[name] = path
			}
			if r.hasB {
				hdrB[name] = path
			}
		case r.kind == kindLines:
			lineA = append(lineA, lineMark{int(r.line), strings.Count(string(e.pair.get(r.va)), "\n") + 1, path})
			lineB = append(lineB, lineMark{int(r.line), strings.Count(string(e.pair.get(r.vb)), "\n") + 1, path})
		default:
			if r.hasA {
				marksA[inst] = path
			}
			if r.hasB {
				marksB[inst] = path
			}
		}
	}
	e.cmp.ensure(pv)
	e.cmp.ensure(sv)
	x.Primary, out.hdrA, out.bodyA = e.answerView(pv, hdrA, marksA, lineA)
	x.Shadow, out.hdrB, out.bodyB = e.answerView(sv, hdrB, marksB, lineB)

	for _, f := range ex.Header {
		v := string(f.Value)
		if e.red.header(f.Name) {
			v = redacted
		}
		x.RequestHeaders = append(x.RequestHeaders, Header{Name: string(f.Name), Value: strings.ToValidUTF8(v, "\uFFFD")})
	}
	x.RequestBodyLen = max(ex.BodyLen, int64(len(ex.Body)))
	body, note := e.requestBody(ex)
	x.RequestBody, x.RequestNote = body, note
	x.Curl = curlLine(rs.shadowURL, ex, e.red, body, note == "")

	out.x = e.marked(ep, out)
	blob, _ := json.Marshal(out.x)
	out.size = int64(len(blob)) + 256 + int64(8*(len(out.bodyA)+len(out.bodyB)+len(out.hdrA)+len(out.hdrB)+len(out.diffs)))
	return out
}

// verdictOf returns how the field at path is judged now: "different" or
// "noise".
func (e *Engine) verdictOf(ep *endpoint, path string) string {
	if f := ep.fields[path]; f != nil && e.judge(ep, f) {
		return "different"
	}
	return "noise"
}

// current reports whether the example still shows a field judged
// different.
func (e *Engine) current(ep *endpoint, x *example) bool {
	for _, p := range x.diffs {
		if e.verdictOf(ep, p) == "different" {
			return true
		}
	}
	return false
}

// marked returns a copy of the example's Example marked by the verdicts of
// the moment: a differing part shows as different or as noise as its field
// is judged now.
func (e *Engine) marked(ep *endpoint, ex *example) *Example {
	x := *ex.x
	verdicts := make(map[string]string)
	v := func(path string) string {
		if path == "" {
			return ""
		}
		if r, ok := verdicts[path]; ok {
			return r
		}
		r := e.verdictOf(ep, path)
		verdicts[path] = r
		return r
	}
	x.Differences = slices.Clone(x.Differences)
	for i := range x.Differences {
		x.Differences[i].Verdict = v(ex.diffs[i])
	}
	side := func(a AnswerView, hdr, body []string) AnswerView {
		a.StatusDiff, a.StatusNoise = false, false
		if ex.status {
			st := v("status")
			a.StatusDiff, a.StatusNoise = st == "different", st == "noise"
		}
		a.Headers = slices.Clone(a.Headers)
		for i := range a.Headers {
			r := v(hdr[i])
			a.Headers[i].Diff, a.Headers[i].Noise = r == "different", r == "noise"
		}
		a.Body = slices.Clone(a.Body)
		for i := range a.Body {
			r := v(body[i])
			a.Body[i].Diff, a.Body[i].Noise = r == "different", r == "noise"
		}
		return a
	}
	x.Primary = side(x.Primary, ex.hdrA, ex.bodyA)
	x.Shadow = side(x.Shadow, ex.hdrB, ex.bodyB)
	return &x
}

type lineMark struct {
	first, n int
	path     string
}

// markRange is a marked range of bytes of a body as shown, and the field
// that marks it.
type markRange struct {
	start, end int
	path       string
}

// requestBody returns the request body as the example shows it and the
// curl line sends it (redacted), or a note saying why it is left out.
func (e *Engine) requestBody(ex *Exchange) (string, string) {
	b := ex.Body
	if len(b) == 0 {
		if ex.BodyLen > 0 {
			return "", "request body of " + strconv.FormatInt(ex.BodyLen, 10) + " bytes not captured"
		}
		return "", ""
	}
	if ex.BodyLen > int64(len(b)) {
		return "", "request body of " + strconv.FormatInt(ex.BodyLen, 10) + " bytes only partly captured"
	}
	var ct []byte
	for _, f := range ex.Header {
		if httpsyntax.EqualFold(f.Name, "content-type") {
			ct = f.Value
			break
		}
	}
	media := mediaOf([]httpmsg.Field{{Name: []byte("content-type"), Value: ct}})
	if ct == nil && looksJSON(b) {
		media = mediaJSON
	}
	if len(e.red.paths) > 0 {
		switch media {
		case mediaJSON:
			out, ok := rewriteCompact(nil, b, "body", e.red)
			if !ok {
				return "", "request body withheld: not JSON, and body fields are redacted"
			}
			b = out
		case mediaForm:
			b = redactForm(b, e.red)
		}
	}
	if len(b) > requestBodyCap {
		return "", "request body of " + strconv.Itoa(len(b)) + " bytes not shown"
	}
	if !utf8.Valid(b) {
		return "", "binary request body of " + strconv.Itoa(len(b)) + " bytes not shown"
	}
	return string(b), ""
}

// answerView shows one answer of an example, and returns the field path
// that marks each header row and each body part.
func (e *Engine) answerView(v *view, hdr map[string]string, marks map[string]string, lines []lineMark) (av AnswerView, hdrPaths, bodyPaths []string) {
	a := v.ans
	av = AnswerView{
		Status: a.Status, BodyLen: a.BodyLen,
		Encoding: strings.ToValidUTF8(string(v.removed), "?"), Media: v.media.String(),
		Truncated: v.cut, Headers: []Header{}, Body: []BodyPart{},
	}
	for _, fs := range [][]httpmsg.Field{a.Header, a.Trailer} {
		for _, f := range fs {
			name := strings.ToLower(string(f.Name))
			val := string(f.Value)
			if e.red.header(f.Name) {
				val = redacted
			}
			av.Headers = append(av.Headers, Header{Name: strings.ToValidUTF8(string(f.Name), "?"), Value: strings.ToValidUTF8(val, "\uFFFD")})
			hdrPaths = append(hdrPaths, hdr[name])
		}
	}
	if v.err != nil {
		av.Note = "cannot decode: " + v.err.Error()
		return av, hdrPaths, nil
	}
	body := v.body
	if len(body) == 0 {
		return av, hdrPaths, nil
	}
	media := v.media
	if media == mediaUnknown && looksJSON(body) {
		media = mediaJSON
	}
	if media == mediaJSON {
		text, ranges, complete, ok := prettyJSON(body, e.red, marks, exampleBodyCap)
		if ok {
			av.Body, bodyPaths = bodyParts(text, ranges)
			if !complete {
				av.Note = "shown up to where the body held ends"
			}
			return av, hdrPaths, bodyPaths
		}
		if len(e.red.paths) > 0 {
			av.Note = "body withheld: not JSON, and body fields are redacted"
			return av, hdrPaths, nil
		}
	}
	if media == mediaForm {
		body = redactForm(body, e.red)
	}
	if !utf8.Valid(body) && !(v.cut && utf8.Valid(trimPartialRune(body))) {
		av.Note = strconv.Itoa(len(body)) + " bytes of binary data"
		return av, hdrPaths, nil
	}
	note := ""
	if len(body) > exampleBodyCap {
		body = trimPartialRune(body[:exampleBodyCap])
		note = "shown up to " + strconv.Itoa(exampleBodyCap) + " bytes"
	}
	av.Body, bodyPaths = bodyParts(body, lineRanges(body, lines))
	av.Note = note
	return av, hdrPaths, bodyPaths
}

// trimPartialRune drops a cut UTF-8 sequence at the end of b.
func trimPartialRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}

// lineRanges returns the byte ranges of the marked lines of text.
func lineRanges(text []byte, lines []lineMark) []markRange {
	var out []markRange
	for _, l := range lines {
		start, line := 0, 1
		for line < l.first && start < len(text) {
			k := bytes.IndexByte(text[start:], '\n')
			if k < 0 {
				start = len(text)
				break
			}
			start += k + 1
			line++
		}
		end := start
		for n := 0; n < l.n && end < len(text); n++ {
			k := bytes.IndexByte(text[end:], '\n')
			if k < 0 {
				end = len(text)
				break
			}
			end += k + 1
		}
		if end > start {
			out = append(out, markRange{start, end, l.path})
		}
	}
	return out
}

// bodyParts cuts text into parts at the marked ranges, and returns the
// field that marks each part ("" for none).
func bodyParts(text []byte, ranges []markRange) ([]BodyPart, []string) {
	slices.SortFunc(ranges, func(a, b markRange) int { return a.start - b.start })
	parts := []BodyPart{}
	var paths []string
	add := func(b []byte, path string) {
		if len(b) > 0 {
			parts = append(parts, BodyPart{Text: strings.ToValidUTF8(string(b), "\uFFFD")})
			paths = append(paths, path)
		}
	}
	at := 0
	for _, r := range ranges {
		s, t := max(r.start, at), min(r.end, len(text))
		if s >= t {
			continue
		}
		add(text[at:s], "")
		add(text[s:t], r.path)
		at = t
	}
	add(text[at:], "")
	return parts, paths
}

// logLine is one line of the compare log.
type logLine struct {
	Time          time.Time    `json:"time"`
	Rule          string       `json:"rule"`
	Endpoint      string       `json:"endpoint"`
	Method        string       `json:"method"`
	Target        string       `json:"target"`
	PrimaryStatus int          `json:"primary_status"`
	ShadowStatus  int          `json:"shadow_status"`
	Truncated     bool         `json:"truncated,omitempty"`
	Differences   []Difference `json:"differences"`
}

// logPair writes the log line of a pair judged different.
func (e *Engine) logPair(rs *ruleState, ep *endpoint, ex *Exchange, pv, sv *view, at time.Time) {
	l := logLine{
		Time: at.UTC(), Rule: rs.name, Endpoint: ep.key, Method: ex.Method,
		Target: capString(ex.Path, 2048), PrimaryStatus: pv.ans.Status, ShadowStatus: sv.ans.Status,
		Truncated: e.pair.truncated,
	}
	for i := range e.pair.recs {
		r := &e.pair.recs[i]
		d := Difference{Path: string(e.pair.get(r.inst)), Kind: r.kind.String(), Line: int(r.line), Verdict: "noise"}
		if e.judge(ep, e.fbuf[i]) {
			d.Verdict = "different"
		}
		if r.hasA {
			d.Primary = strPtr(e.pair.get(r.va))
		}
		if r.hasB {
			d.Shadow = strPtr(e.pair.get(r.vb))
		}
		l.Differences = append(l.Differences, d)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	b = append(b, '\n')
	_, _ = e.cfg.Log.Write(b)
}
