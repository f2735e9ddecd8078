// Package reassembly turns TCP segments, as copied off the wire, into the
// ordered bytes of each direction of each connection.
//
// It is pure Go: no sockets, no BPF. The live capture and the pcap reader
// both yield Segments, so every behaviour here can be tested from literals
// or from a capture.
//
// Invariants: each byte of a flow is delivered once, in sequence order
// (the first copy to arrive wins); a hole given up on is announced by Gap;
// memory is bounded in flows, bytes and chunks; time comes only from the
// segments and Tick, so a capture replays the same way every time, and
// NextDeadline says when Tick next has work, so that an idle agent sleeps.
//
// It imports nothing of the project.
package reassembly
