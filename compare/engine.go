package compare

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// Exchange is one mirrored request with the answers to compare. Submit and
// Add take it whole: the caller must not change it, its fields or its
// answers afterwards, and the engine may keep the primary's answer for the
// noise window.
type Exchange struct {
	Rule      string
	ShadowURL string // the rule's shadow, e.g. http://10.0.0.7:8000, for the curl line
	Proto     httpmsg.Proto
	Method    string
	Authority string // as the client sent it (not suffixed)
	// ShadowAuthority is the Host or :authority the shadow was sent (the
	// rule's rewrite of Authority), for the curl line.
	ShadowAuthority string
	Path            string // path and query as sent
	Header          []httpmsg.Field
	Body            []byte // the request body, capped by the caller, for the curl line
	BodyLen         int64
	BodyHash        uint64 // hash of the whole request body: method+target+BodyHash make "equal requests"

	Primary   *httpmsg.Answer // nil: the primary's answer was not seen (unpaired)
	Shadow    *httpmsg.Answer // nil: the shadow failed (unpaired)
	Secondary *httpmsg.Answer // optional: answered by a second copy of the current release

	// PrimaryLatency and ShadowLatency run from the end of the request to
	// the start of the answer; 0 means not measured.
	PrimaryLatency, ShadowLatency time.Duration
	// Time is when the request was seen; the zero time takes Config.Now.
	Time time.Time
}

// item is one element of the queue: an exchange, or a flush marker.
type item struct {
	ex    *Exchange
	flush chan struct{}
}

// Engine compares answers and keeps what it learns. Its methods are safe
// for concurrent use.
type Engine struct {
	cfg Config
	red *redactor

	queue     chan item
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
	dropped   atomic.Uint64

	mu          sync.Mutex
	cmp         comparer
	cache       *noiseCache
	patterns    map[string][]pattern
	rules       map[string]*ruleState
	ruleList    []*ruleState
	pair, noise pairBuf
	fbuf        []*field
	bufP, bufS  []byte
	bufX        []byte
	tbuf, kbuf  []byte
	seq         uint64
	tot         totals
	sampleBytes int64
}

type totals struct {
	exchanges, compared, truncated, noisePairs, secondary uint64
	verdicts                                              [nVerdicts]uint64
}

// New returns a running engine; Close stops it.
func New(cfg Config) (*Engine, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		queue:    make(chan item, cfg.QueueLen),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		cache:    newNoiseCache(cfg.NoiseEntries, cfg.NoiseBytes, cfg.NoiseWindow),
		patterns: make(map[string][]pattern),
		rules:    make(map[string]*ruleState),
	}
	e.red = &redactor{headers: newNameSet(defaultRedactHeaders, cfg.RedactHeaders), paths: append([]string(nil), cfg.RedactPaths...)}
	e.cmp.dec = newDecoders(cfg.BodyCap)
	e.cmp.hc.noise = newNameSet(defaultNoiseHeaders, cfg.NoiseHeaders)
	e.cmp.hc.keep = newNameSet(cfg.CompareHeaders)
	e.cmp.hc.redact = e.red.headers
	e.pair.red, e.noise.red = e.red, e.red
	for rule, ps := range cfg.Patterns {
		for _, p := range ps {
			pp, _ := parsePattern(p) // checked by normalize
			e.patterns[rule] = append(e.patterns[rule], pp)
		}
	}
	go e.run()
	return e, nil
}

func (e *Engine) run() {
	defer close(e.done)
	for {
		select {
		case it := <-e.queue:
			e.handle(it)
		case <-e.quit:
			// Finish what was queued before Close.
			for {
				select {
				case it := <-e.queue:
					e.handle(it)
				default:
					return
				}
			}
		}
	}
}

func (e *Engine) handle(it item) {
	if it.flush != nil {
		close(it.flush)
		return
	}
	e.Add(it.ex)
}

// Submit queues ex for the engine's goroutine and reports whether it was
// taken. It never blocks: when the queue is full (or the engine closed),
// ex is dropped and counted.
func (e *Engine) Submit(ex *Exchange) bool {
	if ex == nil || e.closed.Load() {
		e.dropped.Add(1)
		return false
	}
	select {
	case e.queue <- item{ex: ex}:
		return true
	default:
		e.dropped.Add(1)
		return false
	}
}

// Dropped returns how many exchanges Submit dropped.
func (e *Engine) Dropped() uint64 { return e.dropped.Load() }

// Sync waits until every exchange submitted before it has been compared.
// It waits for room in the queue, so it is for shutdown and tests, not for
// the capture path.
func (e *Engine) Sync() {
	if e.closed.Load() {
		return
	}
	ch := make(chan struct{})
	select {
	case e.queue <- item{flush: ch}:
	case <-e.done:
		return
	}
	select {
	case <-ch:
	case <-e.done:
	}
}

