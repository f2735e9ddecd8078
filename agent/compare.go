package agent

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/compare"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpmsg"
)

// CompareConfig configures the comparison of the shadow's answers with the
// primary's, for the rules that ask for it (config.Rule.Compare).
type CompareConfig struct {
	// Engine is the comparison's own configuration: noise and redacted
	// headers, thresholds, endpoint patterns (the rules' are added), the
	// --compare-log writer.
	Engine compare.Config
	// Secondary, when set, is a second copy of the current release: each
	// compared request goes there too, and the difference between its
	// answer and the primary's is noise.
	Secondary string
	// BodyCap is how much of each answer's body is kept for comparing.
	// Default 64 KiB.
	BodyCap int
	// MaxPending and MaxPendingBytes bound the exchanges waiting for
	// their answers; past them a request is mirrored but not compared
	// (counted as overflow). Defaults 4096 and 64 MiB.
	MaxPending      int64
	MaxPendingBytes int64
}

// Defaults of CompareConfig.
const (
	DefaultCompareBodyCap      = 64 << 10
	DefaultCompareMaxPending   = 4096
	DefaultCompareMaxPendBytes = 64 << 20
)

// setupCompare gives m a comparer when comparing is asked for (cfg, or
// every rule with all) or a rule of rules asks for it; it reports whether
// answers are compared. Endpoint patterns and headers come from the
// rules that compare: they set up the comparison, and a reload that
// changes them takes effect at the next start.
func setupCompare(m *mirror, cfg *CompareConfig, all bool, rules *config.File, wait bool) (bool, error) {
	if cfg == nil && (rules == nil || !rules.Compares()) {
		return false, nil
	}
	c := CompareConfig{}
	if cfg != nil {
		c = *cfg
	}
	e := &c.Engine
	if rules != nil {
		for _, r := range rules.Rules {
			if r.Compare == nil {
				continue
			}
			if len(r.Compare.Endpoints) > 0 {
				if e.Patterns == nil {
					e.Patterns = map[string][]string{}
				}
				e.Patterns[r.Name] = append(e.Patterns[r.Name], r.Compare.Endpoints...)
			}
			e.NoiseHeaders = append(e.NoiseHeaders, r.Compare.IgnoreHeaders...)
			e.RedactHeaders = append(e.RedactHeaders, r.Compare.RedactHeaders...)
		}
	}
	cmp, err := newComparer(c, wait)
	if err != nil {
		return false, fmt.Errorf("compare: %w", err)
	}
	m.cmp, m.compareAll, m.secondaryURL = cmp, all, c.Secondary
	return true, nil
}

// comparer pairs the answers of the mirrored requests of comparing rules
// and hands each pair to the engine. Answers arrive on different
// goroutines (the primary's on a shard, the shadow's on the sender's), so
// each exchange gathers them under its own lock.
type comparer struct {
	engine  *compare.Engine
	wait    bool // a file: compare on the spot, nothing dropped
	bodyCap int
	maxN    int64
	maxB    int64
	seed    maphash.Seed

	pending      atomic.Int64
	pendingBytes atomic.Int64
	overflow     atomic.Uint64 // requests not compared: too many waiting
	abandoned    atomic.Uint64 // kept, then cut before they were whole
}

func newComparer(cfg CompareConfig, wait bool) (*comparer, error) {
	if cfg.BodyCap <= 0 {
		cfg.BodyCap = DefaultCompareBodyCap
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultCompareMaxPending
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = DefaultCompareMaxPendBytes
	}
	eng, err := compare.New(cfg.Engine)
	if err != nil {
		return nil, err
	}
	return &comparer{engine: eng, wait: wait, bodyCap: cfg.BodyCap, maxN: cfg.MaxPending, maxB: cfg.MaxPendingBytes,
		seed: maphash.MakeSeed()}, nil
}

// start makes the exchange of a kept request of rt, or returns nil when
// too many wait for their answers already.
func (c *comparer) start(rt *route) *exchange {
	if c.pending.Add(1) > c.maxN || c.pendingBytes.Load() > c.maxB {
		c.pending.Add(-1)
		c.overflow.Add(1)
		return nil
	}
	x := &exchange{c: c, rt: rt, secondary: rt.secondary != nil}
	x.ex.Rule, x.ex.ShadowURL = rt.rule.Name, rt.rule.Shadow.URL
	return x
}

