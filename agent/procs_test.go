package agent

import (
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The tuner goes to one P at start, to every P as soon as a tick used more
// than procsBusy of a core or goroutines waited past procsLate, and back
// to one only after procsCalmTicks calm ticks in a row; ending gives every
// P back.
func TestProcsTuner(t *testing.T) {
	var used, late time.Duration
	var sets []int
	tu := &procsTuner{max: 4, cpu: func() time.Duration { return used }, late: func() time.Duration { return late },
		set: func(n int) { sets = append(sets, n) }, log: slog.Default()}
	tu.begin()
	tu.poke() // within the first tick: nothing
	tu.end()
	if len(sets) != 2 || sets[0] != 1 || sets[1] != 4 {
		t.Fatalf("begin, poke and end set %v, want [1 4]", sets)
	}

	sets = nil
	const calm = procsCalm / 2
	tu.cur, tu.last, tu.at, tu.calm = 1, 0, time.Unix(0, 0), 0
	now := tu.at
	for i, c := range []struct {
		share float64
		late  time.Duration
		want  int
	}{
		{0.05, 0, 1}, {procsBusy - 0.03, 2 * time.Millisecond, 1}, // light: one P
		{procsBusy + 0.05, 0, 4},                                         // busy: every P at once
		{procsCalm, 0, 4}, {calm, 0, 4}, {calm, 6 * time.Millisecond, 4}, // calm, but not long enough
		{calm, 0, 4}, {calm, 0, 4}, {calm, 0, 4}, {calm, 0, 4}, // four calm ticks
		{0, 0, -1},                      // more
		{calm, 0, 1},                    // the last
		{calm, 8 * time.Millisecond, 4}, // goroutines waited: every P
	} {
		if c.want == -1 {
			// Calm ticks, up to the last of procsCalmTicks.
			for range procsCalmTicks - 5 {
				now = now.Add(procsTick)
				used += procsTick / 20
				tu.step(now)
				if tu.cur != 4 {
					t.Fatalf("one P before %d calm ticks", procsCalmTicks)
				}
			}
			continue
		}
		now = now.Add(procsTick)
		used += time.Duration(c.share * float64(procsTick))
		late = c.late
		tu.step(now)
		if tu.cur != c.want {
			t.Fatalf("tick %d (%.2f of a core, p99 wait %v): %d procs, want %d (sets %v)", i, c.share, c.late, tu.cur, c.want, sets)
		}
	}
	if want := []int{4, 1, 4}; len(sets) != len(want) || sets[0] != 4 || sets[1] != 1 || sets[2] != 4 {
		t.Errorf("GOMAXPROCS set to %v, want %v", sets, want)
	}
	// Once ended, a last poke changes nothing.
	tu.end()
	sets = nil
	tu.cur, tu.at = 1, time.Time{}
	used += time.Hour
	tu.poke()
	if len(sets) != 0 {
		t.Errorf("a poke after end set %v", sets)
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

// schedLatency sees goroutines that wait to run: on one P, with busy
// goroutines that yield only every few milliseconds, others wait that long.
func TestSchedLatency(t *testing.T) {
	l := newSchedLatency()
	l.p99()
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				for start := time.Now(); time.Since(start) < 5*time.Millisecond; {
				}
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	if p := l.p99(); p < time.Millisecond {
		t.Errorf("p99 scheduling latency %v with four goroutines sharing one P in 5 ms slices", p)
	}
}
