package compare

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// redactMode says what to do with the value of a body field.
type redactMode uint8

const (
	redactNone   redactMode = iota
	redactFull              // the field is redacted: show "[redacted]"
	redactInside            // the field holds redacted fields: rewrite it
)

// redactor knows which values never leave memory: header fields by name,
// body fields by path template.
type redactor struct {
	headers nameSet
	paths   []string // "body.password", "body.items[].token"
}

func checkRedactPath(p string) error {
	if p != "body" && !strings.HasPrefix(p, "body.") && !strings.HasPrefix(p, "body[") {
		return fmt.Errorf("redact path %q: want a body field path such as body.password or body.items[].token", p)
	}
	return nil
}

// under reports whether path x is p or lies below it.
func under[A, B ~string | ~[]byte](x A, p B) bool {
	if len(x) < len(p) || string(x[:len(p)]) != string(p) {
		return false
	}
	return len(x) == len(p) || x[len(p)] == '.' || x[len(p)] == '['
}

// bodyMode returns what to do with the value of the body field at path
// template tmpl.
func (r *redactor) bodyMode(tmpl []byte) redactMode {
	if r == nil {
		return redactNone
	}
	mode := redactNone
	for _, p := range r.paths {
		if under(tmpl, p) {
			return redactFull
		}
		if under(p, tmpl) {
			mode = redactInside
		}
	}
	return mode
}

func (r *redactor) header(name []byte) bool { return r != nil && r.headers.has(name) }

// jsonWriter rewrites a JSON document: compact or indented, with redacted
// fields replaced and the values at chosen instance paths marked.
type jsonWriter struct {
	out      []byte
	pretty   bool
	red      *redactor
	marks    map[string]string // instance paths whose values to mark, and the field that marks them
	ranges   []markRange       // marked byte ranges of out
	open     int               // start of the open mark, or -1
	openMark string
	tmpl     []byte
	inst     []byte
	limit    int
	scratch  []byte
	complete bool
}

var errOutputLimit = errors.New("output limit")

// rewriteCompact appends src, a JSON value at path base, to dst with the
// redacted fields replaced. It reports false when src is not JSON.
func rewriteCompact(dst, src []byte, base string, red *redactor) ([]byte, bool) {
	w := jsonWriter{out: dst, red: red, tmpl: []byte(base), inst: []byte(base), limit: 1 << 20, open: -1}
	e, err := w.value(src, 0, 0)
	if err != nil || ws(src, e) != len(src) {
		return dst, false
	}
	return w.out, true
}

// prettyJSON indents src (a body) with the redacted fields replaced and
// the values at the instance paths in marks marked. A document that ends
// early is written up to where it ends; ok is false when src is not JSON.
func prettyJSON(src []byte, red *redactor, marks map[string]string, limit int) (out []byte, ranges []markRange, complete, ok bool) {
	w := jsonWriter{pretty: true, red: red, marks: marks, tmpl: []byte("body"), inst: []byte("body"), limit: limit, open: -1}
	e, err := w.value(src, 0, 0)
	switch {
	case err == nil && ws(src, e) == len(src):
		return w.out, w.ranges, true, true
	case err == errJSONEOF, err == errOutputLimit:
		if w.open >= 0 {
			w.ranges = append(w.ranges, markRange{w.open, len(w.out), w.openMark})
		}
		return w.out, w.ranges, false, true
	}
	return nil, nil, false, false
}

func (w *jsonWriter) newline(depth int) {
	if !w.pretty {
		return
	}
	w.out = append(w.out, '\n')
	for range depth {
		w.out = append(w.out, ' ', ' ')
	}
}

