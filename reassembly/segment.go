package reassembly

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"time"
)

// Flow names one direction of one TCP connection: the bytes that Src sends to
// Dst. It is comparable and collision free (it holds the whole 5-tuple; the
// protocol is always TCP), so it is used directly as a map key.
type Flow struct {
	Src netip.AddrPort
	Dst netip.AddrPort
}

// Reverse returns the other direction of the same connection.
func (f Flow) Reverse() Flow { return Flow{Src: f.Dst, Dst: f.Src} }

// String formats the flow as "src -> dst".
func (f Flow) String() string { return f.Src.String() + " -> " + f.Dst.String() }

var flowSeed = maphash.MakeSeed()

// Hash returns a hash of the flow that is the same for both directions of a
// connection, so that a connection always lands on the same worker. It is
// stable for the life of the process only.
func (f Flow) Hash() uint64 {
	a, b := f.Src, f.Dst
	if a.Addr().Less(b.Addr()) || (a.Addr() == b.Addr() && a.Port() < b.Port()) {
		a, b = b, a
	}
	var buf [36]byte
	a16, b16 := a.Addr().As16(), b.Addr().As16()
	copy(buf[0:16], a16[:])
	copy(buf[16:32], b16[:])
	binary.LittleEndian.PutUint16(buf[32:], a.Port())
	binary.LittleEndian.PutUint16(buf[34:], b.Port())
	return maphash.Bytes(flowSeed, buf[:])
}

// Flags are the TCP control bits of a segment, in their wire bit positions.
type Flags uint8

// TCP control bits.
const (
	FIN Flags = 1 << 0
	SYN Flags = 1 << 1
	RST Flags = 1 << 2
	PSH Flags = 1 << 3
	ACK Flags = 1 << 4
)

// Has reports whether every bit of g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// Direction says which side of its connection sent a flow's bytes. The
// source knows it (the live capture from the hook that copied the packet, a
// capture file from the side it found to be the client); reassembly only
// carries it to the Stream.
type Direction uint8

// Directions of a flow.
const (
	// ToServer is the client's side: requests. It is the zero value.
	ToServer Direction = iota
	// ToClient is the server's side: answers.
	ToClient
)

// String returns "to_server" or "to_client".
func (d Direction) String() string {
	if d == ToClient {
		return "to_client"
	}
	return "to_server"
}

// Segment is one TCP segment (or one piece of a GRO super-packet) of one flow.
type Segment struct {
	Flow  Flow
	Dir   Direction // which side of the connection sent it
	Seq   uint32    // sequence number of the first payload byte (of the SYN itself when SYN is set)
	Ack   uint32
	Flags Flags
	// Payload is the TCP payload. The assembler does not keep a reference to
	// it after Add returns; it copies what it has to hold.
	Payload []byte
	// Time is when the segment was captured. It is the assembler's clock: idle
	// and gap timeouts are measured against the newest segment time seen and
	// against the times given to Tick.
	Time time.Time
}
