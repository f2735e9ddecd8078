package httpmsg

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Errors a BodyStream's reader may get instead of io.EOF.
var (
	// ErrStreamOverflow: the reader fell behind by more than the stream's
	// limit, and the stream was given up rather than let memory grow.
	ErrStreamOverflow = errors.New("body stream: reader too slow, over the limit")
	// ErrStreamCancelled: the reader gave the stream up (Cancel).
	ErrStreamCancelled = errors.New("body stream: cancelled")
)

// BodyStream carries the body of a request that is mirrored while its
// client is still sending it. One producer (the framer, on the capture path)
// writes and never blocks; one consumer (the sender) reads and may block.
//
// What the reader has not taken yet is held, up to a limit: a producer that
// would pass it aborts the stream instead (ErrStreamOverflow). The held bytes
// are charged to the stream only, so a slow shadow costs at most the limit
// per stream, and the framer bounds the streams.
type BodyStream struct {
	limit int
	ready chan struct{} // capacity 1: something happened since the last Take

	mu       sync.Mutex
	chunks   [][]byte
	held     int
	sent     int64 // bytes written in all
	trailers []Field
	done     bool  // End or Abort was called, or the reader cancelled
	err      error // nil after End, else why the stream stopped
}

// NewBodyStream returns an open stream that holds at most limit unread
// bytes.
func NewBodyStream(limit int) *BodyStream {
	return &BodyStream{limit: limit, ready: make(chan struct{}, 1)}
}

func (s *BodyStream) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Write appends a copy of b. It reports false when the stream takes nothing
// more: it was ended, aborted or cancelled, or b would put more than the
// limit in wait (the stream is then aborted with ErrStreamOverflow).
func (s *BodyStream) Write(b []byte) bool {
	if len(b) == 0 {
		return !s.Done()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	if s.held+len(b) > s.limit {
		s.stopLocked(ErrStreamOverflow)
		return false
	}
	s.chunks = append(s.chunks, append([]byte(nil), b...))
	s.held += len(b)
	s.sent += int64(len(b))
	s.signal()
	return true
}

// End ends the body, with trailers (copied) when the request has some.
func (s *BodyStream) End(trailers []Field) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	for _, f := range trailers {
		s.trailers = append(s.trailers, Field{Name: append([]byte(nil), f.Name...), Value: append([]byte(nil), f.Value...)})
	}
	s.done = true
	s.signal()
}

// Abort ends the stream without its end: the client reset the stream, the
// capture lost bytes, or the connection ended. The reader gets err.
func (s *BodyStream) Abort(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.stopLocked(err)
	}
}

// Cancel is the reader's: it gives the stream up, and the producer's next
// Write reports false.
func (s *BodyStream) Cancel() { s.Abort(ErrStreamCancelled) }

func (s *BodyStream) stopLocked(err error) {
	s.done, s.err = true, err
	clear(s.chunks)
	s.chunks, s.held = nil, 0
	s.signal()
}

// Done reports whether the stream takes no more bytes.
func (s *BodyStream) Done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Err returns why the stream stopped taking bytes: nil while it is open
// and after End, else the error its reader gets (ErrStreamOverflow,
// ErrStreamCancelled, or the producer's Abort). It tells a producer whose
// Write was refused whether the reader fell behind or went away.
func (s *BodyStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Held returns the bytes written and not taken yet: what the stream costs
// now. It only falls between two Writes, as the reader takes.
func (s *BodyStream) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Ready is signalled when Take may have something new: bytes, the end, or
// an abort. It suits a reader that waits on several things at once.
func (s *BodyStream) Ready() <-chan struct{} { return s.ready }

// Take returns the bytes written since the last Take (the caller owns
// them), and once the stream is over, io.EOF after End or the abort's
// error. It never blocks: (nil, nil) means nothing new yet.
func (s *BodyStream) Take() ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.chunks) > 0 {
		out := s.chunks
		s.chunks, s.held = nil, 0
		return out, nil
	}
	if !s.done {
		return nil, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	return nil, io.EOF
}

// Next waits for bytes or for the end of the stream, as Take reports them,
// until ctx is done.
func (s *BodyStream) Next(ctx context.Context) ([][]byte, error) {
	for {
		b, err := s.Take()
		if b != nil || err != nil {
			return b, err
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Trailers returns the trailer fields given to End.
func (s *BodyStream) Trailers() []Field {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trailers
}

// Written returns the bytes written in all.
func (s *BodyStream) Written() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}
