package reassembly

// bufPool recycles the buffers of out-of-order chunks, so that a flow that
// is steadily a little out of order does not allocate for every segment.
// It belongs to one Assembler, hence no locking; sync.Pool would add
// locking and a boxing allocation per Put for nothing.
//
// Sizes come in classes a factor 1.5 or 2 apart, so that a typical
// 1448-byte segment wastes 6% (a 1536-byte buffer) rather than 29% (2048).
// Below the smallest class, buffers are allocated to size and not kept:
// Go's own size classes are finer there.
type bufPool struct {
	free  [len(bufClasses)][][]byte
	held  int // bytes of capacity kept in free
	limit int // most bytes of capacity to keep
}

var bufClasses = [...]int{
	512, 768, 1 << 10, 1536, 2 << 10, 3 << 10, 4 << 10, 6 << 10, 8 << 10,
	12 << 10, 16 << 10, 24 << 10, 32 << 10, 48 << 10, 64 << 10,
}

// maxPooled bounds the free buffers an Assembler keeps.
const maxPooled = 4 << 20

// class returns the index of the smallest class that holds n bytes, or -1.
func class(n int) int {
	for i, size := range bufClasses {
		if n <= size {
			return i
		}
	}
	return -1
}

// get returns a buffer of length n.
func (p *bufPool) get(n int) []byte {
	if n < bufClasses[0] {
		return make([]byte, n)
	}
	i := class(n)
	if i < 0 {
		return make([]byte, n)
	}
	if l := len(p.free[i]); l > 0 {
		b := p.free[i][l-1]
		p.free[i][l-1] = nil
		p.free[i] = p.free[i][:l-1]
		p.held -= cap(b)
		return b[:n]
	}
	return make([]byte, n, bufClasses[i])
}

// put keeps b for reuse if it came from a class and there is room.
func (p *bufPool) put(b []byte) {
	c := cap(b)
	if c < bufClasses[0] || p.held+c > p.limit {
		return
	}
	i := class(c)
	if i < 0 || bufClasses[i] != c {
		return
	}
	p.free[i] = append(p.free[i], b[:0])
	p.held += c
}
