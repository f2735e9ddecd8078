package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat and /proc/stat.
// USER_HZ is 100 on every Linux architecture Go supports, and asking
// sysconf for it would need cgo.
const clockTick = 10 * time.Millisecond

// procStat is what the bench reads from /proc/PID/stat.
type procStat struct {
	PPID int
	// CPU is user plus system time, including that of children the process
	// has waited for, so a shell that ran the real work still accounts for it.
	CPU time.Duration
}

// parseProcStat reads a /proc/PID/stat line. The command name may hold
// spaces and parentheses, so the fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no command name")
	}
	// Fields after the name start at field 3 (state).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat: ppid: %w", err)
	}
	var ticks uint64
	// utime, stime, cutime, cstime are fields 14 to 17, here 11 to 14.
	for _, s := range f[11:15] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("stat: cpu time %q: %w", s, err)
		}
		ticks += v
	}
	return procStat{PPID: ppid, CPU: time.Duration(ticks) * clockTick}, nil
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

// status is what the bench reads from /proc/PID/status, or from a
// thread's /proc/PID/task/TID/status: the process's memory in bytes, and
// the context switches of that one thread (the kernel counts them per
// thread; a process's own file shows its main thread's).
type status struct {
	RSS, HWM               int64
	Voluntary, Involuntary uint64
}

// parseProcStatus reads VmRSS, VmHWM and the context switches.
func parseProcStatus(b []byte) (status, error) {
	var st status
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, _ := strings.Cut(line, ":")
		f := strings.Fields(value)
		switch name {
		case "VmRSS", "VmHWM":
			if len(f) != 2 || f[1] != "kB" {
				return st, fmt.Errorf("status: unexpected line %q", line)
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return st, fmt.Errorf("status: %q: %w", line, err)
			}
			if name == "VmRSS" {
				st.RSS = v << 10
			} else {
				st.HWM = v << 10
			}
			found++
		case "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches":
			if len(f) != 1 {
				return st, fmt.Errorf("status: unexpected line %q", line)
			}
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return st, fmt.Errorf("status: %q: %w", line, err)
			}
			if name[0] == 'v' {
				st.Voluntary = v
			} else {
				st.Involuntary = v
			}
		}
	}
	if found != 2 {
		return st, errors.New("status: no VmRSS or VmHWM (a kernel thread, or a zombie)")
	}
	return st, nil
}

func readProcStatus(path string) (status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return status{}, err
	}
	return parseProcStatus(b)
}

// processTree returns root and every live descendant of it. A peer command
// runs under a shell and may fork helpers; all of them are its cost.
func processTree(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil {
			continue // it ended meanwhile
		}
		children[st.PPID] = append(children[st.PPID], pid)
	}
	tree := []int{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// treeCPU is the CPU time used so far by a process tree.
func treeCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		if st, err := readProcStat(pid); err == nil {
			total += st.CPU
		}
	}
	return total
}

// treeRSS is the resident memory of a process tree now.
func treeRSS(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		if m, err := readProcStatus(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			total += m.RSS
		}
	}
	return total
}

// treeSwitches sums the voluntary and involuntary context switches of
// every thread of a process tree: every time one of its threads was taken
// off a CPU, to sleep or by preemption. A thread that has ended takes its
// counts with it; Go runtimes seldom end one.
func treeSwitches(pids []int) (vol, invol uint64) {
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		for _, t := range tasks {
			if st, err := readProcStatus(t); err == nil {
				vol += st.Voluntary
				invol += st.Involuntary
			}
		}
	}
	return vol, invol
}

// hostCPU is the machine's CPU time from /proc/stat.
type hostCPU struct {
	// Busy is the sum of the tick-sampled busy states. Ticks stop while a
	// CPU idles, so work done in short bursts between ticks is missed.
	Busy time.Duration
	// Idle (idle plus iowait) is measured exactly on tickless kernels.
	Idle time.Duration
	// At is when the line was read.
	At time.Time
	// PerCPU holds the same for each CPU, indexed by its number.
	PerCPU []hostCPU
}

// parseHostCPU reads the aggregate "cpu" line of /proc/stat and the
// "cpuN" lines after it.
func parseHostCPU(b []byte) (hostCPU, error) {
	now := time.Now()
	var h hostCPU
	found := false
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		c := hostCPU{At: now}
		// Fields: user nice system idle iowait irq softirq steal guest guest_nice.
		// guest and guest_nice are already inside user and nice.
		for i, s := range f[1:] {
			if i >= 8 {
				break
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return hostCPU{}, fmt.Errorf("/proc/stat: %q: %w", s, err)
			}
			d := time.Duration(v) * clockTick
			if i == 3 || i == 4 {
				c.Idle += d
			} else {
				c.Busy += d
			}
		}
		if f[0] == "cpu" {
			h.Busy, h.Idle, h.At, found = c.Busy, c.Idle, c.At, true
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil || n < 0 || n > 4096 {
			continue
		}
		for len(h.PerCPU) <= n {
			h.PerCPU = append(h.PerCPU, hostCPU{At: now})
		}
		h.PerCPU[n] = c
	}
	if !found {
		return hostCPU{}, errors.New("/proc/stat: no cpu line")
	}
	return h, nil
}

// busyPerCPU is the busy share (0 to 1) of each CPU between two readings.
func busyPerCPU(a, b hostCPU) []float64 {
	out := make([]float64, min(len(a.PerCPU), len(b.PerCPU)))
	for i := range out {
		out[i] = busyCores(a.PerCPU[i], b.PerCPU[i], 1)
	}
	return out
}

func readHostCPU() (hostCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, err
	}
	return parseHostCPU(b)
}

// busyCores is the average number of busy CPUs between two readings: the
// CPUs less their idle time, which, unlike the busy ticks, is exact.
func busyCores(a, b hostCPU, cpus int) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return max(0, float64(cpus)-float64(b.Idle-a.Idle)/float64(wall))
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryGiB int    `json:"memory_gib"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kib, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryGiB = int((kib + 1<<19) >> 20)
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%d vCPUs (%s), %d GiB, Linux %s, %s", m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.Go)
}
