package pcapfile

import (
	"net/netip"

	"github.com/shadowtee/shadowtee/reassembly"
)

// DefaultMaxConnections is how many decided connections Sides remembers
// when it has to find the client of each connection itself.
const DefaultMaxConnections = 1 << 18

// Sides tells the direction of each segment of a capture: a capture holds
// both directions of every connection, and the tee mirrors what clients
// send and compares what servers answer.
//
// With server ports, a segment to one of them goes to the server, and one
// from one of them to the client; any other is undecided. Without, Sides
// decides per connection (both directions share one entry):
//   - a SYN without ACK marks its sender as the client, a SYN+ACK its
//     receiver (a SYN always decides anew: the ports may be reused);
//   - else the first segment with payload decides: a request line prefix
//     (an HTTP method token in capitals and a space, which covers the HTTP/2
//     preface "PRI * HTTP/2.0") means its sender is the client, "HTTP/1."
//     means its receiver is;
//   - segments of a connection that is not decided yet are undecided and
//     counted, and decide nothing.
//
// Memory is bounded: only decided connections are remembered; a connection
// is forgotten after a RST from either side, or after the last ACK that
// follows a FIN from both sides (a closed connection whose last ACK is not
// seen is the first to go when space is needed), and when more than
// DefaultMaxConnections are remembered the least recently active one is
// forgotten (and counted). A forgotten connection that sends again is decided again from
// its next SYN or request line, so a long body segment of a forgotten
// connection is dropped as undecided.
//
// Sides is not safe for concurrent use.
type Sides struct {
	ports    [1024]uint64 // bitmap of the server ports, when usePorts
	usePorts bool

	index map[reassembly.Flow]int32 // canonical flow -> entry
	ents  []entry
	free  int32 // head of the free list, -1 when empty
	head  int32 // least recently active, -1 when empty
	tail  int32 // most recently active
	max   int

	stats SidesStats
}

// SidesStats counts what Sides did with the segments it saw.
type SidesStats struct {
	ToServer  uint64 // client-to-server segments
	ToClient  uint64 // server-to-client segments
	Undecided uint64 // segments of connections whose client was not known yet (with ports: of no watched port)
	Forgotten uint64 // open connections forgotten because the table was full
}

// entry is one decided connection, in an intrusive list ordered by activity.
type entry struct {
	key        reassembly.Flow // canonical direction
	client     netip.AddrPort
	fin        uint8 // finClient, finServer: who has sent a FIN
	prev, next int32
}

const (
	finClient = 1 << iota
	finServer
	finBoth = finClient | finServer
)

// NewSides returns a Sides that keeps segments to ports, or, when ports is
// empty, finds each connection's client itself.
func NewSides(ports []uint16) *Sides {
	s := &Sides{free: -1, head: -1, tail: -1, max: DefaultMaxConnections}
	for _, p := range ports {
		s.ports[p>>6] |= 1 << (p & 63)
		s.usePorts = true
	}
	if !s.usePorts {
		s.index = make(map[reassembly.Flow]int32)
	}
	return s
}

// Stats returns the counts so far.
func (s *Sides) Stats() SidesStats { return s.stats }

