// Package capture runs the live capture: it loads the kernel program of
// package bpf, attaches it to the interfaces that a configuration selects
// (by name, glob or "auto", following interfaces as they appear and go),
// and reads the ring buffer into a sink on a goroutine of its own.
//
// Invariants: it never deletes a qdisc or a filter it did not add (the bpf
// package's attach rules); Stop hands the sink every record the kernel
// copied before the hooks were removed; errors of permission name the
// capabilities the process lacks.
//
// It knows nothing of HTTP or of the agent: what reads the segments is the
// sink's business. It must not import agent, shadow or the framers.
package capture
