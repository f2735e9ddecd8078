package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/h2frame"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
	"github.com/shadowtee/shadowtee/shadow"
)

// mirror is the back half of the pipeline, shared by every shard: it picks
// the rule of each framed request, samples it, and sends it to that rule's
// shadow. The rules can be replaced while requests flow (hot reload).
type mirror struct {
	framing httpframe.Stats
	http2   h2frame.Stats
	answers httpframe.ResponseStats
	// budget is what both framers may hold for requests still arriving
	// (--max-buffered), over all connections.
	budget     *httpframe.Budget
	budgetOnce sync.Once
	// wait makes Emit wait for room in the sender instead of dropping: for
	// capture files, never for live capture.
	wait    bool
	waitCtx context.Context
	drain   time.Duration
	log     *slog.Logger

	// table is the rules in force. Keep reads it once per request.
	table atomic.Pointer[routeTable]
	// skipped counts the requests that Keep refused, by reason.
	skipped [numSkipReasons]atomic.Uint64
	// cmp compares answers, for the rules that ask (nil: none may).
	cmp *comparer
	// compareAll makes every rule compare (--compare).
	compareAll bool
	// secondaryURL is where compared requests go a second time, if set.
	secondaryURL string

	mu      sync.Mutex            // serialises apply and close
	byName  map[string]*ruleStats // counters per rule name, kept across reloads
	names   []string              // rule names in order of first appearance
	retired sync.WaitGroup        // senders of replaced rules still draining
	closed  bool
	// hold, for a live capture, lets the senders' answers wait for the
	// capture's next look at its ring.
	hold *shadow.AnswerHold
}

// routeTable is one configuration's rules, compiled. It never changes.
type routeTable struct {
	file   *config.File
	router *config.Router
	routes []*route // by rule index
}

// route is one rule's way to its shadow.
type route struct {
	rule     config.Rule
	sampler  *shadow.Sampler
	rewriter *shadow.Rewriter
	sender   shadow.Sender // HTTP/1.1 to the shadow
	http2    shadow.Sender // HTTP/2 to the shadow
	stats    *ruleStats
	// compare is set when the rule's answers are compared; secondary,
	// when they are compared with a second copy of the current release
	// too.
	compare   bool
	secondary shadow.Sender
}

// senders returns the route's senders.
func (r *route) senders() []shadow.Sender {
	if r.secondary != nil {
		return []shadow.Sender{r.sender, r.http2, r.secondary}
	}
	return []shadow.Sender{r.sender, r.http2}
}

// senderFor returns the sender that takes r: the one of the protocol r was
// captured in, unless the rule names the shadow's protocol. It returns nil
// for a gRPC call and a shadow that speaks only HTTP/1.1.
func (r *route) senderFor(req httpmsg.Request) shadow.Sender {
	switch r.rule.Shadow.Protocol {
	case config.ProtocolHTTP1:
		if req.Proto() == httpmsg.HTTP2 && isGRPC(req) {
			return nil
		}
		return r.sender
	case config.ProtocolHTTP2:
		return r.http2
	}
	if req.Proto() == httpmsg.HTTP2 {
		return r.http2
	}
	return r.sender
}

// ruleStats counts what happened to the requests of one rule (by name).
type ruleStats struct {
	name       string
	matched    atomic.Uint64
	sampledOut atomic.Uint64
	shadow     shadow.Stats // the HTTP/1.1 sender's
	shadow2    shadow.Stats // the HTTP/2 sender's
	secondary  shadow.Stats // the secondary's, when answers are compared with one
}

func newMirror(log *slog.Logger, drain time.Duration) *mirror {
	return &mirror{log: log, drain: drain, byName: map[string]*ruleStats{}, waitCtx: context.Background()}
}

// apply makes f the rules in force. Rules that did not change keep their
// sender (and its connections); the senders of rules that changed or went
// away drain in the background. It returns an error, and changes nothing,
// when f cannot be used.
func (m *mirror) apply(f *config.File) error {
	router, err := config.Compile(f)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("closed")
	}
	old := m.table.Load()
	t := &routeTable{file: f, router: router, routes: make([]*route, len(f.Rules))}
	var fresh []*route
	for i := range f.Rules {
		rule := &f.Rules[i]
		if old != nil {
			if j := slices.IndexFunc(old.routes, func(r *route) bool { return r.rule.Equal(rule) }); j >= 0 {
				t.routes[i] = old.routes[j]
				continue
			}
		}
		rt, err := m.newRoute(rule)
		if err != nil {
			for _, r := range fresh {
				for _, s := range r.senders() {
					s.Close(closedContext())
				}
			}
			return err
		}
		fresh = append(fresh, rt)
		t.routes[i] = rt
	}
	m.table.Store(t)
	if old != nil {
		for _, r := range old.routes {
			if !slices.Contains(t.routes, r) {
				m.retire(r)
			}
		}
	}
	return nil
}

