package h2frame

import (
	"bytes"
	"io"
	"sync"

	"golang.org/x/net/http2"
)

const (
	frameHeaderLen  = 9
	minMaxFrameSize = 1 << 14   // SETTINGS_MAX_FRAME_SIZE's initial value
	maxFrameLimit   = 1<<24 - 1 // the largest length a frame header can hold
	alignChain      = 3         // plausible frame headers in a row that prove alignment
)

// Preface is the client connection preface (RFC 9113 3.4).
const Preface = http2.ClientPreface

// IsPreface reports whether b begins with the whole client connection
// preface.
func IsPreface(b []byte) bool { return bytes.HasPrefix(b, []byte(Preface)) }

// CouldBePreface reports whether b is consistent with a connection that
// starts with the preface: b begins with it, or is a prefix of it, so that a
// detector should wait for more bytes before deciding.
func CouldBePreface(b []byte) bool {
	n := min(len(b), len(Preface))
	return string(b[:n]) == Preface[:n]
}

// FrameAlignment looks in b, bytes from the middle of a client's side of a
// connection, for the start of a frame: the first offset from which three
// plausible frame headers chain (or two that run to the end of b). It
// reports false when b holds no such run, so that a detector can tell
// HTTP/2 from other bytes on a connection joined mid-stream.
func FrameAlignment(b []byte) (offset int, ok bool) {
	off, st := findAlignment(b, false, minMaxFrameSize, true)
	return off, st == alignFound
}

type frameHeader struct {
	length   uint32
	typ      http2.FrameType
	flags    http2.Flags
	stream   uint32
	reserved bool
}

func parseHeader(b []byte) frameHeader {
	id := uint32(b[5])<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])
	return frameHeader{
		length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:      http2.FrameType(b[3]),
		flags:    http2.Flags(b[4]),
		stream:   id &^ (1 << 31),
		reserved: id>>31 != 0,
	}
}

// valid checks what the peer must get right whatever the state: a frame
// that breaks these is a connection error for a real endpoint.
func (h *frameHeader) valid() bool {
	switch h.typ {
	case http2.FrameData, http2.FrameHeaders, http2.FrameContinuation, http2.FramePushPromise:
		return h.stream != 0
	case http2.FramePriority:
		return h.stream != 0 && h.length == 5
	case http2.FrameRSTStream:
		return h.stream != 0 && h.length == 4
	case http2.FrameSettings:
		return h.stream == 0 && h.length%6 == 0 && (!h.flags.Has(http2.FlagSettingsAck) || h.length == 0)
	case http2.FramePing:
		return h.stream == 0 && h.length == 8
	case http2.FrameGoAway:
		return h.stream == 0 && h.length >= 8
	case http2.FrameWindowUpdate:
		return h.length == 4
	}
	return true // unknown types are ignored (RFC 9113 4.1)
}

// plausible is stricter: what real senders do, used to check frames in
// bytes whose position is not certain. Undefined flags are unset, the
// reserved bit is clear, and the frame type is known. search is stricter
// still, for finding alignment: it also refuses frames that are legal but
// that real senders do not send, and that runs of zeros look like (an empty
// DATA frame that does not end its stream, an empty header block).
func (h *frameHeader) plausible(fromServer bool, maxLen uint32, search bool) bool {
	if h.reserved || h.length > maxLen || !h.valid() {
		return false
	}
	f := h.flags
	switch h.typ {
	case http2.FrameData:
		return f&^(http2.FlagDataEndStream|http2.FlagDataPadded) == 0 &&
			(!search || h.length > 0 || f.Has(http2.FlagDataEndStream))
	case http2.FrameHeaders:
		return f&^(http2.FlagHeadersEndStream|http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded|http2.FlagHeadersPriority) == 0 &&
			(fromServer || h.stream%2 == 1) && (!search || h.length > 0)
	case http2.FramePriority, http2.FrameRSTStream, http2.FrameGoAway, http2.FrameWindowUpdate:
		return f == 0
	case http2.FrameSettings:
		return f&^http2.FlagSettingsAck == 0
	case http2.FramePing:
		return f&^http2.FlagPingAck == 0
	case http2.FramePushPromise:
		return fromServer && h.length >= 4 && f&^(http2.FlagPushPromiseEndHeaders|http2.FlagPushPromisePadded) == 0
	case http2.FrameContinuation:
		return f&^http2.FlagContinuationEndHeaders == 0 && (!search || h.length > 0)
	}
	return false
}

type alignState uint8

const (
	alignNone  alignState = iota // no frame starts before offset: drop the bytes before it
	alignWait                    // a frame may start at offset: wait for more bytes
	alignFound                   // a frame starts at offset
)

// findAlignment finds the first offset of b from which frame headers chain
// plausibly. full says that b cannot grow: a run of two headers that
// reaches its end is then taken.
//
// A full window undecided at its start gives that start up, and waits from
// the next undecided offset, so that a search always moves on.
func findAlignment(b []byte, fromServer bool, maxLen uint32, full bool) (int, alignState) {
	wait := -1
	for i := 0; i+frameHeaderLen <= len(b); i++ {
		n, ok := chain(b[i:], fromServer, maxLen)
		switch {
		case !ok:
			continue
		case n >= alignChain || (full && n >= 2):
			return i, alignFound
		case !full:
			return i, alignWait
		case wait < 0 && i > 0:
			wait = i
		}
	}
	if wait > 0 {
		return wait, alignWait
	}
	return max(0, len(b)-frameHeaderLen+1), alignNone
}

// chain counts the plausible headers that follow one another from the start
// of b, up to alignChain; ok is false when one is implausible.
func chain(b []byte, fromServer bool, maxLen uint32) (n int, ok bool) {
	for j := 0; j+frameHeaderLen <= len(b) && n < alignChain; n++ {
		h := parseHeader(b[j:])
		if !h.plausible(fromServer, maxLen, true) {
			return n, false
		}
		j += frameHeaderLen + int(h.length)
	}
	return n, true
}

// headersFragment returns the header block fragment of a HEADERS frame's
// payload, without padding and priority. It is parsed here rather than by
// the Framer, which allocates a frame for each HEADERS (it reuses only
// DATA frames); the fuzz target checks that both read the same.
func headersFragment(h *frameHeader, p []byte) ([]byte, bool) {
	pad := 0
	if h.flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if h.flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// frameReader feeds one whole frame to a Framer.
type frameReader struct{ b []byte }

func (r *frameReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// framer is a pooled x/net Framer. Conns share them: a Conn holds no
// Framer (nor the read buffer a Framer keeps) between frames, since an
// agent holds thousands of mostly idle connections. A Framer is only ever
// given whole frames whose header was checked here.
type framer struct {
	fr *http2.Framer
	r  frameReader
}

var framers = sync.Pool{New: func() any {
	f := new(framer)
	f.fr = http2.NewFramer(nil, &f.r)
	f.fr.SetReuseFrames()
	f.fr.SetMaxReadFrameSize(maxFrameLimit)
	// The order of frames is checked here, where a header block of a
	// stream that is not tracked is skipped.
	f.fr.AllowIllegalReads = true
	return f
}}

// readFrame parses the whole frame raw. The frame is valid until the
// framer goes back to the pool (putFramer).
func readFrame(raw []byte) (*framer, http2.Frame, error) {
	f := framers.Get().(*framer)
	f.r.b = raw
	fr, err := f.fr.ReadFrame()
	f.r.b = nil
	return f, fr, err
}

func putFramer(f *framer) { framers.Put(f) }
