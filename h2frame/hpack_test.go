package h2frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// fieldList is a sink that records fields, "?" for unknown ones.
type fieldList struct{ fs []string }

func (l *fieldList) field(name, value []byte) { l.fs = append(l.fs, string(name)+": "+string(value)) }
func (l *fieldList) unknown()                 { l.fs = append(l.fs, "?") }

// randomFields makes a header list of the kind clients send: a few pseudo
// fields, common names with repeating values, some fresh values, sometimes
// a sensitive or long one.
func randomFields(r *rand.Rand, n int) []hpack.HeaderField {
	names := []string{":method", ":path", ":authority", "user-agent", "accept", "cookie", "x-request-id", "content-type", "x-custom-" + fmt.Sprint(r.IntN(5)), "authorization"}
	var fs []hpack.HeaderField
	for range n {
		f := hpack.HeaderField{Name: names[r.IntN(len(names))]}
		switch r.IntN(4) {
		case 0:
			f.Value = fmt.Sprintf("fresh-%d", r.Uint32())
		case 1:
			f.Value = strings.Repeat(string(rune('a'+r.IntN(26))), r.IntN(300))
		default:
			f.Value = fmt.Sprintf("v%d", r.IntN(4))
		}
		f.Sensitive = r.IntN(10) == 0
		fs = append(fs, f)
	}
	return fs
}

func encodeBlock(enc *hpack.Encoder, buf *bytes.Buffer, fs []hpack.HeaderField) []byte {
	buf.Reset()
	for _, f := range fs {
		enc.WriteField(f)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func fieldStrings(fs []hpack.HeaderField) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name + ": " + f.Value
	}
	return out
}

// The decoder reads what x/net's encoder writes exactly as x/net's decoder
// does, through table size changes.
func TestDecoderMatchesXNet(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		ref := hpack.NewDecoder(4096, nil)
		ref.SetAllowedMaxDynamicTableSize(DefaultMaxTableSize)
		dec := newDecoder(DefaultMaxTableSize)
		for i := range 200 {
			if r.IntN(20) == 0 {
				size := []uint32{0, 64, 512, 4096, 8192, 65536}[r.IntN(6)]
				enc.SetMaxDynamicTableSizeLimit(size)
				enc.SetMaxDynamicTableSize(size)
			}
			block := encodeBlock(enc, &buf, randomFields(r, 1+r.IntN(12)))
			want, err := ref.DecodeFull(block)
			if err != nil {
				t.Fatalf("seed %d block %d: x/net: %v", seed, i, err)
			}
			var got fieldList
			if err := dec.decode(block, &got); err != nil {
				t.Fatalf("seed %d block %d: %v", seed, i, err)
			}
			if g, w := strings.Join(got.fs, "\n"), strings.Join(fieldStrings(want), "\n"); g != w {
				t.Fatalf("seed %d block %d:\ngot  %q\nwant %q", seed, i, g, w)
			}
			if !dec.complete {
				t.Fatalf("seed %d block %d: table not complete", seed, i)
			}
		}
	}
}

