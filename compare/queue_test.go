package compare

import (
	"testing"
)

func TestSubmitDropsWhenFull(t *testing.T) {
	e := newEngine(t, Config{QueueLen: 4})
	ok := jsonAns(200, `{}`)
	// Hold the engine: its goroutine can take at most one exchange and
	// then waits, so the queue fills.
	e.mu.Lock()
	accepted, refused := 0, 0
	for i := 0; i < 4+2; i++ {
		if e.Submit(exchange(i, "GET", "/q", ok, ok)) {
			accepted++
		} else {
			refused++
		}
	}
	e.mu.Unlock()
	if refused == 0 || accepted < 4 || accepted > 5 {
		t.Fatalf("accepted %d refused %d with a queue of 4 and a held engine", accepted, refused)
	}
	e.Sync()
	r := e.Report()
	if r.Totals.Exchanges != uint64(accepted) || r.Totals.Dropped != uint64(refused) || e.Dropped() != uint64(refused) {
		t.Errorf("exchanges %d dropped %d, want %d %d", r.Totals.Exchanges, r.Totals.Dropped, accepted, refused)
	}
	// After Close, Submit refuses and counts; Sync and Report still work.
	e.Close()
	if e.Submit(exchange(9, "GET", "/q", ok, ok)) {
		t.Error("Submit after Close accepted")
	}
	e.Sync()
	if got := e.Report().Totals.Dropped; got != uint64(refused)+1 {
		t.Errorf("dropped %d after Close", got)
	}
}

func TestSubmitCompares(t *testing.T) {
	e := newEngine(t, Config{})
	for i := range 50 {
		e.Submit(exchange(i, "GET", "/s", jsonAns(200, `{"a":1}`), jsonAns(200, `{"a":2}`)))
	}
	e.Sync()
	r := e.Report()
	if r.Totals.Compared+r.Totals.Dropped != 50 || r.Totals.Different != r.Totals.Compared {
		t.Errorf("totals %+v", r.Totals)
	}
	e.Close()
	e.Close() // twice is fine
}

func TestJudgeRule(t *testing.T) {
	e := newEngine(t, Config{})
	for _, tc := range []struct {
		compared, noisePairs, count, noiseCount uint64
		want                                    bool
	}{
		{100, 0, 1, 0, true},       // 1% vs nothing
		{100000, 0, 20, 0, false},  // 0.02% < 0.03%
		{100000, 0, 40, 0, true},   // 0.04% > 0.03%
		{100, 100, 50, 40, false},  // (0.5-0.4)/0.9 = 11%
		{100, 100, 50, 30, true},   // (0.5-0.3)/0.8 = 25%
		{100, 100, 50, 60, false},  // less than the noise
		{100, 10, 100, 10, false},  // all noise
		{100, 0, 0, 0, false},      // never differed
		{10, 1000, 10, 500, true},  // 100% vs 50%: 33%
		{1000, 10, 500, 10, false}, // 50% vs 100%
	} {
		ep := &endpoint{compared: tc.compared, noisePairs: tc.noisePairs}
		f := &field{count: tc.count, noiseCount: tc.noiseCount}
		if got := e.judge(ep, f); got != tc.want {
			t.Errorf("%+v: %v", tc, got)
		}
	}
}

func TestNoAllocationsWhenWarm(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a warm engine")
	}
	base := catalog(4<<10, "0b6c3ad4-5d7e-4a51-9b8e-5e1b2d3c4f5a", "t1", plainPrice)
	changed := catalog(4<<10, "7f3e2a10-1b2c-4d5e-8f90-a1b2c3d4e5f6", "t2", plainPrice)
	for _, tc := range []struct {
		name   string
		shadow []byte
	}{{"identical", base}, {"different", changed}} {
		e := newEngine(t, Config{NoiseEntries: 16})
		ex := benchExchange(jsonAnswer(base), jsonAnswer(tc.shadow))
		n := uint64(0)
		add := func() {
			n++
			ex.BodyHash = n
			e.Add(ex)
		}
		for range 100 {
			add()
		}
		if a := testing.AllocsPerRun(200, add); a != 0 {
			t.Errorf("%s: %v allocations per exchange", tc.name, a)
		}
	}
}
