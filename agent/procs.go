package agent

import (
	"log/slog"
	"runtime"
	"syscall"
	"time"
)

// The agent runs on one P while it is light, and on all of them once it
// is busy. At low rates its work per request is a few microseconds and
// the rest is waking up; with a second P, each wake-up also wakes an idle
// thread to look for work that is not there (Go's spinning threads), which
// costs more than the work. Measured on a 2-vCPU VM, one P took 17% less
// CPU per request at 1,000 requests a second and 25% less at 10,000
// (docs/benchmarks.md). Past half a core the agent gets every P back, so
// that a burst has the machine's cores.
const (
	procsTick = time.Second
	// Above this share of a core over a tick, one P becomes all of them.
	procsBusy = 0.5
	// Below this share of a core for procsCalmTicks ticks in a row, all
	// of them become one again.
	procsCalm      = 0.25
	procsCalmTicks = 5
)

// procsTuner sets GOMAXPROCS from the CPU the process used over each tick.
type procsTuner struct {
	max  int                  // the runtime's choice at start (CPUs, or the cgroup's quota)
	cpu  func() time.Duration // CPU time the process used so far
	set  func(int)            // runtime.GOMAXPROCS
	log  *slog.Logger
	cur  int
	last time.Duration
	at   time.Time
	calm int
}

// newProcsTuner returns a tuner of the runtime's GOMAXPROCS, or nil when
// there is one CPU only.
func newProcsTuner(log *slog.Logger) *procsTuner {
	max := runtime.GOMAXPROCS(0)
	if max < 2 {
		return nil
	}
	return &procsTuner{max: max, cpu: processCPU, set: func(n int) { runtime.GOMAXPROCS(n) }, log: log}
}

// start goes to one P and returns, with the goroutine that tunes, the func
// that stops it and gives every P back.
func (t *procsTuner) start() (stop func()) {
	t.cur, t.last, t.at = 1, t.cpu(), time.Now()
	t.set(1)
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(procsTick)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				t.step(now)
			}
		}
	}()
	return func() {
		close(done)
		<-ended
		t.set(t.max)
	}
}

// step looks at the CPU used since the last step and moves GOMAXPROCS.
func (t *procsTuner) step(now time.Time) {
	used := t.cpu()
	share := float64(used-t.last) / float64(now.Sub(t.at))
	t.last, t.at = used, now
	next := t.cur
	switch {
	case t.cur == 1:
		if share > procsBusy {
			next = t.max
		}
	case share < procsCalm:
		if t.calm++; t.calm >= procsCalmTicks {
			next = 1
		}
	default:
		t.calm = 0
	}
	if next != t.cur {
		t.cur, t.calm = next, 0
		t.set(next)
		t.log.Debug("GOMAXPROCS", "procs", next, "cpu_share", share)
	}
}

// processCPU is the CPU time, user and system, the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
