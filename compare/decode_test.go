package compare

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/shadowtee/shadowtee/httpmsg"
)

func encode(t testing.TB, coding string, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "rawdeflate":
		w, _ = flate.NewWriter(&b, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&b)
	case "zstd":
		z, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w = z
	default:
		t.Fatalf("coding %s", coding)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func coded(body []byte, ce string) *httpmsg.Answer {
	a := answer(200, string(body), "Content-Type", "application/json")
	if ce != "" {
		a.Header = append(a.Header, fieldPair("Content-Encoding", ce))
	}
	return a
}

func TestDecode(t *testing.T) {
	plain := []byte(`{"hello":"world","n":[1,2,3]}` + strings.Repeat(" ", 100))
	d := newDecoders(1 << 20)
	defer d.close()
	var dst []byte
	for _, tc := range []struct{ header, coding string }{
		{"gzip", "gzip"}, {"x-gzip", "gzip"}, {"GZIP", "gzip"},
		{"deflate", "deflate"}, {"deflate", "rawdeflate"},
		{"br", "br"}, {"zstd", "zstd"},
	} {
		for range 2 { // the second time through a reset reader
			got := d.decode(coded(encode(t, tc.coding, plain), tc.header), &dst)
			if got.err != nil || got.cut || !bytes.Equal(got.body, plain) {
				t.Errorf("%s (%s): %q cut %v err %v", tc.header, tc.coding, got.body, got.cut, got.err)
			}
		}
	}
	// Stacked codings come off in reverse order.
	stacked := encode(t, "br", encode(t, "gzip", plain))
	if got := d.decode(coded(stacked, "gzip, br"), &dst); got.err != nil || !bytes.Equal(got.body, plain) {
		t.Errorf("gzip, br: %q %v", got.body, got.err)
	}
	stacked3 := encode(t, "zstd", encode(t, "deflate", encode(t, "gzip", plain)))
	a := coded(stacked3, "gzip")
	a.Header = append(a.Header, fieldPair("Content-Encoding", "deflate, zstd"))
	if got := d.decode(a, &dst); got.err != nil || !bytes.Equal(got.body, plain) {
		t.Errorf("gzip / deflate, zstd: %q %v", got.body, got.err)
	}
	// Identity and no coding cost nothing: the body itself.
	for _, ce := range []string{"", "identity"} {
		a := coded(plain, ce)
		if got := d.decode(a, &dst); got.err != nil || &got.body[0] != &a.Body[0] {
			t.Errorf("%q: not the body itself", ce)
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	plain := []byte(strings.Repeat(`{"k":"some text that compresses"},`, 50))
	d := newDecoders(1 << 20)
	defer d.close()
	var dst []byte
	for _, coding := range []string{"gzip", "deflate", "br", "zstd"} {
		enc := encode(t, coding, plain)
		for name, bad := range map[string][]byte{
			"garbage": []byte("this is not compressed at all, not at all"),
			"flipped": flip(enc, len(enc)/2),
			"cut":     enc[:len(enc)/2],
			"empty":   {0},
		} {
			if coding == "br" && name == "flipped" {
				continue // brotli has no checksum: a flipped bit may decode
			}
			got := d.decode(coded(bad, coding), &dst)
			if got.err == nil {
				t.Errorf("%s %s: no error (%d bytes)", coding, name, len(got.body))
			}
			if !bytes.Equal(got.body, bad) {
				t.Errorf("%s %s: an undecodable body must stay as it came", coding, name)
			}
		}
	}
	if got := d.decode(coded(plain, "compress"), &dst); got.err == nil {
		t.Error("compress: no error")
	}
	if got := d.decode(coded(plain, "gzip, gzip, gzip, gzip, gzip"), &dst); got.err == nil {
		t.Error("five codings: no error")
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x55
	return c
}

func TestDecodeTruncatedInput(t *testing.T) {
	plain := []byte(strings.Repeat("0123456789abcdef", 4096))
	d := newDecoders(1 << 20)
	defer d.close()
	var dst []byte
	for _, coding := range []string{"gzip", "deflate", "br", "zstd"} {
		enc := encode(t, coding, plain)
		a := coded(enc[:len(enc)/2], coding)
		a.BodyLen, a.Truncated = int64(len(enc)), true
		got := d.decode(a, &dst)
		if got.err != nil || !got.cut {
			t.Errorf("%s: err %v cut %v", coding, got.err, got.cut)
		}
		if !bytes.HasPrefix(plain, got.body) {
			t.Errorf("%s: %d bytes decoded are not a prefix", coding, len(got.body))
		}
	}
}

func TestDecodeBombs(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, 16<<20) // 16 MiB that compress to almost nothing
	d := newDecoders(limit)
	defer d.close()
	var dst []byte
	for _, coding := range []string{"gzip", "deflate", "br", "zstd"} {
		enc := encode(t, coding, zeros)
		if len(enc) > 1<<20 {
			t.Fatalf("%s: %d bytes is no bomb", coding, len(enc))
		}
		got := d.decode(coded(enc, coding), &dst)
		if got.err != nil || !got.cut || !got.over || len(got.body) != limit {
			t.Errorf("%s: %d bytes, cut %v over %v err %v", coding, len(got.body), got.cut, got.over, got.err)
		}
		if cap(dst) > 2*limit+4096 {
			t.Errorf("%s: scratch grew to %d", coding, cap(dst))
		}
	}
	// A bomb in the engine: compared on the bound's prefix, said so.
	e := newEngine(t, Config{BodyCap: limit})
	p := coded(encode(t, "gzip", zeros), "gzip")
	s := coded(encode(t, "br", zeros), "br")
	e.Add(exchange(0, "GET", "/bomb", p, s))
	r := e.Report()
	ep := endpointOf(t, r, "GET", "/bomb")
	if ep.Truncated != 1 || r.Totals.DecodeLimited != 2 {
		t.Errorf("truncated %d decode_limited %d", ep.Truncated, r.Totals.DecodeLimited)
	}
	if got := paths(ep.Pending); len(got) != 1 || got[0] != "header.content-encoding" {
		t.Errorf("fields %q: the bodies agree as far as they are decoded", got)
	}
	// The same bytes in the same coding are equal without decoding.
	e.Add(exchange(1, "GET", "/same-bomb", p, coded(p.Body, "gzip")))
	if r := e.Report(); r.Totals.DecodeLimited != 2 || endpointOf(t, r, "GET", "/same-bomb").Same != 1 {
		t.Errorf("identical coded bodies: decode_limited %d", r.Totals.DecodeLimited)
	}
}

func TestDecodedInEngine(t *testing.T) {
	e := newEngine(t, Config{})
	body := []byte(`{"a":1,"b":"x"}`)
	for i, c := range []string{"gzip", "deflate", "br", "zstd"} {
		p := coded(encode(t, c, body), c)
		s := coded(encode(t, c, []byte(`{"b":"x","a":1.0}`)), c)
		e.Add(exchange(i, "GET", "/d", p, s))
	}
	e.Add(exchange(9, "GET", "/d", coded(encode(t, "gzip", body), "gzip"), coded(encode(t, "gzip", []byte(`{"a":2,"b":"x"}`)), "gzip")))
	ep := endpointOf(t, e.Report(), "GET", "/d")
	if ep.Same != 4 || ep.Different != 1 || fieldOf(ep.Pending, "body.a") == nil {
		t.Errorf("same %d different %d fields %q", ep.Same, ep.Different, paths(ep.Pending))
	}
	if ex := ep.Example; ex == nil || ex.Primary.Encoding != "gzip" || !strings.Contains(bodyText(ex.Primary), `"a": 1`) {
		t.Errorf("example body not decoded: %+v", ex)
	}
}

func bodyText(a AnswerView) string {
	var b strings.Builder
	for _, p := range a.Body {
		b.WriteString(p.Text)
	}
	return b.String()
}