// A decoder that starts in the middle of an encoder's life never decodes
// a field wrongly: each field is right or unknown. It regains the whole
// table when the encoder empties it, or fills it past what it can hide.
func TestDecoderPartialNeverGuesses(t *testing.T) {
	known, unknown := 0, 0
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 2))
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		dec := newDecoder(DefaultMaxTableSize)
		join := 1 + r.IntN(20)
		for i := range 150 {
			if i == join {
				dec.lose()
			}
			if i == 100 {
				// Empty the table, then back to the usual size.
				enc.SetMaxDynamicTableSize(0)
				encodeBlock(enc, &buf, nil)
				enc.SetMaxDynamicTableSize(4096)
			}
			fs := randomFields(r, 1+r.IntN(12))
			block := encodeBlock(enc, &buf, fs)
			var got fieldList
			if err := dec.decode(block, &got); err != nil {
				t.Fatalf("seed %d block %d: %v", seed, i, err)
			}
			want := fieldStrings(fs)
			if len(got.fs) != len(want) {
				t.Fatalf("seed %d block %d: %d fields, want %d", seed, i, len(got.fs), len(want))
			}
			for j := range want {
				switch got.fs[j] {
				case "?":
					unknown++
					if i < join {
						t.Fatalf("seed %d block %d: unknown field before the join", seed, i)
					}
				case want[j]:
					known++
				default:
					t.Fatalf("seed %d block %d field %d: got %q, want %q", seed, i, j, got.fs[j], want[j])
				}
			}
		}
		if !dec.complete {
			t.Fatalf("seed %d: the emptied table was not known again", seed)
		}
	}
	if unknown < known/100 || known == 0 {
		t.Fatalf("%d known and %d unknown fields: the test does not test", known, unknown)
	}
}

// A table larger than the decoder's cap: entries past it are unknown, the
// rest right.
func TestDecoderLargerTableThanCap(t *testing.T) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.SetMaxDynamicTableSizeLimit(1 << 16)
	enc.SetMaxDynamicTableSize(1 << 16)
	dec := newDecoder(1024)
	var first []hpack.HeaderField
	for i := range 20 {
		first = append(first, hpack.HeaderField{Name: fmt.Sprintf("x-%d", i), Value: strings.Repeat("v", 100)})
	}
	var got fieldList
	if err := dec.decode(encodeBlock(enc, &buf, first), &got); err != nil {
		t.Fatal(err)
	}
	got.fs = nil
	if err := dec.decode(encodeBlock(enc, &buf, first), &got); err != nil {
		t.Fatal(err)
	}
	want := fieldStrings(first)
	unknown := 0
	for i, f := range got.fs {
		if f == "?" {
			unknown++
		} else if f != want[i] {
			t.Fatalf("field %d: got %q, want %q", i, f, want[i])
		}
	}
	if unknown == 0 || unknown == len(want) {
		t.Fatalf("%d of %d unknown", unknown, len(want))
	}
}

func TestDecoderErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block []byte
	}{
		{"index zero", []byte{0x80}},
		{"index past a complete table", []byte{0x80 | 70}},
		{"truncated integer", []byte{0xff}},
		{"truncated string", []byte{0x00, 0x05, 'a'}},
		{"size update after a field", []byte{0x40, 0x01, 'a', 0x00, 0x20}},
		{"bad huffman", []byte{0x00, 0x81, 0x00, 0x81, 0xff}},
		{"integer too long", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
	} {
		dec := newDecoder(DefaultMaxTableSize)
		if err := dec.decode(tc.block, &fieldList{}); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		ref := hpack.NewDecoder(4096, nil)
		if _, err := ref.DecodeFull(tc.block); err == nil {
			t.Errorf("%s: x/net reads it", tc.name)
		}
	}
	// After a loss, an index past what is known is unknown, not an error.
	dec := newDecoder(DefaultMaxTableSize)
	dec.lose()
	var l fieldList
	if err := dec.decode([]byte{0x80 | 70, 0x82}, &l); err != nil || strings.Join(l.fs, ",") != "?,:method: GET" {
		t.Fatalf("got %q, %v", l.fs, err)
	}
}

// The decoder's table stays within its cap in bytes, whatever it is fed.
func TestDecoderMemoryBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	dec := newDecoder(4096)
	for range 2000 {
		if err := dec.decode(encodeBlock(enc, &buf, randomFields(r, 8)), nil); err != nil {
			t.Fatal(err)
		}
		if dec.size > 4096 || cap(dec.data) > 3*4096 || cap(dec.ents) > 4096/entryOverhead*3 {
			t.Fatalf("size %d, data cap %d, entries cap %d", dec.size, cap(dec.data), cap(dec.ents))
		}
	}
}
