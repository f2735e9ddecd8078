package h2frame

import (
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// Default limits used when the Config fields are zero.
const (
	DefaultMaxHeaderListSize = 64 << 10
	DefaultMaxStreams        = 256
	DefaultHoldBody          = 64 << 10
	DefaultStreamAfter       = 100 * time.Millisecond
	DefaultStreamBuffer      = 1 << 20
	DefaultMaxBodyBytes      = 8 << 20
	DefaultAnswerBodyCap     = 64 << 10
	DefaultMaxTableSize      = 64 << 10
	DefaultMaxFrameSize      = 1 << 20
)

// Config tunes the Conns that share it. It is read, never written, by the
// Conns, so one Config may serve every connection of an agent.
type Config struct {
	// MaxHeaderListSize caps the decoded header list of one header block,
	// counted as HTTP/2 does (name, value and 32 bytes per field). A
	// request past it is skipped (ReasonHeaderTooLarge); the block is still
	// decoded, so the connection's compression state is kept, unless its
	// encoded form passes twice the cap. Default DefaultMaxHeaderListSize.
	MaxHeaderListSize int
	// MaxStreams caps the streams tracked at once per connection: requests
	// being held or streamed, and kept requests waiting for their answer.
	// A new kept request past it is skipped (ReasonTooManyStreams), except
	// that the oldest request waiting only for its answer gives up its
	// answer first. Default DefaultMaxStreams.
	MaxStreams int
	// HoldBody is how many body bytes are held before a request whose body
	// is still arriving is emitted as streaming. Negative: never stream by
	// size; bodies are held whole up to MaxBodyBytes. Default
	// DefaultHoldBody.
	HoldBody int
	// StreamAfter is how much capture time may pass after a request's
	// header block before a request whose body has not ended is emitted as
	// streaming. Negative: never stream by time. Default
	// DefaultStreamAfter.
	StreamAfter time.Duration
	// StreamBuffer is the limit of each httpmsg.BodyStream: the bytes a
	// slow reader may leave unread. Default DefaultStreamBuffer.
	StreamBuffer int
	// MaxBodyBytes caps a body held whole. A held body that would pass it
	// is skipped (ReasonBodyTooLarge) when it cannot stream. Default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxTableSize caps the HPACK dynamic table held per direction. An
	// encoder may use a larger one (its peer allows it, we only observe);
	// the entries past the cap are then unknown, never guessed. Default
	// DefaultMaxTableSize.
	MaxTableSize int
	// MaxFrameSize caps the length of a frame. A longer frame header means
	// that the peer broke the protocol or that framing was lost: a
	// direction framed from its start is given up (ReasonFrameTooLarge).
	// Default DefaultMaxFrameSize; at most 16 MiB - 1.
	MaxFrameSize int

	// Budget, when not nil, caps the bytes held for requests still
	// arriving over every Conn that shares it (and the HTTP/1 framer's, when
	// it is the agent's httpframe.Budget): each held request's buffer, and
	// each streaming body's bytes not taken yet by its reader. A held
	// request the Budget cannot grow for is skipped (ReasonMemory); a
	// streaming body is aborted with ErrMemory. Every byte taken is given
	// back when the request is emitted whole, dropped or ended, so that an
	// idle agent holds nothing of it.
	Budget Budget

	// Keep is called once a request's header block is decoded, before any
	// body is held. It returns the consumer's tag for the request, opaque
	// here, and whether to mirror it. A request not kept costs nothing
	// more: its DATA is skipped. The Request is valid only during the call.
	// Nil keeps every request, with a nil tag.
	Keep func(r httpmsg.Request) (tag any, keep bool)
	// Emit hands over a kept request with its tag; ownership passes (the
	// receiver calls Release). It is called when the request is whole, or
	// earlier as a streaming request (Request.Stream() != nil) whose body
	// the Conn goes on writing, ends with the trailers, or aborts with
	// ErrReset, ErrRefused, ErrGap, ErrEnded, ErrProtocol or ErrMemory (and
	// a reader too slow for StreamBuffer gets httpmsg.ErrStreamOverflow).
	// Nil drops the requests.
	Emit func(r httpmsg.Request, tag any)
	// Drop, when not nil, is told of every kept request that will not be
	// emitted after all, with its tag and the reason, so that a consumer
	// that holds something for a tag can let it go. Every kept request
	// gets exactly one Emit or one Drop.
	Drop func(tag any, why Reason)
	// Answer, when not nil, receives the server's answer to each emitted
	// request, with the request's tag: exactly one call per emitted
	// request, after its Emit. The *httpmsg.Answer is the receiver's. It is
	// nil when the answer could not be captured (the server reset the
	// stream, the capture lost bytes of the server's side, the connection
	// ended, or MaxStreams made room). Nil Answer: the server's side is not
	// framed at all, and ServerData ignores its bytes.
	Answer func(tag any, a *httpmsg.Answer)
	// AnswerBodyCap is how many bytes of an answer's body are kept (the
	// rest is counted in BodyLen, and Truncated is set). Negative keeps
	// none. Default DefaultAnswerBodyCap.
	AnswerBodyCap int

	// Stats receives the counters; it may be shared by many Conns. Nil
	// counts nowhere.
	Stats *Stats
}

// Budget is memory shared by framers on many goroutines; the agent's
// *httpframe.Budget is one. Reserve takes n bytes, or reports false and
// takes nothing; Release gives back n bytes that Reserve took.
type Budget interface {
	Reserve(n int64) bool
	Release(n int64)
}

// limits is a Config with the defaults applied, computed once per Conn.
type limits struct {
	maxList     int
	maxStreams  int
	hold        int64 // -1: never by size
	after       int64 // nanoseconds; -1: never by time
	streamBuf   int
	maxBody     int64
	maxTable    uint32
	maxFrame    uint32
	answerCap   int
	answerOn    bool
	maxBlock    int // encoded header block bytes held
	searchLimit int // bytes held while looking for frame alignment
}

func (c *Config) limits() limits {
	l := limits{
		maxList:    pick(c.MaxHeaderListSize, DefaultMaxHeaderListSize),
		maxStreams: pick(c.MaxStreams, DefaultMaxStreams),
		streamBuf:  pick(c.StreamBuffer, DefaultStreamBuffer),
		maxBody:    int64(pick(int(c.MaxBodyBytes), DefaultMaxBodyBytes)),
		maxTable:   uint32(pick(c.MaxTableSize, DefaultMaxTableSize)),
		maxFrame:   uint32(min(pick(c.MaxFrameSize, DefaultMaxFrameSize), maxFrameLimit)),
		answerCap:  c.AnswerBodyCap,
		answerOn:   c.Answer != nil,
	}
	switch {
	case c.HoldBody < 0:
		l.hold = -1
	case c.HoldBody == 0:
		l.hold = DefaultHoldBody
	default:
		l.hold = int64(c.HoldBody)
	}
	if l.hold > l.maxBody {
		l.hold = l.maxBody
	}
	switch {
	case c.StreamAfter < 0:
		l.after = -1
	case c.StreamAfter == 0:
		l.after = int64(DefaultStreamAfter)
	default:
		l.after = int64(c.StreamAfter)
	}
	switch {
	case l.answerCap == 0:
		l.answerCap = DefaultAnswerBodyCap
	case l.answerCap < 0:
		l.answerCap = 0
	}
	l.maxBlock = 2 * l.maxList
	l.searchLimit = 4 * (frameHeaderLen + minMaxFrameSize)
	return l
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Reason says why a request was not emitted, why a streaming request was
// aborted, or why a direction of a connection was given up.
type Reason uint8

// Reasons, for Stats.Skipped, Stats.Aborted and Stats.GaveUp.
const (
	// ReasonStateUnknown: the header block refers to HPACK state that was
	// never seen (a connection joined mid-stream, or after a gap). Nothing
	// is guessed: the request is not mirrored.
	ReasonStateUnknown Reason = iota
	// ReasonHeaderTooLarge: the decoded header list passes
	// MaxHeaderListSize.
	ReasonHeaderTooLarge
	// ReasonMalformed: a request that a server must refuse (RFC 9113
	// 8.1.1): missing or repeated pseudo-header fields, upper-case or
	// connection-specific field names, forbidden characters, trailers
	// without the end of the stream.
	ReasonMalformed
	// ReasonConnect: CONNECT and extended CONNECT (:protocol); the stream
	// is a tunnel.
	ReasonConnect
	// ReasonTooManyStreams: MaxStreams streams were tracked already.
	ReasonTooManyStreams
	// ReasonBodyTooLarge: a body held whole would pass MaxBodyBytes.
	ReasonBodyTooLarge
	// ReasonReset: the client reset the stream.
	ReasonReset
	// ReasonRefused: the server reset the stream, or its GOAWAY said that
	// the stream was never processed.
	ReasonRefused
	// ReasonGap: the capture lost bytes of the client's side while the
	// request was still arriving.
	ReasonGap
	// ReasonEnded: the connection ended while the request was still
	// arriving.
	ReasonEnded
	// ReasonOverflow: the reader of a streaming body fell more than
	// StreamBuffer behind.
	ReasonOverflow
	// ReasonProtocol: the peer broke the protocol (a frame that a server
	// must refuse, a header block the decoder cannot read); a direction
	// framed from its start is given up.
	ReasonProtocol
	// ReasonFrameTooLarge: a frame longer than MaxFrameSize.
	ReasonFrameTooLarge
	// ReasonNoPreface: the client's bytes did not start with the
	// connection preface.
	ReasonNoPreface
	// ReasonMemory: Config.Budget could not spare the bytes to hold the
	// request or its streaming body. Its label is the HTTP/1 framer's,
	// "memory", since both framers draw on one budget.
	ReasonMemory
	// NumReasons is the number of reasons.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonStateUnknown:   "h2_state_unknown",
	ReasonHeaderTooLarge: "h2_header_too_large",
	ReasonMalformed:      "h2_malformed",
	ReasonConnect:        "h2_connect",
	ReasonTooManyStreams: "h2_too_many_streams",
	ReasonBodyTooLarge:   "h2_body_too_large",
	ReasonReset:          "h2_reset",
	ReasonRefused:        "h2_refused",
	ReasonGap:            "h2_gap",
	ReasonEnded:          "h2_ended",
	ReasonOverflow:       "h2_overflow",
	ReasonProtocol:       "h2_protocol_error",
	ReasonFrameTooLarge:  "h2_frame_too_large",
	ReasonNoPreface:      "h2_no_preface",
	ReasonMemory:         "memory",
}

// String returns a short snake_case label, fit for a metric label value.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "h2_unknown_reason"
}

// Stats counts what the Conns did. One Stats may be shared by the Conns of
// many connections on several goroutines; every field is updated
// atomically.
type Stats struct {
	// Conns counts Conns made; MidStream those joined mid-stream;
	// Upgrades those that began with an HTTP/1.1 upgrade.
	Conns, MidStream, Upgrades atomic.Uint64
	// Frames counts frames read, both directions.
	Frames atomic.Uint64
	// Requests counts request header blocks decoded.
	Requests atomic.Uint64
	// Emitted counts requests handed to Emit; EmittedStreaming those of
	// them emitted while their body was still arriving.
	Emitted, EmittedStreaming atomic.Uint64
	// BodyBytes counts request body bytes handed over, whole or streamed.
	BodyBytes atomic.Uint64
	// Skipped counts requests not emitted, by reason (the consumer's
	// refusals in Keep are the consumer's to count).
	Skipped [NumReasons]atomic.Uint64
	// Aborted counts streaming requests whose body was aborted, by reason.
	Aborted [NumReasons]atomic.Uint64
	// GaveUp counts directions of connections given up, by reason.
	GaveUp [NumReasons]atomic.Uint64
	// Answers counts answers handed to Answer; AnswersLost the nil ones.
	Answers, AnswersLost atomic.Uint64
	// Resyncs counts frame alignments found by search (mid-stream joins,
	// gaps); GarbageBytes the bytes skipped while searching.
	Resyncs, GarbageBytes atomic.Uint64
	// StatesLost counts HPACK states lost: a gap, a mid-stream join, a
	// header block that could not be read or held.
	StatesLost atomic.Uint64
	// UnknownFields counts header fields that referred to HPACK entries
	// never seen.
	UnknownFields atomic.Uint64
	// SkippedDataBytes counts DATA payload bytes of streams not tracked
	// (not kept, skipped, or begun before the capture), passed over
	// without being held.
	SkippedDataBytes atomic.Uint64
	// Resets, GoAways and Pushes count RST_STREAM, GOAWAY and PUSH_PROMISE
	// frames seen.
	Resets, GoAways, Pushes atomic.Uint64
}

// discard receives the counts of Conns configured without Stats.
var discard Stats
