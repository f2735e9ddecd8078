package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuPlan says where --pin puts the processes: the primary alone on one
// CPU, everything else of the bench (the generator, the shadow, the tee) on
// another, so that the primary saturates its own core and a tee can only
// take from it what it takes through the kernel.
type cpuPlan struct {
	Primary int   `json:"primary_cpu"`
	Others  int   `json:"others_cpu"`
	all     []int // the bench's own CPUs, where unpinning puts processes back
}

// newCPUPlan picks the first two CPUs the bench may run on.
func newCPUPlan() (*cpuPlan, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read the CPU affinity: %w", err)
	}
	var cpus []int
	for i := range len(set) * 64 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("--pin needs two CPUs, the bench may use %v", cpus)
	}
	return &cpuPlan{Primary: cpus[0], Others: cpus[1], all: cpus}, nil
}

func cpuSet(cpus ...int) *unix.CPUSet {
	var s unix.CPUSet
	for _, c := range cpus {
		s.Set(c)
	}
	return &s
}

// pinProcess sets the CPU affinity of every thread of pid to cpus.
// sched_setaffinity applies to one thread, and a thread inherits the mask
// of the thread that creates it; so the threads are listed again until a
// pass finds none to change, which catches threads created meanwhile by a
// thread not yet pinned.
func pinProcess(pid int, cpus ...int) error {
	want := cpuSet(cpus...)
	for range 10 {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("pin %d: %w", pid, err)
		}
		changed := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &cur); err != nil {
				continue // the thread ended
			}
			if cur == *want {
				continue
			}
			if err := unix.SchedSetaffinity(tid, want); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of %d to %v: %w", tid, pid, cpus, err)
			}
			changed++
		}
		if changed == 0 {
			return nil
		}
	}
	return fmt.Errorf("pin %d: its threads kept changing", pid)
}

// pinTree pins root and its descendants (a peer's shell and what it runs).
func pinTree(root int, cpus ...int) error {
	var errs []error
	for _, pid := range processTree(root) {
		if err := pinProcess(pid, cpus...); err != nil && pid == root {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// threadCPUs returns the CPUs that thread tid may run on.
func threadCPUs(tid int) ([]int, error) {
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &s); err != nil {
		return nil, err
	}
	var cpus []int
	for i := range len(s) * 64 {
		if s.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}
