package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MemBreakdown says where a tee's resident memory is, at one moment: the
// kernel's view of its mappings (/proc/PID/smaps) and, for shadowtee, the
// Go runtime's and the agent's own gauges from its /metrics.
type MemBreakdown struct {
	RSSMiB  float64 `json:"rss_mib"`
	AnonMiB float64 `json:"anon_mib"` // anonymous private memory: the Go heap, stacks, runtime
	// BPFMiB is resident memory of BPF objects mapped into the process:
	// the ring buffer's pages once they have been read.
	BPFMiB  float64 `json:"bpf_mib"`
	FileMiB float64 `json:"file_mib"` // the binary and other mapped files
	// The Go runtime (go_memstats_*): heap in use, heap kept but free,
	// goroutine stacks, and everything it took from the OS.
	HeapInuseMiB    *float64 `json:"heap_inuse_mib,omitempty"`
	HeapRetainedMiB *float64 `json:"heap_retained_mib,omitempty"`
	StacksMiB       *float64 `json:"stacks_mib,omitempty"`
	GoSysMiB        *float64 `json:"go_sys_mib,omitempty"`
	Goroutines      *float64 `json:"goroutines,omitempty"`
	// The agent's gauges: streams followed, bytes held for the shadow, and
	// bytes waiting for the reassembly workers.
	Streams    *float64 `json:"streams,omitempty"`
	QueueMiB   *float64 `json:"queue_mib,omitempty"`
	BacklogMiB *float64 `json:"backlog_mib,omitempty"`
}

// smapsTotals sums the Rss of a process's mappings by kind.
type smapsTotals struct {
	RSS, Anon, BPF, File int64 // bytes
}

// parseSmaps reads /proc/PID/smaps: a header line per mapping (address
// range, permissions, offset, device, inode, optional name) followed by
// "Key: value kB" lines.
func parseSmaps(r io.Reader) (smapsTotals, error) {
	var t smapsTotals
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	name := ""
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping's header: its name is the sixth field, if any.
			name = ""
			if len(f) >= 6 {
				name = strings.Join(f[5:], " ")
			}
			continue
		}
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return t, fmt.Errorf("smaps: %q: %w", line, err)
		}
		v <<= 10
		switch f[0] {
		case "Rss:":
			t.RSS += v
			switch {
			case strings.HasPrefix(name, "anon_inode:bpf"):
				t.BPF += v
			case strings.HasPrefix(name, "/"):
				t.File += v
			}
		case "Anonymous:":
			if !strings.HasPrefix(name, "anon_inode:bpf") {
				t.Anon += v
			}
		}
	}
	return t, sc.Err()
}

// memBreakdown reads where a tee's memory is now, over its process tree
// (a peer runs under a shell).
func memBreakdown(ctx context.Context, tp tee) *MemBreakdown {
	var t smapsTotals
	for _, pid := range processTree(tp.pid()) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
		if err != nil {
			continue
		}
		one, err := parseSmaps(f)
		f.Close()
		if err != nil {
			return nil
		}
		t.RSS, t.Anon, t.BPF, t.File = t.RSS+one.RSS, t.Anon+one.Anon, t.BPF+one.BPF, t.File+one.File
	}
	const mib = 1 << 20
	m := &MemBreakdown{RSSMiB: float64(t.RSS) / mib, AnonMiB: float64(t.Anon) / mib, BPFMiB: float64(t.BPF) / mib,
		FileMiB: float64(t.File) / mib}
	ps, err := tp.metrics(ctx)
	if err != nil || ps == nil {
		return m
	}
	get := func(key string, scale float64) *float64 {
		v, ok := ps[key]
		if !ok {
			return nil
		}
		return ptr(v / scale)
	}
	m.HeapInuseMiB = get("go_memstats_heap_inuse_bytes", mib)
	if idle, ok := ps["go_memstats_heap_idle_bytes"]; ok {
		m.HeapRetainedMiB = ptr((idle - ps["go_memstats_heap_released_bytes"]) / mib)
	}
	m.StacksMiB = get("go_memstats_stack_inuse_bytes", mib)
	m.GoSysMiB = get("go_memstats_sys_bytes", mib)
	m.Goroutines = get("go_goroutines", 1)
	m.Streams = get("shadowtee_streams_active", 1)
	m.BacklogMiB = get("shadowtee_backlog_bytes", mib)
	var queue float64
	found := false
	for k, v := range ps {
		if strings.HasPrefix(k, "shadowtee_shadow_queue_bytes") {
			queue += v
			found = true
		}
	}
	if found {
		m.QueueMiB = ptr(queue / mib)
	}
	return m
}

// String renders the breakdown on one line for the reports.
func (m *MemBreakdown) String() string {
	if m == nil {
		return dash
	}
	parts := []string{fmt.Sprintf("RSS %.1f MiB = anonymous %.1f + BPF ring %.1f + files %.1f (+ other %.1f)",
		m.RSSMiB, m.AnonMiB, m.BPFMiB, m.FileMiB, max(0, m.RSSMiB-m.AnonMiB-m.BPFMiB-m.FileMiB))}
	opt := func(label string, v *float64, format string) {
		if v != nil {
			parts = append(parts, fmt.Sprintf("%s "+format, label, *v))
		}
	}
	opt("Go heap in use", m.HeapInuseMiB, "%.1f MiB")
	opt("heap free but kept", m.HeapRetainedMiB, "%.1f MiB")
	opt("stacks", m.StacksMiB, "%.1f MiB")
	opt("Go total from the OS", m.GoSysMiB, "%.1f MiB")
	opt("goroutines", m.Goroutines, "%.0f")
	opt("streams followed", m.Streams, "%.0f")
	opt("held for the shadow", m.QueueMiB, "%.2f MiB")
	opt("reassembly backlog", m.BacklogMiB, "%.2f MiB")
	return strings.Join(parts, "; ")
}