// exchange is one compared request on its way: the request as the client
// sent it, and the answers of the primary and the shadow (and of the
// secondary) as they come.
type exchange struct {
	c         *comparer
	rt        *route
	secondary bool // an answer of the secondary is awaited too

	mu          sync.Mutex
	ex          compare.Exchange
	ended, sent time.Time
	held        int64
	emitted     bool // the request was whole and went to the shadow
	dropped     bool // it never will: cut, or refused by the sender
	primaryDone bool
	shadowDone  bool
	secondDone  bool
	finished    bool
}

// request takes what the comparison needs of r as it is emitted, before
// the sender owns it.
func (x *exchange) request(r httpmsg.Request) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := &x.ex
	e.Proto, e.Method, e.Authority, e.Path = r.Proto(), string(r.Method()), string(r.Authority()), string(r.Path())
	if x.rt.rewriter != nil {
		e.ShadowAuthority = x.rt.rewriter.Authority(r)
	}
	r.VisitHeaders(func(name, value []byte) bool {
		e.Header = append(e.Header, httpmsg.Field{Name: clone(name), Value: clone(value)})
		return true
	})
	var h maphash.Hash
	h.SetSeed(x.c.seed)
	r.VisitBody(func(b []byte) bool {
		h.Write(b)
		if room := x.c.bodyCap - len(e.Body); room > 0 {
			e.Body = append(e.Body, b[:min(len(b), room)]...)
		}
		return true
	})
	e.BodyLen, e.BodyHash, e.Time = r.BodyLen(), h.Sum64(), r.Time()
	if en, ok := r.(interface{ Ended() time.Time }); ok {
		x.ended = en.Ended()
	}
	x.hold(int64(len(e.Body)))
	x.emitted, x.sent = true, time.Now()
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// hold charges n bytes to the bound of what waits. The caller holds mu.
func (x *exchange) hold(n int64) {
	x.held += n
	x.c.pendingBytes.Add(n)
}

func answerBytes(a *httpmsg.Answer) int64 {
	if a == nil {
		return 0
	}
	n := int64(len(a.Body))
	for _, f := range a.Header {
		n += int64(len(f.Name) + len(f.Value))
	}
	return n
}

// primary takes the primary's answer, as captured: nil when it could not
// be framed or paired.
func (x *exchange) primary(a *httpmsg.Answer) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.primaryDone {
		return
	}
	x.primaryDone, x.ex.Primary = true, a
	if a != nil && !x.ended.IsZero() {
		x.ex.PrimaryLatency = a.Start.Sub(x.ended)
	}
	x.hold(answerBytes(a))
	x.settle()
}

// shadow takes the shadow's answer: nil when the request failed or was
// dropped.
func (x *exchange) shadow(a *httpmsg.Answer) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.shadowDone {
		return
	}
	x.shadowDone, x.ex.Shadow = true, a
	if a != nil && !x.sent.IsZero() {
		x.ex.ShadowLatency = a.Start.Sub(x.sent)
	}
	x.hold(answerBytes(a))
	x.settle()
}

// second takes the secondary's answer.
func (x *exchange) second(a *httpmsg.Answer) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.secondDone {
		return
	}
	x.secondDone, x.ex.Secondary = true, a
	x.hold(answerBytes(a))
	x.settle()
}

// drop ends an exchange whose request was kept but will not be emitted.
// answered says whether the primary's answer is still to come (HTTP/1:
// yes, its framer answers every request it was told of; HTTP/2: no).
func (x *exchange) drop(answered bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropped = true
	if !answered {
		x.primaryDone = true
	}
	x.settle()
}

// settle hands the exchange on once nothing more is to come. The caller
// holds mu.
func (x *exchange) settle() {
	if x.finished || !x.primaryDone {
		return
	}
	if !x.dropped && (!x.emitted || !x.shadowDone || x.secondary && !x.secondDone) {
		return
	}
	x.finished = true
	c := x.c
	c.pending.Add(-1)
	c.pendingBytes.Add(-x.held)
	if x.dropped {
		c.abandoned.Add(1)
		return
	}
	ex := x.ex
	if c.wait {
		c.engine.Add(&ex)
	} else {
		c.engine.Submit(&ex)
	}
}

// exchangeOf returns the exchange a framer's tag carries, if any.
func exchangeOf(tag any) *exchange {
	x, _ := tag.(*exchange)
	return x
}

// routeOf returns the route of a framer's tag.
func routeOf(tag any) *route {
	if x, ok := tag.(*exchange); ok {
		return x.rt
	}
	return tag.(*route)
}
