package httpframe

import (
	"math/bits"
	"sync"
)

// Buffers come in size classes of 2^k and 1.5*2^k bytes, from 512 bytes to
// 16 MiB, so that a buffer sized to need wastes at most a third of itself
// and pools stay few. Larger buffers are allocated exactly and not pooled.
const (
	minBlockShift = 9
	maxBlockShift = 24
	numClasses    = 2*(maxBlockShift-minBlockShift) + 1
)

// block is a pooled byte buffer. Pools hold *block rather than []byte so
// that putting one back does not allocate.
type block struct {
	b     []byte // len is the bytes in use, cap the class size
	class int8   // index into blockPools, or -1 when not pooled
}

var blockPools [numClasses]sync.Pool

// sizeClass returns the smallest class that holds n bytes and its size, or
// -1 and n when n is larger than every class.
func sizeClass(n int) (int, int) {
	if n <= 1<<minBlockShift {
		return 0, 1 << minBlockShift
	}
	k := bits.Len(uint(n - 1)) // 2^(k-1) < n <= 2^k
	if k > maxBlockShift {
		return -1, n
	}
	if mid := 3 << (k - 2); n <= mid {
		return 2*(k-minBlockShift) - 1, mid
	}
	return 2 * (k - minBlockShift), 1 << k
}

// getBlock returns an empty block with room for at least n bytes.
func getBlock(n int) *block {
	c, size := sizeClass(n)
	if c < 0 {
		return &block{b: make([]byte, 0, size), class: -1}
	}
	if v := blockPools[c].Get(); v != nil {
		bl := v.(*block)
		bl.b = bl.b[:0]
		return bl
	}
	return &block{b: make([]byte, 0, size), class: int8(c)}
}

// putBlock returns bl to its pool. The caller must not use it afterwards.
func putBlock(bl *block) {
	if bl == nil || bl.class < 0 {
		return
	}
	bl.b = bl.b[:0]
	blockPools[bl.class].Put(bl)
}

// maxPooledHeaders bounds the Headers capacity a pooled Request keeps, so
// that one request with thousands of fields does not pin memory forever.
const maxPooledHeaders = 128

var requestPool = sync.Pool{New: func() any { return new(Request) }}

// getRequest returns a zeroed Request from the pool, with the Headers
// capacity of its previous life.
func getRequest() *Request {
	r := requestPool.Get().(*Request)
	r.release = releasePooled
	return r
}

// releasePooled is the release function of pooled Requests.
func releasePooled(r *Request) {
	bl, hs := r.blk, r.Headers[:0]
	if cap(hs) > maxPooledHeaders {
		hs = nil
	}
	*r = Request{Headers: hs}
	putBlock(bl)
	requestPool.Put(r)
}

// Release returns the request and its buffers to the pools. The request
// must not be used afterwards, and Release must be called once only. It does
// nothing on a Request that was not made by a Parser.
func (r *Request) Release() {
	if r != nil && r.release != nil {
		r.release(r)
	}
}

// Clone returns a copy of r that is released on its own: for a request
// sent to two shadows, each of which releases what it is given.
func (r *Request) Clone() *Request {
	c := getRequest()
	release, hs := c.release, c.Headers[:0]
	*c = *r
	c.release, c.tag = release, nil
	c.blk = getBlock(len(r.Raw))
	c.blk.b = append(c.blk.b, r.Raw...)
	c.Raw = c.blk.b
	c.Headers = append(hs, r.Headers...)
	return c
}
