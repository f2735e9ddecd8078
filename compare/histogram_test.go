package compare

import (
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
	for i := 1; i <= 1000; i++ {
		h.observe(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.01, 10 * time.Microsecond}} {
		got := h.quantile(q.q)
		if d := float64(got-q.want) / float64(q.want); d > 0.07 || d < -0.07 {
			t.Errorf("q%v: %v, want %v", q.q, got, q.want)
		}
	}
	// Bounds: below a microsecond, and beyond the last bucket.
	var e histogram
	e.observe(10)
	e.observe(time.Hour)
	if e.quantile(0.01) > time.Microsecond || e.quantile(1) < time.Minute {
		t.Errorf("bounds: %v %v", e.quantile(0.01), e.quantile(1))
	}
	for ns := int64(1); ns < 1<<40; ns = ns*3 + 1 {
		b := bucketOf(ns)
		lo, hi := bucketBounds(b)
		if b > 0 && b < histBuckets-1 && (float64(ns) < lo || float64(ns) >= hi) {
			t.Errorf("%d ns in bucket %d [%v, %v)", ns, b, lo, hi)
		}
	}
	if testing.AllocsPerRun(100, func() { h.observe(time.Millisecond) }) != 0 {
		t.Error("observe allocates")
	}
}
