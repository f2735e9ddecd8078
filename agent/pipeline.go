package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/h2frame"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/reassembly"
)

// A batch carries segments from the capture goroutine to one shard. The
// payloads live in the batch's arena, copied once out of the capture's
// buffer, with no allocation per segment once the pool is warm.
type batch struct {
	segs  []reassembly.Segment
	arena []byte
	bytes int // payload bytes, for the backlog budget
}

const (
	batchSegments = 256
	arenaBytes    = 128 << 10
	// inlineSegments bounds the segments of one read of the ring that the
	// capture goroutine reassembles itself: a few, so that a quiet agent
	// wakes one goroutine per request; past that, the rate is high enough
	// to pay the hand-off to the shards, which run on other cores.
	inlineSegments = 32
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
	Inline       atomic.Uint64 // of those, reassembled on the capture goroutine itself
	Batches      atomic.Uint64 // batches handed to shard goroutines
	BacklogDrops atomic.Uint64 // segments dropped because the shards were behind
	BacklogBytes atomic.Int64  // payload bytes waiting for the shards now
	Ticks        atomic.Uint64 // timer wake-ups of the shards (deadlines of held state)
}

// Pipeline spreads segments over shards by connection (both directions of
// one connection share a shard) and runs reassembly and framing in them.
// Segment and Flush are called by one goroutine, the capture's.
//
// A live pipeline does the work where it costs least. When a segment's
// shard is idle and the capture has read few segments in this pass, the
// capture goroutine reassembles it itself, from the capture's buffer, with
// no copy and no hand-off: at low rates a request then wakes one goroutine.
// Otherwise the segment is copied into a batch for the shard's goroutine, so
// that high rates use every core. A shard's segments never overtake each
// other: a segment goes inline only when nothing of its shard is queued.
//
// Nothing runs on a timer while nothing is held: each shard sleeps until the
// next deadline of what its assembler holds (a hole's gap timeout, the idle
// expiry of a connection), or for good.
type Pipeline struct {
	shards  []*shard
	pending []*batch
	block   bool
	inline  bool
	budget  int64
	stats   *CaptureStats
	wg      sync.WaitGroup
	passN   int // segments run inline in this pass over the capture
	onFlush func()
	onSleep func()
}

// PipelineConfig configures a Pipeline.
type PipelineConfig struct {
	Shards int
	// Block makes Flush wait for a slow shard instead of dropping: right for a
	// file, never for a live capture, which must not fall behind the kernel.
	Block bool
	// Live turns on inline work and deadline timers: time passes for held
	// state even when no segment arrives. A file's time is its segments'.
	Live bool
	// Backlog caps the payload bytes queued for the shards. Default 32 MiB.
	Backlog int64
	// Reassembly and Framing configure each shard; Reassembly.NewStream is
	// set by the pipeline.
	Reassembly reassembly.Config
	Framing    *httpframe.Config
	// HTTP2 frames HTTP/2 connections; nil counts them and skips them.
	HTTP2 *h2frame.Config
	// Answers frames the servers' HTTP/1 answers, for comparison; nil:
	// the server-to-client segments are not read.
	Answers *httpframe.ResponseConfig
	Stats   *CaptureStats
	// OnFlush, if set, runs at the end of each Flush, on the capture's
	// goroutine: for what should run only while traffic flows.
	OnFlush func()
	// OnSleep, if set, runs when the capture stops polling and waits for
	// the kernel to wake it (see bpf.Sleeper): nothing comes until the
	// next Flush.
	OnSleep func()
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
		inline:  cfg.Live && !cfg.Block,
		budget:  cfg.Backlog,
		stats:   cfg.Stats,
		onFlush: cfg.OnFlush,
		onSleep: cfg.OnSleep,
	}
	conns := &connConfig{h1: cfg.Framing, h2: cfg.HTTP2, answers: cfg.Answers}
	// Each shard's queue holds its share of the backlog in full batches.
	depth := max(4, int(cfg.Backlog/int64(arenaBytes)/int64(cfg.Shards)))
	for i := range p.shards {
		s := &shard{in: make(chan *batch, depth), stats: cfg.Stats}
		s.table.conns = map[reassembly.Flow]*conn{}
		rcfg := cfg.Reassembly
		rcfg.NewStream = func(first *reassembly.Segment, midStream bool) reassembly.Stream {
			if first.Dir == reassembly.ToClient {
				// The server's side of a connection whose answers are
				// compared; any other is not read.
				if c := s.table.conns[first.Flow.Reverse()]; c != nil {
					if side := c.answers(); side != nil {
						return side
					}
				}
				return ignored{}
			}
			return newConn(conns, &s.table, first, midStream)
		}
		// The limits are the agent's: each shard holds its share.
		if rcfg.MaxBuffer > 0 {
			rcfg.MaxBuffer /= cfg.Shards
		}
		if rcfg.MaxStreams > 0 {
			rcfg.MaxStreams = max(1, rcfg.MaxStreams/cfg.Shards)
		}
		s.asm = reassembly.New(rcfg)
		if cfg.Live {
			s.timer = time.NewTimer(time.Hour)
			s.timer.Stop()
		}
		p.shards[i] = s
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			s.run()
		}()
	}
	return p
}

