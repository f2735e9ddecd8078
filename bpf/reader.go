package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"
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

// DefaultPoll is how often the reader looks at the ring buffer. It bounds
// the delay a segment waits in the ring; the work per look is a few system
// calls at most, whatever the rate.
const DefaultPoll = 4 * time.Millisecond

// Reader reads the ring buffer. One goroutine calls Run.
type Reader struct {
	rd      *ringbuf.Reader
	poll    time.Duration
	closing chan struct{} // closed by Close, to wake Run
	once    sync.Once

	mu     sync.Mutex // held by Run while it reads, by Close while it closes
	closed bool

	records   atomic.Uint64
	malformed atomic.Uint64
}

// NewReader opens the ring buffer for reading. poll is how often the reader
// looks at it (default DefaultPoll).
func (t *Tee) NewReader(poll time.Duration) (*Reader, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	rd, err := ringbuf.NewReader(t.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &Reader{rd: rd, poll: poll, closing: make(chan struct{})}, nil
}

// Run decodes records into sink until Close is called. It returns nil after
// Close, having flushed the sink one last time.
//
// Run never blocks in the kernel. It looks at the ring on a timer, reads
// what is there without waiting, hands it to the sink, and sleeps in the Go
// runtime until the next look. Waiting in epoll_wait instead would hold an
// OS thread in a system call, and each wake-up would then cost the Go
// scheduler a hand-off between threads: measured, that was the largest share
// of the agent's CPU. The kernel program still wakes epoll waiters past its
// threshold; there are none, so that costs nothing.
func (r *Reader) Run(sink Sink) error {
	var (
		rec        ringbuf.Record
		seg        reassembly.Segment
		offset     = monoToWallOffset()
		offsetTime = time.Now()
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-r.closing:
			sink.Flush()
			return nil
		case <-timer.C:
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			sink.Flush()
			return nil
		}
		var err error
		if r.rd.AvailableBytes() > 0 {
			err = r.drain(&rec, &seg, offset, sink)
		}
		r.mu.Unlock()
		sink.Flush()
		if err != nil {
			return err
		}
		// The wall clock may be stepped or slewed: follow it.
		if now := time.Now(); now.Sub(offsetTime) > time.Second {
			offset, offsetTime = monoToWallOffset(), now
		}
		timer.Reset(r.poll)
	}
}

// drain reads every record in the ring now, without waiting for more.
func (r *Reader) drain(rec *ringbuf.Record, seg *reassembly.Segment, offset int64, sink Sink) error {
	// A deadline in the past makes the read return instead of waiting once
	// the ring is empty.
	r.rd.SetDeadline(time.Now())
	for {
		err := r.rd.ReadInto(rec)
		switch {
		case err == nil:
			r.records.Add(1)
			ifindex, derr := decodeEvent(rec.RawSample, seg, offset)
			if derr != nil {
				r.malformed.Add(1)
				continue
			}
			sink.Segment(seg, ifindex)
			if rec.Remaining == 0 {
				sink.Flush()
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// Records returns how many records were read, and how many of them could not
// be decoded.
func (r *Reader) Records() (read, malformed uint64) {
	return r.records.Load(), r.malformed.Load()
}

// Close stops Run and closes the ring buffer. Records still in the ring
// are not read.
func (r *Reader) Close() error {
	var err error
	r.once.Do(func() {
		close(r.closing)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.closed = true
		err = r.rd.Close()
	})
	return err
}

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
