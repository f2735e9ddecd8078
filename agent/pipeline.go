package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/reassembly"
)

// A batch carries segments from the capture goroutine to one shard. The
// payloads live in the batch's arena: one copy out of the kernel's ring, and
// no allocation per segment once the pool is warm.
type batch struct {
	segs  []reassembly.Segment
	arena []byte
	bytes int // payload bytes, for the backlog budget
}

const (
	batchSegments = 256
	arenaBytes    = 128 << 10
)

var batchPool = sync.Pool{New: func() any {
	return &batch{
		segs:  make([]reassembly.Segment, 0, batchSegments),
		arena: make([]byte, 0, arenaBytes),
	}
}}

func getBatch() *batch { return batchPool.Get().(*batch) }

func putBatch(b *batch) {
	clear(b.segs) // drop references to payloads held outside the arena
	b.segs, b.arena, b.bytes = b.segs[:0], b.arena[:0], 0
	batchPool.Put(b)
}

// add copies seg into the batch. It reports false when the batch has no room
// left for it; the caller sends the batch on and starts a new one.
func (b *batch) add(seg *reassembly.Segment) bool {
	n := len(seg.Payload)
	if len(b.segs) == cap(b.segs) || (n > 0 && len(b.arena)+n > cap(b.arena) && len(b.segs) > 0) {
		return false
	}
	s := *seg
	switch {
	case n == 0:
		s.Payload = nil
	case len(b.arena)+n <= cap(b.arena):
		start := len(b.arena)
		b.arena = append(b.arena, seg.Payload...)
		s.Payload = b.arena[start:len(b.arena):len(b.arena)]
	default:
		// Larger than a whole arena (a GRO super-packet): its own buffer.
		s.Payload = append([]byte(nil), seg.Payload...)
	}
	b.segs = append(b.segs, s)
	b.bytes += n
	return true
}

// CaptureStats counts what happened between the capture and the shards.
type CaptureStats struct {
	Segments     atomic.Uint64 // segments handed to the pipeline
	BacklogDrops atomic.Uint64 // segments dropped because the shards were behind
	BacklogBytes atomic.Int64  // payload bytes waiting for the shards now
}

// Pipeline spreads segments over shards by flow, and runs reassembly and
// HTTP framing in each shard. Push and Flush are called by one goroutine, the
// capture's; the shards run in their own goroutines.
type Pipeline struct {
	shards  []*shard
	pending []*batch
	block   bool
	budget  int64
	stats   *CaptureStats
	wg      sync.WaitGroup
}

// PipelineConfig configures a Pipeline.
type PipelineConfig struct {
	Shards int
	// Block makes Push wait for a slow shard instead of dropping: right for a
	// file, never for a live capture, which must not fall behind the kernel.
	Block bool
	// Backlog caps the payload bytes queued for the shards. Default 32 MiB.
	Backlog int64
	// Reassembly and Framing configure each shard; Reassembly.NewStream is
	// set by the pipeline.
	Reassembly reassembly.Config
	Framing    *httpframe.Config
	// Tick is how often idle shards check their timeouts (live capture).
	// Zero: only segment times drive them (files).
	Tick  time.Duration
	Stats *CaptureStats
}

// NewPipeline starts the shards.
func NewPipeline(cfg PipelineConfig) *Pipeline {
	if cfg.Shards < 1 {
		cfg.Shards = 1
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = 32 << 20
	}
	if cfg.Stats == nil {
		cfg.Stats = &CaptureStats{}
	}
	p := &Pipeline{
		shards:  make([]*shard, cfg.Shards),
		pending: make([]*batch, cfg.Shards),
		block:   cfg.Block,
		budget:  cfg.Backlog,
		stats:   cfg.Stats,
	}
	// Each shard's queue holds its share of the backlog in full batches.
	depth := max(4, int(cfg.Backlog/int64(arenaBytes)/int64(cfg.Shards)))
	for i := range p.shards {
		rcfg := cfg.Reassembly
		framing := cfg.Framing
		rcfg.NewStream = func(first *reassembly.Segment, midStream bool) reassembly.Stream {
			return httpframe.NewParser(framing, first.Flow.Src, first.Flow.Dst, midStream)
		}
		// The limits are the agent's: each shard holds its share.
		if rcfg.MaxBuffer > 0 {
			rcfg.MaxBuffer /= cfg.Shards
		}
		if rcfg.MaxStreams > 0 {
			rcfg.MaxStreams = max(1, rcfg.MaxStreams/cfg.Shards)
		}
		s := &shard{in: make(chan *batch, depth), asm: reassembly.New(rcfg), tick: cfg.Tick, stats: cfg.Stats}
		p.shards[i] = s
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			s.run()
		}()
	}
	return p
}

// Segment takes one segment; its payload is copied. It implements bpf.Sink.
func (p *Pipeline) Segment(seg *reassembly.Segment, _ int) {
	p.stats.Segments.Add(1)
	i := int(seg.Flow.Hash() % uint64(len(p.shards)))
	b := p.pending[i]
	if b == nil {
		b = getBatch()
		p.pending[i] = b
	}
	if !b.add(seg) {
		p.send(i)
		b = getBatch()
		p.pending[i] = b
		b.add(seg)
	}
}

// Flush hands every pending batch to its shard. It implements bpf.Sink.
func (p *Pipeline) Flush() {
	for i, b := range p.pending {
		if b != nil && len(b.segs) > 0 {
			p.send(i)
		}
	}
}

func (p *Pipeline) send(i int) {
	b := p.pending[i]
	p.pending[i] = nil
	s := p.shards[i]
	if p.block {
		p.stats.BacklogBytes.Add(int64(b.bytes))
		s.in <- b
		return
	}
	if p.stats.BacklogBytes.Load()+int64(b.bytes) > p.budget {
		p.drop(b)
		return
	}
	p.stats.BacklogBytes.Add(int64(b.bytes))
	select {
	case s.in <- b:
	default:
		p.stats.BacklogBytes.Add(-int64(b.bytes))
		p.drop(b)
	}
}

func (p *Pipeline) drop(b *batch) {
	p.stats.BacklogDrops.Add(uint64(len(b.segs)))
	putBatch(b)
}

// Close flushes, lets every shard finish its queue, ends every stream (a
// request cut short is counted as incomplete) and waits for the shards.
func (p *Pipeline) Close() {
	p.Flush()
	for _, s := range p.shards {
		close(s.in)
	}
	p.wg.Wait()
}

// Streams returns the number of flows tracked now, over all shards.
func (p *Pipeline) Streams() int {
	n := 0
	for _, s := range p.shards {
		n += int(s.streams.Load())
	}
	return n
}

type shard struct {
	in      chan *batch
	asm     *reassembly.Assembler
	tick    time.Duration
	stats   *CaptureStats
	streams atomic.Int64
}

func (s *shard) run() {
	var tick <-chan time.Time
	if s.tick > 0 {
		t := time.NewTicker(s.tick)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case b, ok := <-s.in:
			if !ok {
				s.asm.Close()
				s.streams.Store(0)
				return
			}
			for i := range b.segs {
				s.asm.Add(&b.segs[i])
			}
			s.stats.BacklogBytes.Add(-int64(b.bytes))
			putBatch(b)
			s.streams.Store(int64(s.asm.Len()))
		case now := <-tick:
			s.asm.Tick(now)
			s.streams.Store(int64(s.asm.Len()))
		}
	}
}
