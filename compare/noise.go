package compare

import (
	"hash/maphash"
	"time"
)

// The primaries' memory: the last primary answer to each distinct request
// (rule, method, authority, target, body hash), kept for NoiseWindow so
// that the next answer to an equal request can be compared with it. What
// differs between two answers of the primary to the same request is noise.
// Bounded in entries and in bytes, least recently used first out.

type cacheKey struct {
	rule, method, authority, path string
	bodyHash                      uint64
}

type cacheEntry struct {
	key        cacheKey
	hash       uint64
	at         time.Time
	v          view
	buf        []byte // the decoded body, when it had a content coding
	size       int64
	prev, next *cacheEntry
}

type noiseCache struct {
	seed       maphash.Seed
	m          map[uint64]*cacheEntry // by hash of the key; the entry holds the key
	head, tail *cacheEntry            // head: most recently stored
	free       *cacheEntry            // recycled entries, linked by next
	bytes      int64
	maxN       int
	maxBytes   int64
	window     time.Duration
}

// entryOverhead is what an entry costs besides its body and fields.
const entryOverhead = 256

// maxRecycledBuf is the largest body buffer a recycled entry keeps.
const maxRecycledBuf = 256 << 10

func newNoiseCache(maxN int, maxBytes int64, window time.Duration) *noiseCache {
	return &noiseCache{seed: maphash.MakeSeed(), m: make(map[uint64]*cacheEntry), maxN: maxN, maxBytes: maxBytes, window: window}
}

func keyOf(ex *Exchange) cacheKey {
	return cacheKey{rule: ex.Rule, method: ex.Method, authority: ex.Authority, path: ex.Path, bodyHash: ex.BodyHash}
}

func (c *noiseCache) hash(k *cacheKey) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.rule)
	h.WriteByte(0)
	h.WriteString(k.method)
	h.WriteByte(0)
	h.WriteString(k.authority)
	h.WriteByte(0)
	h.WriteString(k.path)
	var b [8]byte
	for i := range b {
		b[i] = byte(k.bodyHash >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum64()
}

// get returns the primary's last answer to the request k (of hash hk),
// if it came within the window of at.
func (c *noiseCache) get(k *cacheKey, hk uint64, at time.Time) *cacheEntry {
	e := c.m[hk]
	if e == nil || e.key != *k {
		return nil
	}
	if d := at.Sub(e.at); d > c.window || d < -c.window {
		return nil
	}
	return e
}

// put keeps v, the primary's answer to the request k (of hash hk),
// received at at. A different request of the same hash takes its place.
func (c *noiseCache) put(k *cacheKey, hk uint64, at time.Time, v *view) {
	if c.maxN == 0 {
		return
	}
	e := c.m[hk]
	if e != nil {
		c.unlink(e)
		c.bytes -= e.size
	} else {
		e = c.alloc()
		e.hash = hk
		c.m[hk] = e
	}
	e.key = *k
	e.at = at
	e.v = *v
	if v.ready && v.err == nil && v.removed != nil {
		// The decoded body lives in the caller's scratch space: copy it.
		e.buf = append(e.buf[:0], v.body...)
		e.v.body = e.buf
	}
	// Not decoded yet: it will be, into the entry's own buffer, when a
	// comparison needs it (resize then counts it).
	e.v.dst = &e.buf
	e.size = e.measure()
	c.bytes += e.size
	c.pushFront(e)
	c.evict(at)
}

// measure returns what the entry holds, in bytes.
func (e *cacheEntry) measure() int64 {
	n := int64(entryOverhead + len(e.key.path) + len(e.key.authority) + len(e.v.ans.Body))
	if e.v.ready && e.v.removed != nil {
		n += int64(len(e.v.body)) // the decoded body, beside the coded one
	}
	for _, f := range e.v.ans.Header {
		n += int64(len(f.Name) + len(f.Value) + 32)
	}
	return n
}

// resize counts again what e holds, once a comparison decoded its body.
func (c *noiseCache) resize(e *cacheEntry, now time.Time) {
	if n := e.measure(); n != e.size {
		c.bytes += n - e.size
		e.size = n
		c.evict(now)
	}
}

func (c *noiseCache) alloc() *cacheEntry {
	if e := c.free; e != nil {
		c.free = e.next
		e.next = nil
		return e
	}
	return &cacheEntry{}
}

func (c *noiseCache) evict(now time.Time) {
	for c.tail != nil && (len(c.m) > c.maxN || c.bytes > c.maxBytes || now.Sub(c.tail.at) > c.window) {
		c.remove(c.tail)
	}
}

func (c *noiseCache) remove(e *cacheEntry) {
	c.unlink(e)
	delete(c.m, e.hash)
	c.bytes -= e.size
	buf := e.buf
	if cap(buf) > maxRecycledBuf {
		buf = nil
	}
	*e = cacheEntry{buf: buf[:0]}
	e.next = c.free
	c.free = e
}

func (c *noiseCache) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if c.head == e {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if c.tail == e {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *noiseCache) pushFront(e *cacheEntry) {
	e.prev, e.next = nil, c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

func (c *noiseCache) len() int { return len(c.m) }