func (w *jsonWriter) value(d []byte, i, depth int) (int, error) {
	i = ws(d, i)
	if i >= len(d) {
		return i, errJSONEOF
	}
	if depth > maxJSONDepth {
		return i, errJSONDepth
	}
	if len(w.out) > w.limit {
		return i, errOutputLimit
	}
	opened := false
	if w.marks != nil && w.open < 0 {
		if m := w.marks[string(w.inst)]; m != "" {
			w.open, w.openMark, opened = len(w.out), m, true
		}
	}
	e, err := w.value1(d, i, depth)
	if opened && err == nil {
		w.ranges = append(w.ranges, markRange{w.open, len(w.out), w.openMark})
		w.open = -1
	}
	return e, err
}

func (w *jsonWriter) key(raw []byte) []byte {
	if strings.IndexByte(string(raw), '\\') >= 0 {
		w.scratch = unescape(w.scratch[:0], raw)
		return w.scratch
	}
	return raw
}

func (w *jsonWriter) value1(d []byte, i, depth int) (int, error) {
	if w.red.bodyMode(w.tmpl) == redactFull {
		w.out = append(w.out, `"[redacted]"`...)
		return skipValue(d, i)
	}
	switch k := jsonKinds[d[i]]; k {
	case jObject, jArray:
		closer := byte('}')
		if k == jArray {
			closer = ']'
		}
		w.out = append(w.out, d[i])
		i++
		for n := 0; ; n++ {
			i = ws(d, i)
			if i >= len(d) {
				return i, errJSONEOF
			}
			if d[i] == closer {
				if n > 0 {
					w.newline(depth)
				}
				w.out = append(w.out, closer)
				return i + 1, nil
			}
			if n > 0 {
				if d[i] != ',' {
					return i, errJSONSyntax
				}
				if i = ws(d, i+1); i >= len(d) {
					return i, errJSONEOF
				}
				w.out = append(w.out, ',')
			}
			w.newline(depth + 1)
			tl, il := len(w.tmpl), len(w.inst)
			if k == jObject {
				if d[i] != '"' {
					return i, errJSONSyntax
				}
				ke, err := scanString(d, i)
				if err != nil {
					return ke, err
				}
				key := w.key(d[i+1 : ke-1])
				w.tmpl = appendPathKey(w.tmpl, key, true)
				w.inst = appendPathKey(w.inst, key, false)
				w.out = append(w.out, d[i:ke]...)
				w.out = append(w.out, ':')
				if w.pretty {
					w.out = append(w.out, ' ')
				}
				if i = ws(d, ke); i >= len(d) {
					return i, errJSONEOF
				}
				if d[i] != ':' {
					return i, errJSONSyntax
				}
				i++
			} else {
				w.tmpl = append(w.tmpl, "[]"...)
				w.inst = append(w.inst, '[')
				w.inst = strconv.AppendInt(w.inst, int64(n), 10)
				w.inst = append(w.inst, ']')
			}
			var err error
			i, err = w.value(d, i, depth+1)
			w.tmpl, w.inst = w.tmpl[:tl], w.inst[:il]
			if err != nil {
				return i, err
			}
		}
	case jNone:
		return i, errJSONSyntax
	default:
		e, err := scanScalar(d, i, k)
		if err != nil {
			return e, err
		}
		w.out = append(w.out, d[i:e]...)
		return e, nil
	}
}

// redactForm rewrites an application/x-www-form-urlencoded body with the
// values of redacted keys replaced.
func redactForm(b []byte, red *redactor) []byte {
	if red == nil || len(red.paths) == 0 {
		return b
	}
	var out []byte
	var tmpl []byte
	s := string(b)
	for first := true; s != ""; first = false {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if !first {
			out = append(out, '&')
		}
		k, _, hasV := strings.Cut(kv, "=")
		uk, err := url.QueryUnescape(k)
		if err != nil {
			uk = k
		}
		tmpl = appendPathKey(append(tmpl[:0], "body"...), []byte(uk), true)
		if red.bodyMode(tmpl) == redactFull && hasV {
			out = append(out, k...)
			out = append(out, "=%5Bredacted%5D"...)
			continue
		}
		out = append(out, kv...)
	}
	return out
}