func (m *mirror) newRoute(rule *config.Rule) (*route, error) {
	sampler, err := shadow.NewSampler(rule.Percentage, rule.SampleKey)
	if err != nil {
		return nil, fmt.Errorf("rule %q: %w", rule.Name, err)
	}
	rw, err := shadow.NewRewriter(rewriteConfig(rule))
	if err != nil {
		return nil, fmt.Errorf("rule %q: %w", rule.Name, err)
	}
	st := m.byName[rule.Name]
	if st == nil {
		st = &ruleStats{name: rule.Name}
		m.byName[rule.Name] = st
		m.names = append(m.names, rule.Name)
	}
	rt := &route{rule: *rule, sampler: sampler, rewriter: rw, stats: st,
		compare: m.cmp != nil && (m.compareAll || rule.Compare != nil)}
	sc := senderConfig(rule)
	sc.Rewriter, sc.Stats, sc.Hold = rw, &st.shadow, m.hold
	if m.wait {
		sc.Wait = m.waitCtx
	}
	if rt.compare {
		sc.Answer = func(tag any, a *httpmsg.Answer, _ shadow.FailReason, _ bool) {
			if x := exchangeOf(tag); x != nil {
				x.shadow(a)
			}
		}
		sc.AnswerBodyCap = m.cmp.bodyCap
	}
	if rt.sender, err = shadow.NewHTTP1(sc); err != nil {
		return nil, fmt.Errorf("rule %q: shadow %s: %w", rule.Name, rule.Shadow.URL, err)
	}
	sc2 := sc
	sc2.Stats = &st.shadow2
	if rt.http2, err = shadow.NewHTTP2(sc2); err != nil {
		rt.sender.Close(closedContext())
		return nil, fmt.Errorf("rule %q: shadow %s: %w", rule.Name, rule.Shadow.URL, err)
	}
	if rt.compare && m.secondaryURL != "" {
		// The secondary gets what the shadow gets, and its answers teach
		// the comparison what differs between two copies of one release.
		sc.URL, sc.Stats = m.secondaryURL, &st.secondary
		sc.Answer = func(tag any, a *httpmsg.Answer, _ shadow.FailReason, _ bool) {
			if x := exchangeOf(tag); x != nil {
				x.second(a)
			}
		}
		if rt.secondary, err = shadow.NewHTTP1(sc); err != nil {
			rt.sender.Close(closedContext())
			rt.http2.Close(closedContext())
			return nil, fmt.Errorf("rule %q: secondary %s: %w", rule.Name, m.secondaryURL, err)
		}
	}
	return rt, nil
}

// retire lets a replaced rule's requests in flight finish, then closes its
// sender. Requests that reach it afterwards are counted as dropped.
func (m *mirror) retire(r *route) {
	m.retired.Add(1)
	go func() {
		defer m.retired.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.drain)
		defer cancel()
		for _, s := range r.senders() {
			if err := s.Close(ctx); err != nil {
				m.log.Warn("retired rule drain", "rule", r.rule.Name, "err", err)
			}
		}
	}()
}

// keep is the framers' Keep: it routes the request by the rules in force
// and applies the rule's sampling. The tag is the route, so that a reload
// between Keep and Emit still sends the request where Keep decided.
func (m *mirror) keep(r httpmsg.Request) (any, bool) {
	t := m.table.Load()
	if shadow.IsShadowed(r.Authority()) {
		// A mirror itself: mirroring it again would loop when a shadow
		// listens on a watched port of a watched node.
		m.skipped[skipShadowed].Add(1)
		return nil, false
	}
	i, ok := t.router.Match(r)
	if !ok {
		m.skipped[skipNoRule].Add(1)
		return nil, false
	}
	rt := t.routes[i]
	rt.stats.matched.Add(1)
	if !rt.sampler.Keep(r) {
		rt.stats.sampledOut.Add(1)
		m.skipped[skipSampled].Add(1)
		return nil, false
	}
	if rt.compare {
		if x := m.cmp.start(rt); x != nil {
			return x, true
		}
	}
	return rt, true
}

// emit is the framers' Emit: it hands the request to the sender of the
// route that Keep chose, by protocol (route.senderFor).
func (m *mirror) emit(r httpmsg.Request, tag any) {
	rt, x := routeOf(tag), exchangeOf(tag)
	sender := rt.senderFor(r)
	if sender == nil {
		// gRPC needs HTTP/2 to the shadow, and the rule says it speaks
		// HTTP/1.1 only: counted, not sent as HTTP/1.
		m.skipped[skipProtocolMismatch].Add(1)
		if x != nil {
			x.drop(false)
		}
		r.Release()
		return
	}
	if x == nil {
		sender.Send(r, nil)
		return
	}
	x.request(r)
	if rt.secondary != nil {
		if h1, ok := r.(*httpframe.Request); ok {
			if !rt.secondary.Send(h1.Clone(), x) {
				x.second(nil)
			}
		} else {
			x.second(nil) // only HTTP/1 requests can go twice
		}
	}
	if !sender.Send(r, x) {
		x.shadow(nil)
	}
}

// dropKept is the framers' Drop: a kept request will not be emitted after
// all. answered says whether its framer still answers it (HTTP/1).
func (m *mirror) dropKept(tag any, answered bool) {
	if x := exchangeOf(tag); x != nil {
		x.drop(answered)
	}
}

