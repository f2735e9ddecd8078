package compare

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// diffs compares two JSON documents and returns one line per difference:
// "kind template instance primary shadow", absent values as "-".
func diffs(t *testing.T, a, b string, partial bool) ([]string, bool) {
	t.Helper()
	var j jsonDiff
	out := pairBuf{values: true}
	ok := j.diff([]byte(a), []byte(b), partial, "body", &out)
	var lines []string
	for _, r := range out.recs {
		va, vb := "-", "-"
		if r.hasA {
			va = string(out.get(r.va))
		}
		if r.hasB {
			vb = string(out.get(r.vb))
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s", r.kind, out.get(r.tmpl), out.get(r.inst), va, vb))
	}
	return lines, ok
}

func TestJSONDiff(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		want []string
	}{
		{"equal", `{"a":1,"b":[1,2,{"c":"x"}]}`, `{"a":1,"b":[1,2,{"c":"x"}]}`, nil},
		{"whitespace", `{"a": 1, "b" : [ 1 , 2 ] }`, "{\"a\":1,\n\"b\":[1,2]}", nil},
		{"key order", `{"a":1,"b":2,"c":{"x":1,"y":2}}`, `{"c":{"y":2,"x":1},"b":2,"a":1}`, nil},
		{"numbers by value", `[1, 1.0, 10e-1, 0.1e1, -0, 100, 1.5e2, 12345678901234567890]`,
			`[1.0, 1, 1, 1, 0, 1e2, 150, 12345678901234567890.0]`, nil},
		{"big integers stay distinct", `{"n":12345678901234567890}`, `{"n":12345678901234567891}`,
			[]string{"value body.n body.n 12345678901234567890 12345678901234567891"}},
		{"string escapes", `{"s":"A\u00e9\n\/"}`, `{"s":"Aé\n/"}`, nil},
		{"escaped keys", `{"k\u0041":1,"z":2}`, `{"z":2,"kA":1}`, nil},
		{"value change", `{"a":1,"b":"x"}`, `{"a":2,"b":"x"}`, []string{"value body.a body.a 1 2"}},
		{"nested", `{"user":{"address":{"city":"Oslo","zip":"0150"}}}`, `{"user":{"address":{"city":"Bergen","zip":"0150"}}}`,
			[]string{`value body.user.address.city body.user.address.city "Oslo" "Bergen"`}},
		{"missing and extra", `{"a":1,"b":2}`, `{"a":1,"c":3}`,
			[]string{"missing body.b body.b 2 -", "extra body.c body.c - 3"}},
		{"type change", `{"price":12.5,"tags":["x"]}`, `{"price":"12.5","tags":{"x":true}}`,
			[]string{`type body.price body.price 12.5 "12.5"`, `type body.tags body.tags ["x"] {"x":true}`}},
		{"array longer", `{"items":[1,2]}`, `{"items":[1,2,3,4]}`,
			[]string{"extra body.items[] body.items[2] - 3", "extra body.items[] body.items[3] - 4"}},
		{"array shorter", `[{"p":1},{"p":2},{"p":3}]`, `[{"p":1},{"p":5}]`,
			[]string{"value body[].p body[1].p 2 5", `missing body[] body[2] {"p":3} -`}},
		{"array element paths", `{"items":[{"price":1},{"price":2},{"price":3},{"price":4}]}`, `{"items":[{"price":1},{"price":2},{"price":3},{"price":9}]}`,
			[]string{"value body.items[].price body.items[3].price 4 9"}},
		{"bool null", `[true,false,null]`, `[false,false,null]`, []string{"value body[] body[0] true false"}},
		{"null to value", `{"a":null}`, `{"a":0}`, []string{"type body.a body.a null 0"}},
		{"scalar documents", `"abc"`, `"abd"`, []string{`value body body "abc" "abd"`}},
		{"id keys fold", `{"users":{"5f1d7a3b9c":{"name":"a"}}}`, `{"users":{"5f1d7a3b9c":{"name":"b"}}}`,
			[]string{`value body.users.{id}.name body.users.5f1d7a3b9c.name "a" "b"`}},
		{"odd keys quoted", `{"a.b":1,"":2}`, `{"a.b":3,"":2}`, []string{`value body["a.b"] body["a.b"] 1 3`}},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{"x":1},"b":[2]}`,
			[]string{"extra body.a.x body.a.x - 1", "extra body.b[] body.b[0] - 2"}},
		{"reordered then changed", `{"a":1,"b":{"c":1},"d":3}`, `{"d":3,"b":{"c":2},"a":1}`,
			[]string{"value body.b.c body.b.c 1 2"}},
		{"change after shift", `{"id":"short","items":[1,2,3],"ts":1}`, `{"id":"much longer id","items":[1,2,3],"ts":2}`,
			[]string{`value body.id body.id "short" "much longer id"`, "value body.ts body.ts 1 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := diffs(t, tc.a, tc.b, false)
			if !ok {
				t.Fatalf("not compared as JSON")
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			// Symmetry: the other way round finds as many differences.
			back, _ := diffs(t, tc.b, tc.a, false)
			if len(back) != len(got) {
				t.Errorf("reversed: %d differences, want %d: %q", len(back), len(got), back)
			}
		})
	}
}

func TestJSONDiffLargeObjectsOutOfOrder(t *testing.T) {
	var a, b strings.Builder
	a.WriteString("{")
	b.WriteString("{")
	for i := range 100 {
		if i > 0 {
			a.WriteString(",")
		}
		fmt.Fprintf(&a, `"k%03d":%d`, i, i)
	}
	for i := 99; i >= 0; i-- {
		if i < 99 {
			b.WriteString(",")
		}
		v := i
		if i == 42 {
			v = -1
		}
		if i == 7 {
			fmt.Fprintf(&b, `"x%03d":%d`, i, v)
			continue
		}
		fmt.Fprintf(&b, `"k%03d":%d`, i, v)
	}
	a.WriteString("}")
	b.WriteString("}")
	got, ok := diffs(t, a.String(), b.String(), false)
	if !ok {
		t.Fatal("not compared as JSON")
	}
	slices.Sort(got)
	want := []string{"extra body.x007 body.x007 - 7", "missing body.k007 body.k007 7 -", "value body.k042 body.k042 42 -1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestJSONDiffNotJSON(t *testing.T) {
	for _, tc := range [][2]string{
		{`{"a":1}`, `{"a":1`},
		{`{"a":1}`, `{"a":1}x`},
		{`{"a":1,}`, `{"a":2}`},
		{`[1,]`, `[2]`},
		{`{"a" 1}`, `{"a":2}`},
		{`<html>`, `{"a":1}`},
		{`[01]`, `[1]`},
		{`{"a":tru}`, `{"a":true}`},
		{strings.Repeat("[", maxJSONDepth+10) + strings.Repeat("]", maxJSONDepth+10), strings.Repeat("[", maxJSONDepth+10) + "1" + strings.Repeat("]", maxJSONDepth+10)},
	} {
		got, ok := diffs(t, tc[0], tc[1], false)
		if ok {
			t.Errorf("%q vs %q: compared as JSON: %q", tc[0], tc[1], got)
		}
		if len(got) != 0 {
			t.Errorf("%q vs %q: records kept after failing: %q", tc[0], tc[1], got)
		}
	}
}

func TestJSONDiffPartial(t *testing.T) {
	// The shadow's body was cut: what both hold is compared, and what the
	// cut side may hold after its end is not reported missing.
	a := `{"a":1,"b":{"c":2,"d":3},"items":[1,2,3,4],"z":"end"}`
	for _, tc := range []struct {
		b    string
		want []string
	}{
		{`{"a":1,"b":{"c":2,"d":3},"items":[1,2`, nil},
		{`{"a":9,"b":{"c":2,"d":3},"it`, []string{"value body.a body.a 1 9"}},
		{`{"a":1,"b":{"d":3,"c":5`, nil}, // out of order, value cut: nothing certain
		{`{"a":1,"b":{"d":3,"c":5,`, []string{"value body.b.c body.b.c 2 5"}},
		{`{"a":1,"b":{"c":2,"d":3},"items":[1,2,3,4,5,6`, []string{"extra body.items[] body.items[4] - 5", "extra body.items[] body.items[5] - 6"}},
		{`{"a":1,"b":{"c":2,"d":3},"items":[1,2,3,4],"z":"en`, nil},
		{`{"a":12`, nil}, // a number may go on
	} {
		got, ok := diffs(t, a, tc.b, true)
		if !ok {
			t.Errorf("%s: not compared", tc.b)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestNumEqual(t *testing.T) {
	eq := [][2]string{{"0", "-0"}, {"0", "0.000e5"}, {"1", "1.000"}, {"120", "1.2e2"}, {"0.0012", "12e-4"}, {"-5", "-5.0"}, {"1e400", "10e399"}}
	ne := [][2]string{{"1", "-1"}, {"1", "10"}, {"0.1", "0.01"}, {"123", "124"}, {"1e2", "1e3"}, {"9007199254740993", "9007199254740992"}}
	for _, p := range eq {
		if !numEqual([]byte(p[0]), []byte(p[1])) || !numEqual([]byte(p[1]), []byte(p[0])) {
			t.Errorf("%s and %s: want equal", p[0], p[1])
		}
	}
	for _, p := range ne {
		if numEqual([]byte(p[0]), []byte(p[1])) {
			t.Errorf("%s and %s: want different", p[0], p[1])
		}
	}
}

func TestSkipValue(t *testing.T) {
	for _, s := range []string{`1`, `"a\"b"`, `{}`, `[]`, `{"a":[1,{"b":null}],"c":"}"}`, ` [ true , false ] `} {
		e, err := skipValue([]byte(s+"#"), 0)
		if err != nil || ws([]byte(s), e) != len(s) {
			t.Errorf("%s: end %d, %v", s, e, err)
		}
	}
	for _, s := range []string{`{`, `[1,`, `{"a"`, `{"a":}`, `[}`, `{]`, `{"a":1,}`} {
		if _, err := skipValue([]byte(s), 0); err == nil {
			t.Errorf("%s: no error", s)
		}
	}
}

func TestMismatch(t *testing.T) {
	a := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	for i := 0; i <= len(a); i++ {
		b := append([]byte(nil), a...)
		if i < len(b) {
			b[i] = '#'
		}
		if got := mismatch(a, b); got != i {
			t.Errorf("mismatch at %d: got %d", i, got)
		}
		if i < len(b) {
			if got := mismatchBack(a, b); got != len(a)-1-i {
				t.Errorf("mismatchBack at %d: got %d", i, got)
			}
		}
	}
}

// genPair makes two catalog documents that differ in a few random ways:
// values changed, items dropped or added, members reordered or added,
// lengths shifted, white space moved.
func genPair(r *rand.Rand) (string, string) {
	var a, b strings.Builder
	n := r.IntN(30)
	id := func(w *strings.Builder, long bool) {
		if long {
			w.WriteString(`"0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a-long"`)
		} else {
			w.WriteString(`"0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a"`)
		}
	}
	a.WriteString(`{"request_id":`)
	id(&a, false)
	b.WriteString(`{"request_id":`)
	id(&b, r.IntN(4) == 0)
	a.WriteString(`,"items":[`)
	b.WriteString(`,"items":[`)
	first := [2]bool{true, true}
	item := func(w *strings.Builder, k int, i int, mut int) {
		if !first[k] {
			w.WriteString(",")
			if mut == 7 {
				w.WriteString("\n  ")
			}
		}
		first[k] = false
		price := fmt.Sprintf("%d.%02d", 10+i%50, i%100)
		name := fmt.Sprintf("item %d", i)
		members := []string{
			fmt.Sprintf(`"id":%d`, i),
			`"name":"` + name + `"`,
			`"price":` + price,
			`"tags":["a","b"]`,
			`"ok":true`,
		}
		switch mut {
		case 1:
			members[2] = `"price":99.5`
		case 2:
			members[1] = `"name":"` + name + ` renamed"`
		case 3:
			members[0], members[3] = members[3], members[0]
		case 4:
			members = append(members, `"extra":{"x":1}`)
		case 5:
			members[3] = `"tags":["a","b","c"]`
		case 6:
			members[2] = `"price":"` + price + `"`
		case 8:
			members[2] = `"price":` + price + `0`
		}
		w.WriteString("{" + strings.Join(members, ",") + "}")
	}
	for i := range n {
		item(&a, 0, i, 0)
		switch m := r.IntN(20); {
		case m == 0: // dropped
		case m == 1: // one more after it
			item(&b, 1, i, 0)
			item(&b, 1, 1000+i, 0)
		case m < 10:
			item(&b, 1, i, m)
		default:
			item(&b, 1, i, 0)
		}
	}
	a.WriteString(`],"total":` + fmt.Sprint(n) + `}`)
	b.WriteString(`],"total":` + fmt.Sprint(n))
	if r.IntN(3) == 0 {
		b.WriteString(`,"served_at":"now"`)
	}
	b.WriteString(`}`)
	return a.String(), b.String()
}

// TestRunsMatchTokenWalk checks the shortcuts taken over bytes that both
// documents share against a walk token by token, on generated pairs.
func TestRunsMatchTokenWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		a, b := genPair(r)
		for _, p := range [][2]string{{a, b}, {b, a}} {
			fast := recordLines([]byte(p[0]), []byte(p[1]), false)
			slow := recordLines([]byte(p[0]), []byte(p[1]), true)
			if fast == nil || slow == nil {
				t.Fatalf("pair %d refused:\n%s\n%s", i, p[0], p[1])
			}
			if !slices.Equal(fast, slow) {
				t.Fatalf("pair %d:\n%s\n%s\nwith runs:\n  %s\ntoken by token:\n  %s", i, p[0], p[1], strings.Join(fast, "\n  "), strings.Join(slow, "\n  "))
			}
		}
	}
}
