package reassembly

import (
	"sync/atomic"
	"time"
)

// Stream receives the ordered bytes of one flow. The methods are called from
// the goroutine that calls the Assembler, never concurrently.
type Stream interface {
	// Data delivers the next bytes of the flow, in sequence order, each byte
	// once. b is only valid during the call: keep a copy of what you need.
	// t is the capture time of the segment that completed these bytes.
	Data(b []byte, t time.Time)
	// Gap reports that bytes were lost before the next Data: the stream has a
	// hole that will never be filled.
	Gap()
	// End reports that the flow is over (FIN or RST delivered in order, idle
	// expiry, eviction, or Assembler.Close). No call follows it.
	End()
}

// NewStreamFunc creates the Stream for a flow seen for the first time. first
// is the segment that opens it (its Flow, Dir and Time name the stream; it
// is valid only during the call). midStream is true when the flow was
// joined without its SYN: the first bytes may start in the middle of a
// message. It must not return nil.
type NewStreamFunc func(first *Segment, midStream bool) Stream

// Stats counts what the assemblers did. One Stats may be shared by several
// Assemblers (one per worker); every field is updated atomically.
type Stats struct {
	Segments        atomic.Uint64 // segments given to Add
	Bytes           atomic.Uint64 // payload bytes given to Add
	Delivered       atomic.Uint64 // bytes delivered to Streams
	OutOfOrder      atomic.Uint64 // segments that arrived ahead of a hole and were buffered
	Duplicate       atomic.Uint64 // segments whose every byte had been seen already
	OverlapBytes    atomic.Uint64 // bytes dropped because they overlapped bytes already seen
	Gaps            atomic.Uint64 // holes given up on (Stream.Gap calls)
	GapBytes        atomic.Uint64 // bytes skipped over because of those holes
	StreamsOpened   atomic.Uint64 // streams created
	StreamsMid      atomic.Uint64 // of those, joined mid-stream (no SYN seen)
	StreamsClosed   atomic.Uint64 // ended by FIN or RST (or a new SYN reusing the ports)
	StreamsExpired  atomic.Uint64 // ended by idle expiry
	StreamsEvicted  atomic.Uint64 // ended early because MaxStreams was reached
	BufferFullDrops atomic.Uint64 // out-of-order segments that met a buffer cap: their flow gave up on its hole to take them
	ActiveStreams   atomic.Int64  // streams open now
	BufferedBytes   atomic.Int64  // out-of-order bytes held now
}

// Config tunes an Assembler. Zero values take the defaults below.
type Config struct {
	// NewStream is called for the first segment of every flow. Required.
	NewStream NewStreamFunc
	// MaxStreamBuffer caps the out-of-order bytes held for one flow.
	// A flow that would exceed it gives up on its hole at once (a Gap)
	// rather than drop what arrived. Default 1 MiB.
	MaxStreamBuffer int
	// MaxBuffer caps the out-of-order bytes held over all flows of this
	// Assembler; the flow whose segment would exceed it gives up on its
	// hole, as for MaxStreamBuffer. Default 64 MiB.
	MaxBuffer int
	// MaxStreams caps the number of flows tracked at once. When a new flow
	// would exceed it, the least recently active flow is ended. Default 262144.
	MaxStreams int
	// IdleTimeout ends a flow with no segment for this long. Default 120s.
	IdleTimeout time.Duration
	// GapTimeout is how long a hole may wait for a retransmission before it
	// is given up on, counted from the arrival of the first byte (or FIN)
	// beyond it. Default 1s.
	GapTimeout time.Duration
	// Stats receives the counters. Optional.
	Stats *Stats
}

// Default values for Config.
const (
	DefaultMaxStreamBuffer = 1 << 20
	DefaultMaxBuffer       = 64 << 20
	DefaultMaxStreams      = 1 << 18
	DefaultIdleTimeout     = 120 * time.Second
	DefaultGapTimeout      = time.Second
)