// Segment takes one segment; its payload is only read during the call. It
// implements bpf.Sink.
func (p *Pipeline) Segment(seg *reassembly.Segment, _ int) {
	p.stats.Segments.Add(1)
	i := int(seg.Flow.Hash() % uint64(len(p.shards)))
	b := p.pending[i]
	if b == nil && p.inline && p.passN < inlineSegments && p.shards[i].tryInline(seg) {
		p.passN++
		p.stats.Inline.Add(1)
		return
	}
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

// Flush hands every pending batch to its shard, and ends the pass over the
// capture. It implements bpf.Sink.
func (p *Pipeline) Flush() {
	p.passN = 0
	for i, b := range p.pending {
		if b != nil && len(b.segs) > 0 {
			p.send(i)
		}
	}
	if p.onFlush != nil {
		p.onFlush()
	}
}

// Sleep implements bpf.Sleeper.
func (p *Pipeline) Sleep() {
	if p.onSleep != nil {
		p.onSleep()
	}
}

func (p *Pipeline) send(i int) {
	b := p.pending[i]
	p.pending[i] = nil
	s := p.shards[i]
	if p.block {
		p.stats.BacklogBytes.Add(int64(b.bytes))
		s.queued.Add(1)
		s.in <- b
		p.stats.Batches.Add(1)
		return
	}
	if p.stats.BacklogBytes.Load()+int64(b.bytes) > p.budget {
		p.drop(b)
		return
	}
	p.stats.BacklogBytes.Add(int64(b.bytes))
	s.queued.Add(1)
	select {
	case s.in <- b:
		p.stats.Batches.Add(1)
	default:
		s.queued.Add(-1)
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

// shard owns one assembler and the connections it holds. Whoever holds mu
// runs the assembler: the shard's goroutine for its batches and deadlines,
// or the capture goroutine for a segment it runs inline.
type shard struct {
	in      chan *batch
	queued  atomic.Int32 // batches sent to in and not finished yet
	stats   *CaptureStats
	streams atomic.Int64

	mu    sync.Mutex
	asm   *reassembly.Assembler
	table connTable   // the connections, for their answers and HTTP/2 timers
	timer *time.Timer // nil for files
	armed time.Time   // the deadline timer is set for; zero when stopped
}

// tryInline runs seg on the caller's goroutine if the shard is idle: no
// batch queued (so nothing of this shard is older than seg) and nobody
// running the assembler.
func (s *shard) tryInline(seg *reassembly.Segment) bool {
	if s.queued.Load() != 0 || !s.mu.TryLock() {
		return false
	}
	s.asm.Add(seg)
	s.settle()
	s.mu.Unlock()
	return true
}

// settle updates the gauges and arms the timer for the assembler's next
// deadline. The caller holds mu.
func (s *shard) settle() {
	s.streams.Store(int64(s.asm.Len()))
	if s.timer == nil {
		return
	}
	next := s.asm.NextDeadline()
	if d := s.table.next(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
		next = d
	}
	switch {
	case next.IsZero():
		if !s.armed.IsZero() {
			s.timer.Stop()
			s.armed = time.Time{}
		}
	case s.armed.IsZero() || next.Before(s.armed):
		s.timer.Reset(max(time.Until(next), time.Millisecond))
		s.armed = next
	}
}

func (s *shard) run() {
	var tick <-chan time.Time
	if s.timer != nil {
		tick = s.timer.C
	}
	for {
		select {
		case b, ok := <-s.in:
			if !ok {
				s.mu.Lock()
				s.asm.Close()
				s.streams.Store(0)
				if s.timer != nil {
					s.timer.Stop()
				}
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			for i := range b.segs {
				s.asm.Add(&b.segs[i])
			}
			s.settle()
			s.queued.Add(-1)
			s.mu.Unlock()
			s.stats.BacklogBytes.Add(-int64(b.bytes))
			putBatch(b)
		case now := <-tick:
			s.stats.Ticks.Add(1)
			s.mu.Lock()
			s.armed = time.Time{}
			s.asm.Tick(now)
			s.table.tick(now)
			s.settle()
			s.mu.Unlock()
		}
	}
}

// ignored is the Stream of a flow nobody reads.
type ignored struct{}

func (ignored) Data([]byte, time.Time) {}
func (ignored) Gap()                   {}
func (ignored) End()                   {}
