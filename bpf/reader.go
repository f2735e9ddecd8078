package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/shadowtee/shadowtee/reassembly"
)

// Sink receives what the Reader decodes. Both methods are called from the
// Reader's goroutine only, and must not block: a slow Sink stalls the reader,
// and the kernel then drops (and counts) what no longer fits in the ring.
type Sink interface {
	// Segment receives one copied segment. seg and its Payload are only
	// valid during the call.
	Segment(seg *reassembly.Segment, ifindex int)
	// Flush is called when the ring buffer has been emptied, so that the
	// Sink can hand a batch downstream.
	Flush()
}

// DefaultPoll is how often the reader looks at the ring buffer when the
// kernel has not woken it. It bounds the mirroring delay at low rates.
const DefaultPoll = 2 * time.Millisecond

// Reader reads the ring buffer. One goroutine calls Run.
type Reader struct {
	rd   *ringbuf.Reader
	poll time.Duration

	records   atomic.Uint64
	malformed atomic.Uint64
}

// NewReader opens the ring buffer for reading. poll is the longest the
// reader waits before looking again without a wake-up (default DefaultPoll).
func (t *Tee) NewReader(poll time.Duration) (*Reader, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	rd, err := ringbuf.NewReader(t.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &Reader{rd: rd, poll: poll}, nil
}

// Run decodes records into sink until Close is called. It returns nil after
// Close, having flushed the sink one last time.
func (r *Reader) Run(sink Sink) error {
	var (
		rec    ringbuf.Record
		seg    reassembly.Segment
		offset = monoToWallOffset()
	)
	r.rd.SetDeadline(time.Now().Add(r.poll))
	for {
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
			r.records.Add(1)
			ifindex, derr := decodeEvent(rec.RawSample, &seg, offset)
			if derr != nil {
				r.malformed.Add(1)
				continue
			}
			sink.Segment(&seg, ifindex)
			if rec.Remaining == 0 {
				sink.Flush()
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			sink.Flush()
			offset = monoToWallOffset()
			r.rd.SetDeadline(time.Now().Add(r.poll))
		case errors.Is(err, ringbuf.ErrClosed):
			sink.Flush()
			return nil
		default:
			sink.Flush()
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// Records returns how many records were read, and how many of them could not
// be decoded.
func (r *Reader) Records() (read, malformed uint64) {
	return r.records.Load(), r.malformed.Load()
}

// Close stops Run. Records still in the ring are not read.
func (r *Reader) Close() error { return r.rd.Close() }

// monoToWallOffset returns wall-clock minus monotonic nanoseconds: the BPF
// program stamps records with bpf_ktime_get_ns (CLOCK_MONOTONIC).
func monoToWallOffset() int64 {
	var ts unix.Timespec
	before := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return before.UnixNano() - ts.Nano()
}

// Pending returns the bytes waiting in the ring buffer.
func (r *Reader) Pending() int { return r.rd.AvailableBytes() }
