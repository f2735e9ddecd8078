package shadow

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	if numBounded != 100 || bucketBounds[numBounded-1] != maxBoundUs {
		t.Fatalf("%d buckets, last bound %d", numBounded, bucketBounds[numBounded-1])
	}
	// Every value lands in the bucket whose inclusive bound is the first one
	// at or above it, and buckets are at most 25% wide.
	prev := uint64(0)
	for i, b := range bucketBounds {
		if b <= prev {
			t.Fatalf("bound %d (%d) not above %d", i, b, prev)
		}
		if i > 4 && float64(b-prev) > 0.25*float64(prev)+1e-9 {
			t.Errorf("bucket %d (%d, %d] wider than 25%%", i, prev, b)
		}
		prev = b
	}
	check := func(v uint64) {
		i := bucketOf(v)
		switch {
		case i == numBounded:
			if v <= maxBoundUs {
				t.Errorf("%dµs overflowed", v)
			}
		case v > bucketBounds[i] || (i > 0 && v <= bucketBounds[i-1]):
			t.Errorf("%dµs in bucket %d", v, i)
		}
	}
	for v := uint64(0); v < 100000; v++ {
		check(v)
	}
	for _, b := range bucketBounds {
		check(b - 1)
		check(b)
		check(b + 1)
	}
	check(math.MaxUint64)
}

func TestHistogramQuantileAndVisit(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.Observe(time.Duration(i) * time.Millisecond)
	}
	h.Observe(time.Hour) // overflow
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}} {
		got := h.Quantile(tc.q)
		if d := math.Abs(float64(got-tc.want)) / float64(tc.want); d > 0.25 {
			t.Errorf("q%v = %v, want about %v", tc.q, got, tc.want)
		}
	}
	if got := h.Quantile(1); got != maxBoundUs*time.Microsecond {
		t.Errorf("q1 = %v", got)
	}
	if h.Count() != 1001 || h.Sum() != time.Hour+500500*time.Millisecond {
		t.Errorf("count %d sum %v", h.Count(), h.Sum())
	}
	var last uint64
	var bounds int
	h.Visit(func(le time.Duration, n uint64) {
		if n < last {
			t.Errorf("cumulative count went down at %v", le)
		}
		last = n
		bounds++
		if le >= 0 && le == 500*time.Millisecond && n != 500 {
			t.Errorf("le 500ms: %d", n)
		}
	})
	if bounds != numBounded+1 || last != 1001 {
		t.Errorf("%d bounds, +Inf %d", bounds, last)
	}
}

func TestStatsSnapshot(t *testing.T) {
	var st Stats
	st.Queued.Add(3)
	st.Mirrored.Add(2)
	st.Failed[FailTimeout].Add(1)
	st.Dropped[DropOverflow].Add(4)
	st.countStatus(200)
	st.countStatus(503)
	st.countStatus(42)
	st.Latency.Observe(3 * time.Millisecond)
	st.ConnectionsClosed[CloseIdleTimeout].Add(2)
	st.addInFlight(7)
	st.addInFlight(-2)
	st.Retried.Add(1)
	sn := st.Snapshot()
	if sn.InFlight != 5 || sn.PeakInFlight != 7 || sn.ConnectionsClosed["idle_timeout"] != 2 {
		t.Errorf("snapshot %+v", sn)
	}
	if sn.Status[200] != 1 || sn.Status[503] != 1 || sn.Status[0] != 1 || st.Status(0) != 1 || st.Status(42) != 0 {
		t.Errorf("status %v", sn.Status)
	}
	s := sn.String()
	for _, want := range []string{"queued=3", "mirrored=2", "failed_timeout=1", "dropped_overflow=4", "connections_closed_idle_timeout=2", "in_flight=5", "peak_in_flight=7", "retried=1", "status_200=1", "status_other=1", "p50="} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}

func TestStatsAddTo(t *testing.T) {
	var a, b, sum Stats
	a.Mirrored.Add(2)
	a.countStatus(200)
	a.countStatus(200)
	a.Latency.Observe(time.Millisecond)
	a.Failed[FailTimeout].Add(1)
	b.Mirrored.Add(1)
	b.countStatus(503)
	b.Latency.Observe(3 * time.Millisecond)
	b.Dropped[DropOverflow].Add(4)
	b.ConnectionsClosed[CloseShutdown].Add(3)
	b.Retried.Add(2)
	a.ConnectionsOpen.Add(1)
	a.AddTo(&sum)
	b.AddTo(&sum)
	sn := sum.Snapshot()
	if sn.Mirrored != 3 || sn.Status[200] != 2 || sn.Status[503] != 1 || sn.Responses != 2 ||
		sn.Failed["timeout"] != 1 || sn.Dropped["overflow"] != 4 || sum.Latency.Sum() != 4*time.Millisecond ||
		sn.ConnectionsClosed["shutdown"] != 3 || sn.Retried != 2 || sn.ConnectionsOpen != 1 {
		t.Errorf("sum %+v", sn)
	}
}
