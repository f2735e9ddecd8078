// Package pcapfile reads TCP segments out of capture files and writes the
// segments that the live tee copies into pcapng files.
//
// A Reader is the second source of segments next to the BPF ring buffer: it
// fills the same reassembly.Segment, so everything downstream of the source
// can run from a capture. It reads pcap (either byte order, microsecond or
// nanosecond timestamps) and pcapng (several sections and interfaces, each
// interface with its own link type and timestamp resolution) without
// libpcap, in constant memory, with no allocation per packet, and it reports
// a damaged file with the byte offset of the damage.
//
// Sides tells the direction of each segment of a connection (client to
// server, or server to client), and Writer saves segments as a pcapng file
// that Reader and Wireshark read back (and tcpdump, when the file has one
// interface).
//
// It imports reassembly for the Segment type, and nothing above it.
package pcapfile
