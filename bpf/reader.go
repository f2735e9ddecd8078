package bpf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shadowtee/shadowtee/reassembly"
)

// Sink receives what the Reader decodes. Both methods are called from the
// Reader's goroutine only, and must not block: a slow Sink stalls the reader,
// and the kernel then drops (and counts) what no longer fits in the ring.
type Sink interface {
	// Segment receives one copied segment. seg and its Payload are valid
	// only during the call: Payload is the record in the kernel's ring
	// buffer itself (memory shared with the kernel, read-only), and the
	// reader gives that space back to the kernel as soon as Segment
	// returns. A Sink that keeps payload bytes copies them.
	Segment(seg *reassembly.Segment, ifindex int)
	// Flush is called when the reader has read what the ring held, so that
	// the Sink can hand a batch downstream.
	Flush()
}

// Sleeper is a Sink that is told when the reader stops polling: Sleep is
// called from the reader's goroutine just before it blocks until the
// kernel wakes it, after the Flush of the last records it read (a reader
// that cannot block, and only polls, calls it once when its looks find
// the ring empty). Until the next Flush, nothing will come from the reader.
type Sleeper interface {
	Sleep()
}

// DefaultPoll is how often the reader looks at the ring buffer while
// traffic flows. It bounds how long a segment waits in the ring then; when
// the ring is found empty the reader blocks until the kernel wakes it.
const DefaultPoll = 4 * time.Millisecond

// idlePolls is how many looks in a row must find the ring empty before the
// reader stops polling and blocks: two, so that one gap in a steady flow
// does not cost a sleep and a wake-up. Right after a wake-up one is enough:
// under sparse traffic each request then costs a wake-up and one look, and
// a flow that goes on keeps the reader polling from its second look.
const idlePolls = 2

// drainWait bounds how long Stop waits for a record that a program is still
// writing (one that began before the attachments were closed).
const drainWait = 100 * time.Millisecond

// Reader reads the ring buffer. One goroutine calls Run.
//
// What is copied where: the kernel program copies each payload from the
// packet into the ring buffer, the one copy that cannot be avoided. The
// reader copies nothing: it decodes each record where it lies, in the ring
// buffer's pages mapped into this process, hands the Sink a payload that
// points there, and moves the ring's consumer position past the record only
// when the Sink has returned. The agent's Sink then copies the payload once,
// into the batch it hands to a worker.
//
// How it waits: while records arrive, Run looks at the ring every poll
// interval, on a Go timer, and reads everything there; the kernel program
// submits records without waking anyone, so a busy ring costs no wake-ups
// beyond the timer's. When idlePolls looks in a row find nothing, Run tells
// the program, through a word of shared memory, that it is going to block,
// and blocks until the next packet the program copies rings a second, tiny
// ring buffer, the doorbell (see "Waking the reader" in tee.c for the
// protocol and its ordering). It blocks in Go's netpoller, with the
// doorbell's descriptor registered there like a socket, so no OS thread is
// held and a wake-up is the runtime's own: measured against a thread
// blocked in poll(2) on the same descriptor, that halves the context
// switches per wake-up. An idle agent costs next to nothing.
type Reader struct {
	ring    *ring
	bell    *ring           // the doorbell ring, whose records only wake the reader
	waiting *uint32         // the program's reader_waiting word, mapped from the wake map
	wakeMem []byte          // that mapping
	file    *os.File        // a duplicate of the doorbell's descriptor, in the netpoller
	conn    syscall.RawConn // nil if the descriptor could not be registered: then Run only polls
	poll    time.Duration

	stop     chan struct{} // closed by Stop or Close
	stopOnce sync.Once
	drain    atomic.Bool // Stop: read what the ring holds before returning

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	runDone chan struct{} // closed when Run returns

	mapMu sync.RWMutex // held for writing while the ring is unmapped

	records   atomic.Uint64
	malformed atomic.Uint64
	polls     atomic.Uint64
	sleeps    atomic.Uint64
	wakeups   atomic.Uint64
}

// ReaderStats are a Reader's counters since NewReader.
type ReaderStats struct {
	Records   uint64 // records read (records the kernel discarded are skipped, not counted)
	Malformed uint64 // records that could not be decoded, skipped (also counted in Records)
	Polls     uint64 // looks at the ring
	Sleeps    uint64 // times the reader blocked, waiting for the kernel to wake it
	Wakeups   uint64 // times the kernel woke it
}