// Close compares what was queued, stops the engine's goroutine and frees
// its decoders. Report, Handler and VisitVerdicts keep working after.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		close(e.quit)
		<-e.done
		e.mu.Lock()
		e.cmp.dec.close()
		e.mu.Unlock()
	})
}

// Add compares ex now, on the caller's goroutine: for replays and tests.
func (e *Engine) Add(ex *Exchange) {
	if ex == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.add(ex)
}

func (e *Engine) rule(name string) *ruleState {
	if rs := e.rules[name]; rs != nil {
		return rs
	}
	if len(e.ruleList) >= e.cfg.MaxRules {
		name = otherPath
		if rs := e.rules[name]; rs != nil {
			return rs
		}
	}
	rs := &ruleState{
		name: name,
		eps:  make(map[string]*endpoint),
		tpl: templater{
			patterns: append(append([]pattern(nil), e.patterns[name]...), e.patterns["*"]...),
			card:     e.cfg.Cardinality,
			maxNodes: 16 * e.cfg.MaxEndpoints,
		},
	}
	e.rules[name] = rs
	e.ruleList = append(e.ruleList, rs)
	return rs
}

// endpoint returns the endpoint of a request.
func (e *Engine) endpoint(rs *ruleState, method, target string) *endpoint {
	tmpl, folded, fixed := rs.tpl.template(e.tbuf[:0], pathOnly(target))
	e.tbuf = tmpl
	if folded {
		e.retemplate(rs)
	}
	e.kbuf = append(append(append(e.kbuf[:0], method...), ' '), tmpl...)
	if ep := rs.eps[string(e.kbuf)]; ep != nil {
		return ep
	}
	if len(rs.list) >= e.cfg.MaxEndpoints {
		if rs.overflow == nil {
			rs.overflow = newEndpoint(rs, otherMethod, otherPath, otherMethod+" "+otherPath, true)
		}
		return rs.overflow
	}
	ep := newEndpoint(rs, method, string(tmpl), string(e.kbuf), fixed)
	rs.eps[ep.key] = ep
	rs.list = append(rs.list, ep)
	return ep
}

// retemplate moves the endpoints of rs whose templates a fold changed,
// merging those that now share one.
func (e *Engine) retemplate(rs *ruleState) {
	kept := rs.list[:0]
	for _, ep := range rs.list {
		if ep.fixed {
			kept = append(kept, ep)
			continue
		}
		t := rs.tpl.resolve(ep.segs)
		if t == ep.template {
			kept = append(kept, ep)
			continue
		}
		delete(rs.eps, ep.key)
		key := ep.method + " " + t
		if into := rs.eps[key]; into != nil {
			into.merge(ep, e.cfg.MaxFields, e.cfg.SamplesPerField)
			continue
		}
		ep.template, ep.key = t, key
		ep.segs = strings.Split(strings.TrimPrefix(t, "/"), "/")
		rs.eps[key] = ep
		kept = append(kept, ep)
	}
	clear(rs.list[len(kept):])
	rs.list = kept
}

func (e *Engine) add(ex *Exchange) {
	at := ex.Time
	if at.IsZero() {
		at = e.cfg.Now()
	}
	rs := e.rule(ex.Rule)
	if ex.ShadowURL != "" && ex.ShadowURL != rs.shadowURL {
		rs.shadowURL = ex.ShadowURL
	}
	ep := e.endpoint(rs, ex.Method, ex.Path)
	ep.exchanges++
	e.tot.exchanges++
	if a := ex.Primary; a != nil {
		ep.statusP[a.Status]++
		if ex.PrimaryLatency > 0 {
			ep.latP.observe(ex.PrimaryLatency)
		}
	}
	if a := ex.Shadow; a != nil {
		ep.statusS[a.Status]++
		if ex.ShadowLatency > 0 {
			ep.latS.observe(ex.ShadowLatency)
		}
	}

	var pv view
	if ex.Primary != nil {
		pv = e.cmp.view(ex.Primary, &e.bufP)
		// Noise, Diffy's way: the same request answered by a second copy
		// of the current release.
		if ex.Secondary != nil {
			xv := e.cmp.view(ex.Secondary, &e.bufX)
			e.noisePair(ep, &pv, &xv)
			e.tot.secondary++
		}
		// Noise, learned: the primary's last answer to an equal request.
		k := keyOf(ex)
		hk := e.cache.hash(&k)
		if old := e.cache.get(&k, hk, at); old != nil {
			e.noisePair(ep, &old.v, &pv)
			e.cache.resize(old, at)
		}
		e.cache.put(&k, hk, at, &pv)
	}

	if ex.Primary == nil || ex.Shadow == nil {
		ep.verdicts[verdictUnpaired]++
		e.tot.verdicts[verdictUnpaired]++
		return
	}
	sv := e.cmp.view(ex.Shadow, &e.bufS)
	e.pair.reset(true)
	e.cmp.compare(&pv, &sv, &e.pair)
	ep.compared++
	e.tot.compared++
	if e.pair.truncated {
		ep.truncated++
		e.tot.truncated++
	}
	v := e.judgePair(ep, ex, at)
	ep.verdicts[v]++
	e.tot.verdicts[v]++
	if v == verdictDifferent {
		e.different(rs, ep, ex, &pv, &sv, at)
	}
}

