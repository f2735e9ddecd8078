package agent

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"syscall"
	"time"
	"unsafe"
)

// The agent runs on one P while it is light, and on all of them once it
// is busy. At low rates its work per request is a few microseconds and
// the rest is waking up; with a second P, each wake-up also wakes an idle
// thread to look for work that is not there (Go's spinning threads), which
// costs more than the work (docs/benchmarks.md measures both). A busy agent
// needs the cores, and one P makes goroutines wait for each other: the
// capture behind hundreds of connections' answers. So every P comes back
// as soon as a tick used more than procsBusy of a core, or goroutines
// waited to run for more than procsLate (their p99 over the tick).
const (
	// A quarter of a second of traffic: a burst that finds the agent on
	// one P has every P a tick later.
	procsTick = 250 * time.Millisecond
	// At 1,000 requests a second the agent uses 6-7% of a core on one P
	// and 8-11% on two: with the first thresholds (15% and 10%) it never
	// went back to one after the start-up's burst, and paid a third more
	// per request. Past a quarter of a core one P made the goroutines wait
	// for each other (the saturation bench mirrored 68% at 33% of a core).
	procsBusy = 0.25
	procsLate = 5 * time.Millisecond // starvation, not a VM's or a GC's hiccup
	// And no lateness, for procsCalmTicks ticks in a row: one P again
	// (below procsBusy by more than what the second P costs).
	procsCalm      = 0.15
	procsCalmTicks = 20 // five seconds
)

// procsTuner sets GOMAXPROCS from the CPU the process used, and how long
// its goroutines waited to run, over each tick.
type procsTuner struct {
	max   int                  // the runtime's choice at start (CPUs, or the cgroup's quota)
	cpu   func() time.Duration // CPU time the process used so far
	late  func() time.Duration // p99 of the scheduling latency since the last call
	set   func(int)            // runtime.GOMAXPROCS
	log   *slog.Logger
	cur   int
	last  time.Duration
	at    time.Time
	calm  int
	ended bool
}

// newProcsTuner returns a tuner of the runtime's GOMAXPROCS, or nil when
// there is one CPU only.
func newProcsTuner(log *slog.Logger) *procsTuner {
	max := runtime.GOMAXPROCS(0)
	if max < 2 {
		return nil
	}
	return &procsTuner{max: max, cpu: processCPU, late: newSchedLatency().p99,
		set: func(n int) {
			if n >= max {
				// The runtime's own choice again, which follows the
				// cgroup's quota as it changes.
				runtime.SetDefaultGOMAXPROCS()
				return
			}
			runtime.GOMAXPROCS(n)
		}, log: log}
}

// begin goes to one P.
func (t *procsTuner) begin() {
	t.cur, t.last, t.at = 1, t.cpu(), time.Now()
	t.late()
	t.set(1)
}

// poke steps the tuner if a tick has passed. It is called on the capture's
// goroutine each time it hands segments on, so that it costs no wake-up of
// its own and nothing at all when there is no traffic (an idle agent stays
// on whatever it had; idle, that costs the same).
func (t *procsTuner) poke() {
	if t.ended {
		return
	}
	if now := time.Now(); now.Sub(t.at) >= procsTick {
		t.step(now)
	}
}

// end gives every P back for good, once the capture no longer pokes (a
// last Flush on the caller's goroutine may).
func (t *procsTuner) end() {
	t.ended = true
	t.set(t.max)
}

// step looks at the tick that ended and moves GOMAXPROCS.
func (t *procsTuner) step(now time.Time) {
	used := t.cpu()
	share := float64(used-t.last) / float64(now.Sub(t.at))
	t.last, t.at = used, now
	late := t.late()
	next := t.cur
	switch {
	case t.cur == 1:
		if share > procsBusy || late > procsLate {
			next = t.max
		}
	case share < procsCalm && late <= procsLate:
		if t.calm++; t.calm >= procsCalmTicks {
			next = 1
		}
	default:
		t.calm = 0
	}
	if next != t.cur {
		t.cur, t.calm = next, 0
		t.set(next)
		t.log.Debug("GOMAXPROCS", "procs", next, "cpu_share", share, "sched_p99", late)
	}
}

// schedLatency reads the runtime's histogram of how long goroutines waited
// to run, and gives the p99 of what was added since it last looked.
type schedLatency struct {
	s    []metrics.Sample
	prev []uint64
}

func newSchedLatency() *schedLatency {
	return &schedLatency{s: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

func (l *schedLatency) p99() time.Duration {
	metrics.Read(l.s)
	if l.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := l.s[0].Value.Float64Histogram()
	if len(l.prev) != len(h.Counts) {
		l.prev = make([]uint64, len(h.Counts))
	}
	var total uint64
	for i, c := range h.Counts {
		total += c - l.prev[i]
	}
	var seen uint64
	p := time.Duration(0)
	for i, c := range h.Counts {
		seen += c - l.prev[i]
		if total > 0 && seen*100 >= total*99 {
			// The bucket's lower bound: lateness is not overstated.
			p = time.Duration(max(h.Buckets[i], 0) * float64(time.Second))
			break
		}
	}
	copy(l.prev, h.Counts)
	return p
}

// processCPU is the CPU time, user and system, the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	// A raw call: a syscall.Getrusage would wake sysmon (see shadow's quietConn).
	if _, _, e := syscall.RawSyscall(syscall.SYS_GETRUSAGE, syscall.RUSAGE_SELF, uintptr(unsafe.Pointer(&ru)), 0); e != 0 {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
