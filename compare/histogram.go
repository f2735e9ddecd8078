package compare

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts durations in logarithmic buckets: 8 per power of two
// (at most 9% apart), from 1µs to about 2 minutes; shorter durations fall
// in the first bucket and longer ones in the last. Observing allocates
// nothing.
type histogram struct {
	n      uint64
	counts [histBuckets]uint64
}

const (
	histSub     = 3 // log2 of the buckets per power of two
	histMinExp  = 10
	histMaxExp  = 37                                   // 2^37 ns ≈ 137 s
	histBuckets = (histMaxExp-histMinExp)<<histSub + 2 // under 1µs, then the rest, then beyond
)

func bucketOf(ns int64) int {
	if ns < 1<<histMinExp {
		return 0
	}
	u := uint64(ns)
	e := bits.Len64(u) - 1 // 2^e <= u < 2^(e+1)
	if e >= histMaxExp {
		return histBuckets - 1
	}
	sub := int(u>>(e-histSub)) & (1<<histSub - 1)
	return (e-histMinExp)<<histSub + sub + 1
}

// bucketBounds returns the range of durations of bucket b, in ns.
func bucketBounds(b int) (lo, hi float64) {
	if b == 0 {
		return 0, 1 << histMinExp
	}
	if b >= histBuckets-1 {
		return math.Ldexp(1, histMaxExp), math.Ldexp(1, histMaxExp)
	}
	b--
	e := b>>histSub + histMinExp
	sub := b & (1<<histSub - 1)
	lo = math.Ldexp(1+float64(sub)/(1<<histSub), e)
	hi = math.Ldexp(1+float64(sub+1)/(1<<histSub), e)
	return lo, hi
}

func (h *histogram) observe(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	h.n += o.n
	for i := range h.counts {
		h.counts[i] += o.counts[i]
	}
}

// quantile returns the q-quantile (0 < q <= 1), interpolated within its
// bucket, or 0 without observations.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := q * float64(h.n)
	var seen float64
	for b, c := range h.counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := bucketBounds(b)
			f := (rank - seen) / float64(c)
			return time.Duration(lo + (hi-lo)*f)
		}
		seen += float64(c)
	}
	lo, _ := bucketBounds(histBuckets - 1)
	return time.Duration(lo)
}
