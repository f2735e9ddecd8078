package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring is the ring buffer map mapped into this process and read in place,
// as cilium/ebpf's ringbuf package reads it, except that a record is never
// copied out: the reader passes the caller a slice of the mapping itself and
// hands the record's space back to the kernel only after the caller returns.
//
// The kernel lays the map out as a consumer page (the position up to which
// user space has read, which user space writes), a producer page (the
// position up to which records have been reserved) and the data pages,
// which it lets user space map twice in a row, so that a record that wraps
// around the end of the ring is contiguous in memory.
type ring struct {
	cons    []byte // consumer page, read-write
	prod    []byte // producer page and the data pages twice, read-only
	consPos *uintptr
	prodPos *uintptr
	data    []byte // the data pages, twice
	mask    uintptr
	size    uintptr
}

var errCorruptRing = errors.New("ring buffer record runs past the producer position")

func mapRing(m *ebpf.Map) (*ring, error) {
	size := int(m.MaxEntries())
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two", size)
	}
	page := os.Getpagesize()
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the ring buffer's consumer page: %w", err)
	}
	prod, err := unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(cons)
		return nil, fmt.Errorf("map the ring buffer's data pages: %w", err)
	}
	return &ring{
		cons:    cons,
		prod:    prod,
		consPos: (*uintptr)(unsafe.Pointer(&cons[0])),
		prodPos: (*uintptr)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uintptr(size - 1),
		size:    uintptr(size),
	}, nil
}

func (r *ring) unmap() error {
	return errors.Join(unix.Munmap(r.prod), unix.Munmap(r.cons))
}

// available returns the bytes reserved in the ring and not yet read:
// committed records, records still being written, and discarded ones.
func (r *ring) available() uintptr {
	return atomic.LoadUintptr(r.prodPos) - atomic.LoadUintptr(r.consPos)
}

// producer returns the producer position.
func (r *ring) producer() uintptr { return atomic.LoadUintptr(r.prodPos) }

// consumer returns the consumer position.
func (r *ring) consumer() uintptr { return atomic.LoadUintptr(r.consPos) }

// read passes every committed record now in the ring to fn, in order, and
// gives each record's space back to the kernel once fn has returned: raw is
// valid only during the call. It stops early at a record that a program is
// still writing, and then reports busy. Records the kernel discarded are
// skipped without a call (fn may be nil where all are).
func (r *ring) read(fn func(raw []byte)) (n int, busy bool, err error) {
	cons := atomic.LoadUintptr(r.consPos)
	prod := atomic.LoadUintptr(r.prodPos)
	for cons != prod {
		if prod-cons < unix.BPF_RINGBUF_HDR_SZ {
			return n, false, errCorruptRing
		}
		// An atomic load of the length, which the kernel sets with an
		// xchg when it commits, orders the reads of the record after it.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&unix.BPF_RINGBUF_BUSY_BIT != 0 {
			return n, true, nil
		}
		length := uintptr(hdr &^ (unix.BPF_RINGBUF_BUSY_BIT | unix.BPF_RINGBUF_DISCARD_BIT))
		next := cons + unix.BPF_RINGBUF_HDR_SZ + (length+7)&^7
		if length > r.size || next-cons > prod-cons {
			return n, false, errCorruptRing
		}
		if hdr&unix.BPF_RINGBUF_DISCARD_BIT == 0 && fn != nil {
			start := (cons + unix.BPF_RINGBUF_HDR_SZ) & r.mask
			fn(r.data[start : start+length : start+length])
			n++
		}
		cons = next
		atomic.StoreUintptr(r.consPos, cons)
	}
	return n, false, nil
}
