package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// FuzzJSONDiff checks the lock-step walk against encoding/json: it never
// panics; a document equals itself; the walk accepts every pair of valid
// documents and finds as many differences either way round; when it finds
// none, encoding/json decodes both to the same value; and the shortcuts
// over bytes both documents share find what a walk token by token finds.
func FuzzJSONDiff(f *testing.F) {
	for _, p := range [][2]string{
		{`{"a":1,"b":[1,2,3]}`, `{"b":[1,2,3],"a":1.0}`},
		{`{"a":{"b":{"c":"x"}}}`, `{"a":{"b":{"c":"y"}}}`},
		{`[1,2,3]`, `[1,2]`},
		{`{"k\u0041":"\ud83d\ude00"}`, `{"kA":"😀"}`},
		{`"s"`, `1`},
	} {
		f.Add([]byte(p[0]), []byte(p[1]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var j jsonDiff
		out := pairBuf{values: true}
		okAB := j.diff(a, b, false, "body", &out)
		nAB := len(out.recs) + out.elided
		out.reset(true)
		okBA := j.diff(b, a, false, "body", &out)
		nBA := len(out.recs) + out.elided
		// Partial mode must not panic either.
		out.reset(true)
		j.diff(a, b[:len(b)/2], true, "body", &out)

		if okAB {
			fast := recordLines(a, b, false)
			slow := recordLines(a, b, true)
			if slow != nil && !slices.Equal(fast, slow) {
				t.Fatalf("%q %q:\nwith runs %q\ntoken by token %q", a, b, fast, slow)
			}
		}

		out.reset(true)
		if okAA := j.diff(a, a, false, "body", &out); len(out.recs) != 0 {
			t.Fatalf("%q differs from itself (ok %v): %d records", a, okAA, len(out.recs))
		}
		validA, validB := json.Valid(a) && depth(a) < maxJSONDepth-2, json.Valid(b) && depth(b) < maxJSONDepth-2
		if validA && validB {
			if !okAB || !okBA {
				t.Fatalf("valid documents refused: %q %q", a, b)
			}
			if nAB != nBA {
				t.Fatalf("%d differences one way, %d the other: %q %q", nAB, nBA, a, b)
			}
			if nAB == 0 && !dupKeys(a) && !dupKeys(b) {
				var va, vb any
				json.Unmarshal(a, &va)
				json.Unmarshal(b, &vb)
				if !reflect.DeepEqual(va, vb) {
					t.Fatalf("no difference found between %q and %q", a, b)
				}
			}
		}
		if okAB != okBA {
			t.Fatalf("accepted one way only: %q %q", a, b)
		}
	})
}

// recordLines returns the differences of a walk, sorted, or nil when it
// refuses the documents.
func recordLines(a, b []byte, slow bool) []string {
	j := jsonDiff{slow: slow}
	out := pairBuf{values: true}
	if !j.diff(a, b, false, "body", &out) {
		return nil
	}
	lines := []string{}
	for _, r := range out.recs {
		lines = append(lines, fmt.Sprintf("%s %s %s %v %q %v %q", r.kind, out.get(r.tmpl), out.get(r.inst), r.hasA, out.get(r.va), r.hasB, out.get(r.vb)))
	}
	slices.Sort(lines)
	return lines
}

func depth(b []byte) int {
	d, m := 0, 0
	inStr, esc := false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '['):
			d++
			m = max(m, d)
		case !inStr && (c == '}' || c == ']'):
			d--
		}
	}
	return m
}

// dupKeys reports whether an object of a valid document repeats a key
// (encoding/json keeps the last; the walk compares them all).
func dupKeys(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	var stack []map[string]bool
	expectKey := []bool{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, map[string]bool{})
				expectKey = append(expectKey, true)
				continue
			case '[':
				stack = append(stack, nil)
				expectKey = append(expectKey, false)
				continue
			default:
				stack = stack[:len(stack)-1]
				expectKey = expectKey[:len(expectKey)-1]
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1] != nil && expectKey[n-1] {
				if stack[n-1][v] {
					return true
				}
				stack[n-1][v] = true
				expectKey[n-1] = false
				continue
			}
		}
		if n := len(stack); n > 0 && stack[n-1] != nil {
			expectKey[n-1] = true
		}
	}
}