// noisePair counts the fields in which two answers of the current release
// differ.
func (e *Engine) noisePair(ep *endpoint, a, b *view) {
	e.noise.reset(false)
	e.cmp.compare(a, b, &e.noise)
	ep.noisePairs++
	e.tot.noisePairs++
	e.seq++
	for i := range e.noise.recs {
		f := ep.fieldFor(e.noise.get(e.noise.recs[i].tmpl), e.cfg.MaxFields)
		if f.noiseSeen != e.seq {
			f.noiseSeen = e.seq
			f.noiseCount++
		}
	}
}

// judgePair counts the differences of the pair in e.pair and returns its
// verdict.
func (e *Engine) judgePair(ep *endpoint, ex *Exchange, at time.Time) verdict {
	recs := e.pair.recs
	if len(recs) == 0 {
		return verdictSame
	}
	e.seq++
	e.fbuf = e.fbuf[:0]
	for i := range recs {
		r := &recs[i]
		f := ep.fieldFor(e.pair.get(r.tmpl), e.cfg.MaxFields)
		e.fbuf = append(e.fbuf, f)
		if f.seen != e.seq {
			f.seen = e.seq
			f.count++
			f.kinds[r.kind]++
			if len(f.samples) < e.cfg.SamplesPerField && e.sampleBytes < e.cfg.MaxSampleBytes {
				s := e.sample(r, ex, at)
				f.samples = append(f.samples, s)
				e.sampleBytes += s.size()
			}
		}
	}
	for _, f := range e.fbuf {
		if e.judge(ep, f) {
			return verdictDifferent
		}
	}
	return verdictNoiseOnly
}

// rates returns a field's difference and noise rates.
func rates(ep *endpoint, f *field) (diff, noise float64) {
	if ep.compared > 0 {
		diff = float64(f.count) / float64(ep.compared)
	}
	if ep.noisePairs > 0 {
		noise = float64(f.noiseCount) / float64(ep.noisePairs)
	}
	return diff, noise
}

// judge reports whether a field differs beyond its noise: Diffy's rule on
// rates. See the package documentation.
func (e *Engine) judge(ep *endpoint, f *field) bool {
	d, n := rates(ep, f)
	return d > n && (d-n)/(d+n) > e.cfg.RelativeThreshold && d-n > e.cfg.AbsoluteThreshold
}

func (e *Engine) sample(r *record, ex *Exchange, at time.Time) sample {
	s := sample{
		inst:      string(e.pair.get(r.inst)),
		kind:      r.kind,
		line:      int(r.line),
		method:    ex.Method,
		target:    capString(ex.Path, 512),
		at:        at,
		truncated: e.pair.truncated,
	}
	if r.hasA {
		v := string(e.pair.get(r.va))
		s.va = &v
	}
	if r.hasB {
		v := string(e.pair.get(r.vb))
		s.vb = &v
	}
	return s
}

func capString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// different handles a pair judged different: the log line, and the
// endpoint's example when it has none that still shows a difference.
func (e *Engine) different(rs *ruleState, ep *endpoint, ex *Exchange, pv, sv *view, at time.Time) {
	if e.cfg.Log != nil {
		e.logPair(rs, ep, ex, pv, sv, at)
	}
	if ep.example != nil && e.current(ep, ep.example) {
		return
	}
	var old int64
	if ep.example != nil {
		old = ep.example.size
	}
	if e.sampleBytes-old >= e.cfg.MaxSampleBytes {
		return
	}
	x := e.makeExample(rs, ep, ex, pv, sv, at)
	e.sampleBytes += x.size - old
	ep.example = x
}

// VisitVerdicts calls fn with the count of every verdict of every
// endpoint (rule, "METHOD /template", verdict), for
// shadowtee_compare_total{rule,endpoint,verdict}. Counts only grow, except
// that when a path position folds into {id} the endpoints it merges stop
// being visited and their counts move to the merged one.
func (e *Engine) VisitVerdicts(fn func(rule, endpoint, verdict string, n uint64)) {
	e.mu.Lock()
	type row struct {
		rule, ep string
		v        [nVerdicts]uint64
	}
	rows := make([]row, 0, 64)
	for _, rs := range e.ruleList {
		for _, ep := range rs.list {
			rows = append(rows, row{rs.name, ep.key, ep.verdicts})
		}
		if ep := rs.overflow; ep != nil {
			rows = append(rows, row{rs.name, ep.key, ep.verdicts})
		}
	}
	e.mu.Unlock()
	for _, r := range rows {
		for v, n := range r.v {
			fn(r.rule, r.ep, verdictNames[v], n)
		}
	}
}
