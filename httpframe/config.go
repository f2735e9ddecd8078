package httpframe

import "sync/atomic"

// Default limits used when the Config fields are zero.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxBodyBytes   = 8 << 20
)

// Config tunes the Parsers that share it. It is read, never written, by the
// Parsers, so one Config may serve every stream of an agent.
type Config struct {
	// MaxHeaderBytes caps the header block: request line, header fields and
	// the blank line. It also caps a chunked body's trailer section.
	// Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxBodyBytes caps the decoded body length. A chunked body is also
	// refused when its wire size passes twice this plus 4 KiB, so that tiny
	// chunks cannot hold many times the limit. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Keep is called once the head of a request that can be mirrored is
	// parsed, before its body is buffered. Returning false skips the body
	// without buffering it and nothing is emitted; the consumer counts its
	// own refusals. tag is the consumer's, handed back with the request to
	// Emit. The Request it receives holds only the head (Raw is Head()) and
	// is valid only during the call. Nil keeps every request.
	Keep func(r *Request) (tag any, keep bool)
	// Emit receives each complete kept request with the tag Keep gave it.
	// Ownership passes to the callee, which calls Release when done with
	// it. Nil drops them.
	Emit func(r *Request, tag any)
	// Drop, when not nil, is told of every kept request that will not be
	// emitted after all (its body was cut, too large, or out of memory),
	// with its tag, so that a consumer holding something for the tag can
	// let it go. Every kept request gets exactly one Emit or one Drop.
	Drop func(tag any)
	// Stats receives the counters; it may be shared by many Parsers. Nil
	// counts nowhere.
	Stats *Stats
	// Budget caps the bytes that all Parsers sharing it hold for partial
	// requests. Nil means no cap beyond the per-request limits.
	Budget *Budget
}

func (c *Config) maxHeader() int {
	if c.MaxHeaderBytes > 0 {
		return c.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (c *Config) maxBody() int64 {
	if c.MaxBodyBytes > 0 {
		return c.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// maxChunkedWire bounds the wire size of a chunked body (sizes, extensions,
// data and trailers), which can exceed the decoded size by far.
func (c *Config) maxChunkedWire() int64 { return 2*c.maxBody() + 4096 }

// Reason says why a request, or the bytes of one, were not emitted.
type Reason uint8

// Reasons for Stats.Skipped.
const (
	// ReasonConnect counts CONNECT requests; the rest of the stream is a
	// tunnel and is ignored.
	ReasonConnect Reason = iota
	// ReasonUpgrade counts requests asking for a protocol upgrade
	// (Upgrade plus Connection: upgrade, HTTP/1.1).
	ReasonUpgrade
	// ReasonHTTP2 counts streams that start HTTP/2 with its connection
	// preface; the rest of such a stream is ignored.
	ReasonHTTP2
	// ReasonBodyTooLarge counts requests whose body passes MaxBodyBytes.
	ReasonBodyTooLarge
	// ReasonHeaderTooLarge counts header blocks longer than MaxHeaderBytes.
	ReasonHeaderTooLarge
	// ReasonMalformed counts input that a server would refuse: a broken
	// request line, header field or chunked body, contradictory framing, or
	// a request that is framed soundly but invalid (no Host in HTTP/1.1,
	// several Host fields, an unusable target).
	ReasonMalformed
	// ReasonIncomplete counts requests cut by a gap in the stream or by its
	// end.
	ReasonIncomplete
	// ReasonMemory counts requests dropped because the Budget was exhausted.
	ReasonMemory
	// NumReasons is the number of reasons.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonConnect:        "connect",
	ReasonUpgrade:        "upgrade",
	ReasonHTTP2:          "http2",
	ReasonBodyTooLarge:   "body_too_large",
	ReasonHeaderTooLarge: "header_too_large",
	ReasonMalformed:      "malformed",
	ReasonIncomplete:     "incomplete",
	ReasonMemory:         "memory",
}

// String returns a short snake_case label, fit for a metric label value.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Stats counts what the Parsers did. One Stats may be shared by the Parsers
// of many streams on several goroutines; every field is updated atomically.
type Stats struct {
	// Requests counts request heads parsed with sound framing.
	Requests atomic.Uint64
	// Emitted counts requests handed to Config.Emit.
	Emitted atomic.Uint64
	// EmittedBytes counts the Raw bytes of emitted requests.
	EmittedBytes atomic.Uint64
	// Skipped counts requests, or streams for ReasonHTTP2, by the reason
	// the framer did not emit them (the consumer's refusals in Keep are
	// the consumer's to count).
	Skipped [NumReasons]atomic.Uint64
	// Resyncs counts plausible request lines found after a loss of framing
	// (a mid-stream start, a gap, malformed input, a protocol upgrade).
	Resyncs atomic.Uint64
	// GarbageBytes counts bytes discarded because they could not be framed:
	// bytes skipped while looking for a request line, and heads rejected as
	// malformed or too large.
	GarbageBytes atomic.Uint64
	// OpaqueBytes counts bytes ignored after CONNECT or an HTTP/2 preface.
	OpaqueBytes atomic.Uint64
}

// discard receives the counts of Parsers configured without Stats.
var discard Stats

// Budget caps the bytes held for partial requests by all the Parsers that
// share it. It is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a Budget that lets at most limit bytes be held at once.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Limit returns the cap given to NewBudget.
func (b *Budget) Limit() int64 { return b.limit }

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Reserve takes n bytes from the budget, or reports false and takes
// nothing. A nil Budget always succeeds. The HTTP/2 framer shares the
// Budget through this method and Release.
func (b *Budget) Reserve(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Release gives back n bytes taken by Reserve.
func (b *Budget) Release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}
