package agent

import (
	"log/slog"
	"testing"
	"time"
)

// The tuner goes to one P at start, to every P as soon as a tick used more
// than half a core, and back to one only after procsCalmTicks calm ticks
// in a row; stopping gives every P back.
func TestProcsTuner(t *testing.T) {
	var used time.Duration
	var sets []int
	tu := &procsTuner{max: 4, cpu: func() time.Duration { return used }, set: func(n int) { sets = append(sets, n) }, log: slog.Default()}
	stop := tu.start()
	stop()
	if len(sets) != 2 || sets[0] != 1 || sets[1] != 4 {
		t.Fatalf("start and stop set %v, want [1 4]", sets)
	}

	sets = nil
	tu.cur, tu.last, tu.at, tu.calm = 1, 0, time.Unix(0, 0), 0
	now := tu.at
	tick := func(share float64) {
		now = now.Add(time.Second)
		used += time.Duration(share * float64(time.Second))
		tu.step(now)
	}
	for _, c := range []struct {
		share float64
		want  int
	}{
		{0.1, 1}, {0.4, 1}, // light: one P
		{0.7, 4},                               // busy: every P at once
		{0.3, 4}, {0.1, 4}, {0.1, 4}, {0.4, 4}, // calm, but not five ticks in a row
		{0.1, 4}, {0.1, 4}, {0.1, 4}, {0.1, 4}, // four calm ticks
		{0.1, 1}, // the fifth
		{0.45, 1}, {0.9, 4},
	} {
		tick(c.share)
		if tu.cur != c.want {
			t.Fatalf("after a tick at %.2f of a core: %d procs, want %d (sets %v)", c.share, tu.cur, c.want, sets)
		}
	}
	if want := []int{4, 1, 4}; len(sets) != len(want) || sets[0] != 4 || sets[1] != 1 || sets[2] != 4 {
		t.Errorf("GOMAXPROCS set to %v, want %v", sets, want)
	}
}

// processCPU counts the CPU the process spends.
func TestProcessCPU(t *testing.T) {
	before := processCPU()
	for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
	}
	if after := processCPU(); after <= before {
		t.Errorf("CPU time went from %v to %v over a busy loop", before, after)
	}
}
