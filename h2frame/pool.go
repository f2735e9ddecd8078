package h2frame

import (
	"math/bits"
	"sync"
)

// Buffers come in power-of-two size classes from 512 bytes to 16 MiB, one
// pool per class. Larger buffers are allocated exactly and not pooled.
const (
	minBlockShift = 9
	maxBlockShift = 24
)

// block is a pooled byte buffer. Pools hold *block rather than []byte so
// that putting one back does not allocate.
type block struct {
	b     []byte // len is the bytes in use, cap the class size
	class int8   // index into blockPools, or -1 when not pooled
}

var blockPools [maxBlockShift - minBlockShift + 1]sync.Pool

// blockSize is the capacity of the block that getBlock(n) returns.
func blockSize(n int) int {
	if k := blockShift(n); k <= maxBlockShift {
		return 1 << k
	}
	return n
}

func blockShift(n int) int {
	if n > 1<<minBlockShift {
		return bits.Len(uint(n - 1))
	}
	return minBlockShift
}

// getBlock returns an empty block with room for at least n bytes.
func getBlock(n int) *block {
	k := blockShift(n)
	if k > maxBlockShift {
		return &block{b: make([]byte, 0, n), class: -1}
	}
	c := k - minBlockShift
	if v := blockPools[c].Get(); v != nil {
		bl := v.(*block)
		bl.b = bl.b[:0]
		return bl
	}
	return &block{b: make([]byte, 0, 1<<k), class: int8(c)}
}

// putBlock returns bl to its pool; nil is ignored. The caller must not use
// bl afterwards.
func putBlock(bl *block) {
	if bl == nil || bl.class < 0 {
		return
	}
	bl.b = bl.b[:0]
	blockPools[bl.class].Put(bl)
}

// grow returns a block holding bl's bytes with room for n more: bl itself
// when it has the room, else a larger block (bl goes back to its pool).
// bl may be nil.
func grow(bl *block, n int) *block {
	if bl == nil {
		return getBlock(n)
	}
	if len(bl.b)+n <= cap(bl.b) {
		return bl
	}
	nb := getBlock(max(len(bl.b)+n, 2*cap(bl.b)))
	nb.b = append(nb.b, bl.b...)
	putBlock(bl)
	return nb
}

// appendBlock appends p to bl (growing it through the pools) and returns
// the block that now holds the bytes.
func appendBlock(bl *block, p []byte) *block {
	bl = grow(bl, len(p))
	bl.b = append(bl.b, p...)
	return bl
}
