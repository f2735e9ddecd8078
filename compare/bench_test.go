package compare

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// catalog returns a JSON answer of about size bytes: a request id and a
// time at the top, items, and a second time at the end.
func catalog(size int, requestID, servedAt string, price func(i int) string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"request_id":%q,"generated_at":"2024-05-01T12:00:00Z","items":[`, requestID)
	for i := 0; b.Len() < size-120; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"sku":"SKU-%05d","name":"Item number %d","price":%s,"tags":["blue","large"],"in_stock":true}`, i, i, i, price(i))
	}
	fmt.Fprintf(&b, `],"currency":"EUR","served_at":%q}`, servedAt)
	return b.Bytes()
}

func plainPrice(i int) string { return fmt.Sprintf("%d.%02d", 10+i%90, i%100) }

func jsonAnswer(body []byte, extra ...httpmsg.Field) *httpmsg.Answer {
	h := []httpmsg.Field{
		{Name: []byte("Content-Type"), Value: []byte("application/json; charset=utf-8")},
		{Name: []byte("Date"), Value: []byte("Wed, 01 May 2024 12:00:00 GMT")},
		{Name: []byte("Cache-Control"), Value: []byte("no-store")},
		{Name: []byte("X-Request-Id"), Value: []byte("0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a")},
		{Name: []byte("Vary"), Value: []byte("Accept-Encoding")},
		{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(len(body)))},
	}
	h = append(h, extra...)
	return &httpmsg.Answer{Proto: httpmsg.HTTP11, Status: 200, Header: h, Body: body, BodyLen: int64(len(body))}
}

func benchExchange(p, s *httpmsg.Answer) *Exchange {
	return &Exchange{
		Rule: "catalog", ShadowURL: "http://10.0.0.7:8000", Proto: httpmsg.HTTP11,
		Method: "GET", Authority: "shop.example", Path: "/api/catalog/42?page=2",
		Header: []httpmsg.Field{
			{Name: []byte("Host"), Value: []byte("shop.example")},
			{Name: []byte("Accept"), Value: []byte("application/json")},
			{Name: []byte("Authorization"), Value: []byte("Bearer secret")},
		},
		Primary: p, Shadow: s,
		PrimaryLatency: 900 * time.Microsecond, ShadowLatency: 1100 * time.Microsecond,
		Time: time.Unix(1714564800, 0),
	}
}

func BenchmarkCompare(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		base := catalog(size, "0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a", "2024-05-01T12:00:00.123Z", plainPrice)
		cases := []struct {
			name   string
			shadow []byte
		}{
			{"identical", append([]byte(nil), base...)},
			{"ids_timestamps", catalog(size, "7f3e2a10-1b2c-4d5e-8f90-a1b2c3d4e5f6", "2024-05-01T12:00:00.457Z", plainPrice)},
			{"changed_field", catalog(size, "0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a", "2024-05-01T12:00:00.123Z", func(i int) string {
				if i == 3 {
					return "99.99"
				}
				return plainPrice(i)
			})},
		}
		for _, tc := range cases {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, tc.name), func(b *testing.B) {
				e, err := New(Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				ex := benchExchange(jsonAnswer(base), jsonAnswer(tc.shadow))
				b.SetBytes(int64(len(base)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					ex.BodyHash = uint64(i) // every request a new one, as in most traffic
					e.Add(ex)
				}
			})
		}
	}
}

// BenchmarkCompareGzip measures the same with both answers gzipped:
// identical answers compare by their coded bytes, others are decoded.
func BenchmarkCompareGzip(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		base := catalog(size, "0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a", "2024-05-01T12:00:00.123Z", plainPrice)
		other := catalog(size, "7f3e2a10-1b2c-4d5e-8f90-a1b2c3d4e5f6", "2024-05-01T12:00:00.457Z", plainPrice)
		gz := func(p []byte) []byte {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			w.Write(p)
			w.Close()
			return buf.Bytes()
		}
		ce := httpmsg.Field{Name: []byte("Content-Encoding"), Value: []byte("gzip")}
		for _, tc := range []struct {
			name   string
			shadow []byte
		}{{"identical", base}, {"ids_timestamps", other}} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, tc.name), func(b *testing.B) {
				e, _ := New(Config{})
				defer e.Close()
				ex := benchExchange(jsonAnswer(gz(base), ce), jsonAnswer(gz(tc.shadow), ce))
				b.SetBytes(int64(len(base)))
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					ex.BodyHash = uint64(i)
					e.Add(ex)
				}
			})
		}
	}
}

// BenchmarkJSONDiff measures the walk alone, on documents that differ in
// many places (a price in every item).
func BenchmarkJSONDiff(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		a := catalog(size, "x", "y", plainPrice)
		c := catalog(size, "x", "y", func(i int) string { return strings.Replace(plainPrice(i), ".", "1.", 1) })
		b.Run(fmt.Sprintf("%dKiB/every_item", size>>10), func(b *testing.B) {
			var j jsonDiff
			out := pairBuf{values: true}
			b.SetBytes(int64(len(a)))
			b.ReportAllocs()
			for b.Loop() {
				out.reset(true)
				if !j.diff(a, c, false, "body", &out) {
					b.Fatal("not JSON")
				}
			}
		})
	}
}
