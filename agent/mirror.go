package agent

import (
	"context"
	"fmt"
	"log/slog"
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

	mu      sync.Mutex            // serialises apply and close
	byName  map[string]*ruleStats // counters per rule name, kept across reloads
	names   []string              // rule names in order of first appearance
	retired sync.WaitGroup        // senders of replaced rules still draining
	closed  bool
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
	sender   shadow.Sender
	stats    *ruleStats
}

// ruleStats counts what happened to the requests of one rule (by name).
type ruleStats struct {
	name       string
	matched    atomic.Uint64
	sampledOut atomic.Uint64
	shadow     shadow.Stats
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
				r.sender.Close(closedContext())
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
	sc := senderConfig(rule)
	sc.Rewriter, sc.Stats = rw, &st.shadow
	if m.wait {
		sc.Wait = m.waitCtx
	}
	sender, err := shadow.NewHTTP1(sc)
	if err != nil {
		return nil, fmt.Errorf("rule %q: shadow %s: %w", rule.Name, rule.Shadow.URL, err)
	}
	return &route{rule: *rule, sampler: sampler, rewriter: rw, sender: sender, stats: st}, nil
}

// retire lets a replaced rule's requests in flight finish, then closes its
// sender. Requests that reach it afterwards are counted as dropped.
func (m *mirror) retire(r *route) {
	m.retired.Add(1)
	go func() {
		defer m.retired.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.drain)
		defer cancel()
		if err := r.sender.Close(ctx); err != nil {
			m.log.Warn("retired rule drain", "rule", r.rule.Name, "err", err)
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
	return rt, true
}

// emit is the framers' Emit: it hands the request to the sender of the
// route that Keep chose.
func (m *mirror) emit(r httpmsg.Request, tag any) {
	rt := tag.(*route)
	if r.Proto() == httpmsg.HTTP2 && isGRPC(r) {
		// gRPC needs HTTP/2 to the shadow, which this sender does not
		// speak: counted, not sent as HTTP/1.
		m.skipped[skipProtocolMismatch].Add(1)
		r.Release()
		return
	}
	rt.sender.Send(r, nil)
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

// framingConfig returns the HTTP/1 framing configuration whose callbacks
// feed this mirror.
func (m *mirror) framingConfig(lim Limits) *httpframe.Config {
	var budget *httpframe.Budget
	if lim.MaxBuffered > 0 {
		budget = httpframe.NewBudget(lim.MaxBuffered)
	}
	return &httpframe.Config{
		MaxHeaderBytes: lim.MaxHeader,
		MaxBodyBytes:   lim.MaxBody,
		Budget:         budget,
		Stats:          &m.framing,
		Keep:           func(r *httpframe.Request) (any, bool) { return m.keep(r) },
		Emit:           func(r *httpframe.Request, tag any) { m.emit(r, tag) },
	}
}

// http2Config returns the HTTP/2 framing configuration whose callbacks
// feed this mirror.
func (m *mirror) http2Config(lim Limits) *h2frame.Config {
	return &h2frame.Config{
		MaxHeaderListSize: lim.MaxHeader,
		MaxBodyBytes:      lim.MaxBody,
		Stats:             &m.http2,
		Keep:              m.keep,
		Emit:              m.emit,
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
		queued += r.shadow.Queued.Load()
		mirrored += r.shadow.Mirrored.Load()
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
		errCh := make(chan error, len(t.routes))
		for _, r := range t.routes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errCh <- r.sender.Close(ctx)
			}()
		}
		wg.Wait()
		close(errCh)
		for err := range errCh {
			if err != nil {
				errs = append(errs, err)
			}
		}
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
	skipProtocolMismatch                   // gRPC, and the shadow is reached over HTTP/1
	numSkipReasons
)

var skipNames = [numSkipReasons]string{"sampled", "no_rule", "already_shadowed", "protocol_mismatch"}

func (r skipReason) String() string { return skipNames[r] }