// NewReader opens the ring buffer for reading. poll is how often the reader
// looks at it while traffic flows (default DefaultPoll). One Reader at a time
// may read a Tee's ring.
func (t *Tee) NewReader(poll time.Duration) (*Reader, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	rg, err := mapRing(t.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	bell, err := mapRing(t.objs.Doorbell)
	if err != nil {
		rg.unmap()
		return nil, fmt.Errorf("open doorbell ring buffer: %w", err)
	}
	wakeMem, err := unix.Mmap(t.objs.Wake.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		rg.unmap()
		bell.unmap()
		return nil, fmt.Errorf("map the wake word: %w", err)
	}
	r := &Reader{
		ring:    rg,
		bell:    bell,
		waiting: (*uint32)(unsafe.Pointer(&wakeMem[0])),
		wakeMem: wakeMem,
		poll:    poll,
		stop:    make(chan struct{}),
		runDone: make(chan struct{}),
	}
	r.file, r.conn = pollable(t.objs.Doorbell.FD())
	return r, nil
}

// pollable registers a duplicate of a ring buffer's descriptor with Go's
// netpoller (a ring buffer map supports epoll, as a socket does). If that
// fails, the reader polls on its timer only, as it would on a busy ring.
func pollable(fd int) (*os.File, syscall.RawConn) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil
	}
	// os.NewFile puts a descriptor in the netpoller only if it is
	// non-blocking. The flag is shared with the map's own descriptor,
	// which no bpf() command heeds.
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, nil
	}
	f := os.NewFile(uintptr(dup), "ringbuf")
	// Deadlines work only on descriptors in the netpoller: this tells.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, nil
	}
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil
	}
	return f, conn
}

// Run decodes records into sink until Stop or Close is called. It returns
// nil then, having flushed the sink one last time; after Stop, it first
// reads every record that was in the ring. It returns an error only if the
// ring is corrupt. Run may be called once.
func (r *Reader) Run(sink Sink) error {
	r.mu.Lock()
	if r.closed || r.started {
		started := r.started
		r.mu.Unlock()
		if started {
			return errors.New("ring buffer reader: Run called twice")
		}
		sink.Flush()
		return nil
	}
	r.started = true
	r.mu.Unlock()
	defer close(r.runDone)
	defer atomic.StoreUint32(r.waiting, 0)

	var (
		seg        reassembly.Segment
		offset     = monoToWallOffset()
		offsetTime = time.Now()
		// Start as if the ring had been idle: block at the first empty look.
		empty = idlePolls - 1
		woken bool
	)
	deliver := func(raw []byte) {
		r.records.Add(1)
		ifindex, err := decodeEvent(raw, &seg, offset)
		if err != nil {
			r.malformed.Add(1)
			return
		}
		sink.Segment(&seg, ifindex)
	}
	sleeper, _ := sink.(Sleeper)
	told := false // Sleep called since the last records
	timer := time.NewTimer(r.poll)
	defer timer.Stop()
	for {
		select {
		case <-r.stop:
			var err error
			if r.drain.Load() {
				err = r.drainAll(deliver)
			}
			sink.Flush()
			return err
		default:
		}
		r.polls.Add(1)
		n, busy, err := r.ring.read(deliver)
		if n > 0 {
			sink.Flush()
		}
		if err != nil {
			sink.Flush()
			return fmt.Errorf("read ring buffer: %w", err)
		}
		// The wall clock may be stepped or slewed: follow it.
		if now := time.Now(); now.Sub(offsetTime) > time.Second {
			offset, offsetTime = monoToWallOffset(), now
		}
		switch {
		case n == 0 && !busy:
			empty++
		case woken:
			// Records just after a sleep may be all there is (sparse
			// traffic): one empty look sends the reader back to sleep.
			empty = idlePolls - 1
		default:
			empty = 0
		}
		woken = false
		if n > 0 {
			told = false
		}
		if empty >= idlePolls && sleeper != nil && !told {
			// Once per quiet spell, also when the reader can only poll.
			told = true
			sleeper.Sleep()
		}
		if empty >= idlePolls && r.conn != nil {
			empty = 0
			if err := r.block(); err != nil {
				sink.Flush()
				return fmt.Errorf("wait on ring buffer: %w", err)
			}
			woken = true
			continue // read at once
		}
		timer.Reset(r.poll)
		select {
		case <-timer.C:
		case <-r.stop:
		}
	}
}