// Direction sets seg.Dir to the side of its connection that sent it, and
// reports whether that side is known; an undecided segment is left alone.
func (s *Sides) Direction(seg *reassembly.Segment) bool {
	if s.usePorts {
		switch {
		case s.watched(seg.Flow.Dst.Port()):
			seg.Dir = reassembly.ToServer
			s.stats.ToServer++
		case s.watched(seg.Flow.Src.Port()):
			seg.Dir = reassembly.ToClient
			s.stats.ToClient++
		default:
			s.stats.Undecided++
			return false
		}
		return true
	}
	key := canonical(seg.Flow)
	i, known := s.index[key]

	var client netip.AddrPort
	switch {
	case seg.Flags.Has(reassembly.SYN) && !seg.Flags.Has(reassembly.ACK):
		client = seg.Flow.Src
	case seg.Flags.Has(reassembly.SYN | reassembly.ACK):
		client = seg.Flow.Dst
	case known:
		client = s.ents[i].client
	case len(seg.Payload) > 0 && looksLikeRequest(seg.Payload):
		client = seg.Flow.Src
	case len(seg.Payload) > 0 && hasPrefix(seg.Payload, "HTTP/1."):
		client = seg.Flow.Dst
	default:
		s.stats.Undecided++
		return false
	}

	if !known {
		i = s.insert(key)
	} else {
		s.touch(i)
	}
	e := &s.ents[i]
	if e.client != client || seg.Flags.Has(reassembly.SYN) {
		e.client, e.fin = client, 0
	}
	toServer := seg.Flow.Src == client
	switch {
	case seg.Flags.Has(reassembly.RST):
		s.remove(i)
	case e.fin == finBoth && len(seg.Payload) == 0 && !seg.Flags.Has(reassembly.FIN):
		// The last ACK of a closed connection: nothing follows it.
		s.remove(i)
	case seg.Flags.Has(reassembly.FIN):
		if toServer {
			e.fin |= finClient
		} else {
			e.fin |= finServer
		}
		if e.fin == finBoth {
			// Closed: first in line to be forgotten should its last ACK
			// never come.
			s.unlink(i)
			s.pushFront(i)
		}
	}
	if toServer {
		seg.Dir = reassembly.ToServer
		s.stats.ToServer++
	} else {
		seg.Dir = reassembly.ToClient
		s.stats.ToClient++
	}
	return true
}

func (s *Sides) watched(p uint16) bool { return s.ports[p>>6]&(1<<(p&63)) != 0 }

// canonical orders the endpoints of a flow so both directions give one key.
func canonical(f reassembly.Flow) reassembly.Flow {
	if c := f.Src.Addr().Compare(f.Dst.Addr()); c > 0 || c == 0 && f.Src.Port() > f.Dst.Port() {
		return f.Reverse()
	}
	return f
}

// looksLikeRequest reports whether p starts like an HTTP request line: a
// method token in capitals (RFC 9110 allows any token; registered methods
// are upper case, some with '-' or '_') followed by a space.
func looksLikeRequest(p []byte) bool {
	for i, c := range p {
		switch {
		case c >= 'A' && c <= 'Z':
		case (c == '-' || c == '_') && i > 0:
		case c == ' ':
			return i >= 3
		default:
			return false
		}
		if i == 24 { // longer than any registered method
			return false
		}
	}
	return false
}

func hasPrefix(p []byte, s string) bool { return len(p) >= len(s) && string(p[:len(s)]) == s }

// insert adds an entry for key as the most recently active, forgetting the
// least recently active one when the table is full.
func (s *Sides) insert(key reassembly.Flow) int32 {
	if len(s.index) >= s.max && s.head >= 0 {
		if s.ents[s.head].fin != finBoth {
			s.stats.Forgotten++
		}
		s.remove(s.head)
	}
	var i int32
	if s.free >= 0 {
		i = s.free
		s.free = s.ents[i].next
	} else {
		s.ents = append(s.ents, entry{})
		i = int32(len(s.ents) - 1)
	}
	s.ents[i] = entry{key: key, prev: -1, next: -1}
	s.index[key] = i
	s.pushBack(i)
	return i
}

func (s *Sides) remove(i int32) {
	s.unlink(i)
	delete(s.index, s.ents[i].key)
	s.ents[i] = entry{next: s.free}
	s.free = i
}

func (s *Sides) touch(i int32) {
	if s.tail != i {
		s.unlink(i)
		s.pushBack(i)
	}
}

func (s *Sides) pushBack(i int32) {
	e := &s.ents[i]
	e.prev, e.next = s.tail, -1
	if s.tail >= 0 {
		s.ents[s.tail].next = i
	} else {
		s.head = i
	}
	s.tail = i
}

func (s *Sides) pushFront(i int32) {
	e := &s.ents[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.ents[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}

func (s *Sides) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}
