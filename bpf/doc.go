// Package bpf loads shadowtee's TC program, attaches it to interfaces and
// reads the segments it copies.
//
// The program (tee.c) and the layout it shares with Go (tee.h) are compiled
// by bpf2go into the committed tee_bpfel.o, so building the agent needs no
// C toolchain. Run `make generate` after changing the C source.
//
// Invariants:
//   - The program only reads: every path returns TC_ACT_UNSPEC; a copy that
//     fails is a counted drop, never a verdict on the packet.
//   - Attach never deletes a qdisc, nor a filter it did not add; a filter of
//     a dead agent (by name and PID) is replaced.
//   - The reader never blocks the kernel: a full ring drops (and counts) the
//     copy. It blocks itself only when the ring is empty, and the program
//     wakes it (the doorbell) for the next packet that carries bytes.
//   - Limits (ports, destinations) are read from the loaded spec.
//
// It knows TCP segments, not HTTP: it imports reassembly for the Segment
// type only.
package bpf