// block waits in the netpoller until the kernel program rings the doorbell,
// or Stop or Close interrupt it (with a read deadline in the past).
//
// RawConn.Read clears the doorbell descriptor's readiness, then calls the
// function, and parks the goroutine until the next readiness each time it
// returns false. The function empties the doorbell, sets the reader_waiting
// word and then looks at the events ring again: a record that came before
// the word was visible is found here; a packet that comes after finds the
// word and rings, which marks the descriptor ready, also if it rings before
// the goroutine is parked.
func (r *Reader) block() error {
	var (
		parked  bool
		bellErr error
	)
	err := r.conn.Read(func(uintptr) bool {
		select {
		case <-r.stop:
			return true
		default:
		}
		if parked {
			r.wakeups.Add(1)
		}
		// Its records are discarded ones: reading skips them.
		if _, _, err := r.bell.read(nil); err != nil {
			bellErr = err
			return true
		}
		if r.ring.available() > 0 {
			return true
		}
		// A sequentially consistent store, then the load in available:
		// the full barrier that the protocol needs on this side.
		atomic.StoreUint32(r.waiting, 1)
		if r.ring.available() > 0 {
			return true
		}
		r.sleeps.Add(1)
		parked = true
		return false
	})
	// Awake: stop asking for wake-ups. The program clears the word when it
	// wakes the reader; after a stop, or when the second look found a
	// record, it is still set.
	atomic.StoreUint32(r.waiting, 0)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return bellErr
}

// drainAll reads the records reserved before it began: all of them, once
// the attachments are closed. A record that a program is still writing is
// waited for, up to drainWait.
func (r *Reader) drainAll(deliver func([]byte)) error {
	end := r.ring.producer()
	deadline := time.Now().Add(drainWait)
	for i := 0; int(r.ring.consumer()-end) < 0; i++ {
		r.polls.Add(1)
		_, busy, err := r.ring.read(deliver)
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if busy {
			if time.Now().After(deadline) {
				return nil
			}
			runtime.Gosched()
		}
	}
	return nil
}

// Stop makes Run read every record now in the ring buffer, flush the sink
// and return nil, and waits until it has (it returns at once if Run is not
// running; a Run that starts later does the same and returns). Close the
// attachments first: then no program is still writing a record, and every
// record that the kernel copied reaches the sink. Call Close afterwards.
func (r *Reader) Stop() {
	r.drain.Store(true)
	r.interrupt()
	r.waitRun()
}

// Close stops Run without reading what is still in the ring, waits until it
// has returned, and releases the ring buffer. To read everything first,
// call Stop before Close.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.interrupt()
	r.waitRun()

	r.mapMu.Lock()
	defer r.mapMu.Unlock()
	atomic.StoreUint32(r.waiting, 0)
	err := errors.Join(r.ring.unmap(), r.bell.unmap(), unix.Munmap(r.wakeMem))
	r.ring, r.bell, r.waiting, r.wakeMem = nil, nil, nil, nil
	if r.file != nil {
		err = errors.Join(err, r.file.Close())
	}
	return err
}

// interrupt wakes Run, wherever it waits.
func (r *Reader) interrupt() {
	r.stopOnce.Do(func() { close(r.stop) })
	if r.file != nil {
		_ = r.file.SetReadDeadline(time.Now())
	}
}

// waitRun waits until Run has returned, if it was started.
func (r *Reader) waitRun() {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if started {
		<-r.runDone
	}
}

// Records returns how many records were read, and how many of them could not
// be decoded.
func (r *Reader) Records() (read, malformed uint64) {
	return r.records.Load(), r.malformed.Load()
}

// Stats returns the reader's counters. It may be called from any goroutine.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{
		Records:   r.records.Load(),
		Malformed: r.malformed.Load(),
		Polls:     r.polls.Load(),
		Sleeps:    r.sleeps.Load(),
		Wakeups:   r.wakeups.Load(),
	}
}

// Blocking reports whether the reader blocks on an empty ring until the
// kernel wakes it; if not (the descriptor could not join the netpoller), it
// polls on its timer all the time.
func (r *Reader) Blocking() bool { return r.conn != nil }

// Pending returns the bytes waiting in the ring buffer; 0 once the reader
// is closed.
func (r *Reader) Pending() int {
	r.mapMu.RLock()
	defer r.mapMu.RUnlock()
	if r.ring == nil {
		return 0
	}
	return int(r.ring.available())
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