// isGRPC reports whether r is a gRPC call: its content type is
// application/grpc, alone or with a +suffix or parameters.
func isGRPC(r httpmsg.Request) bool {
	ct, ok := r.Header("content-type")
	if !ok || !httpsyntax.HasPrefixFold(ct, "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return len(rest) == 0 || rest[0] == '+' || rest[0] == ';'
}

// budgetFor returns the one budget of --max-buffered that both framers
// charge what they hold to, made on first use; nil without a cap.
func (m *mirror) budgetFor(lim Limits) *httpframe.Budget {
	if lim.MaxBuffered <= 0 {
		return nil
	}
	m.budgetOnce.Do(func() { m.budget = httpframe.NewBudget(lim.MaxBuffered) })
	return m.budget
}

// framingConfig returns the HTTP/1 framing configuration whose callbacks
// feed this mirror.
func (m *mirror) framingConfig(lim Limits) *httpframe.Config {
	return &httpframe.Config{
		MaxHeaderBytes: lim.MaxHeader,
		MaxBodyBytes:   lim.MaxBody,
		Budget:         m.budgetFor(lim),
		Stats:          &m.framing,
		Keep:           func(r *httpframe.Request) (any, bool) { return m.keep(r) },
		Emit:           func(r *httpframe.Request, tag any) { m.emit(r, tag) },
		Drop:           func(tag any) { m.dropKept(tag, true) },
	}
}

// http2Config returns the HTTP/2 framing configuration whose callbacks
// feed this mirror. When answers are compared, it frames the servers'
// answers too.
func (m *mirror) http2Config(lim Limits) *h2frame.Config {
	cfg := &h2frame.Config{
		MaxHeaderListSize: lim.MaxHeader,
		MaxBodyBytes:      lim.MaxBody,
		Stats:             &m.http2,
		Keep:              m.keep,
		Emit:              m.emit,
		Drop:              func(tag any, _ h2frame.Reason) { m.dropKept(tag, false) },
	}
	if b := m.budgetFor(lim); b != nil {
		cfg.Budget = b // not a nil *Budget in the interface: no charging for nothing
	}
	if m.cmp != nil {
		cfg.Answer = primaryAnswer
		cfg.AnswerBodyCap = m.cmp.bodyCap
	}
	return cfg
}

// answersConfig returns how the servers' HTTP/1 answers are framed, or nil
// when none are compared.
func (m *mirror) answersConfig(lim Limits) *httpframe.ResponseConfig {
	if m.cmp == nil {
		return nil
	}
	return &httpframe.ResponseConfig{
		MaxHeaderBytes: lim.MaxHeader,
		BodyCap:        m.cmp.bodyCap,
		Answer:         primaryAnswer,
		Stats:          &m.answers,
	}
}

// primaryAnswer hands the primary's answer, as captured, to its exchange.
func primaryAnswer(tag any, a *httpmsg.Answer) {
	if x := exchangeOf(tag); x != nil {
		x.primary(a)
	}
}

// rules returns the counters of every rule seen, in order of appearance.
func (m *mirror) rules() []*ruleStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*ruleStats, 0, len(m.names))
	for _, n := range m.names {
		out = append(out, m.byName[n])
	}
	return out
}

// totals returns the requests queued and mirrored over all rules.
func (m *mirror) totals() (queued, mirrored uint64) {
	for _, r := range m.rules() {
		queued += r.shadow.Queued.Load() + r.shadow2.Queued.Load()
		mirrored += r.shadow.Mirrored.Load() + r.shadow2.Mirrored.Load()
	}
	return queued, mirrored
}

// close stops accepting requests and waits for those in flight until ctx
// ends; what is still in flight then is counted as failed (shutdown).
func (m *mirror) close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	t := m.table.Load()
	m.mu.Unlock()
	var errs []error
	if t != nil {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, r := range t.routes {
			for _, s := range r.senders() {
				wg.Go(func() {
					if err := s.Close(ctx); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
	}
	m.retired.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// skipReason says why Keep refused a request. The framers count their own
// reasons (httpframe.Reason); these are the mirror's decisions.
type skipReason uint8

const (
	skipSampled          skipReason = iota // the rule's percentage left it out
	skipNoRule                             // no rule matches it
	skipShadowed                           // it is a mirror itself (Host ends in -shadow)
	skipProtocolMismatch                   // gRPC, and the rule's shadow speaks HTTP/1.1 only
	numSkipReasons
)

var skipNames = [numSkipReasons]string{"sampled", "no_rule", "already_shadowed", "protocol_mismatch"}

func (r skipReason) String() string { return skipNames[r] }

// closeCompare compares what was submitted and stops the engine, once no
// answer can come any more.
func (m *mirror) closeCompare() {
	if m.cmp != nil {
		m.cmp.engine.Close()
	}
}

// compareHandler serves /api/compare and /compare, or is nil.
func (m *mirror) compareHandler() http.Handler {
	if m.cmp == nil {
		return nil
	}
	return m.cmp.engine.Handler()
}
