package compare

import (
	"strings"
	"time"
)

// verdict is the outcome of one exchange.
type verdict uint8

// Verdicts, as metrics label them.
const (
	verdictSame verdict = iota
	verdictDifferent
	verdictNoiseOnly
	verdictUnpaired
	nVerdicts
)

var verdictNames = [nVerdicts]string{"same", "different", "noise_only", "unpaired"}

// Verdicts returns the values of the verdict label, in a fixed order.
func Verdicts() []string { return append([]string(nil), verdictNames[:]...) }

// field is what is known of one field path of one endpoint.
type field struct {
	path       string
	count      uint64 // compared pairs in which it differed
	noiseCount uint64 // noise pairs in which it differed
	kinds      [nKinds]uint64
	seen       uint64 // the last pair that counted it (a sequence number)
	noiseSeen  uint64
	samples    []sample
}

// sample is one instance of a difference, redacted.
type sample struct {
	inst      string
	kind      diffKind
	va, vb    *string
	line      int
	method    string
	target    string
	at        time.Time
	truncated bool
}

func (s *sample) size() int64 {
	n := int64(len(s.inst) + len(s.method) + len(s.target) + 96)
	if s.va != nil {
		n += int64(len(*s.va))
	}
	if s.vb != nil {
		n += int64(len(*s.vb))
	}
	return n
}

// endpoint is what is known of one endpoint of one rule.
type endpoint struct {
	rule     *ruleState
	method   string
	template string
	key      string
	segs     []string // the template's segments, for re-templating
	fixed    bool     // from a pattern, or the overflow: never re-templated

	exchanges  uint64
	compared   uint64
	verdicts   [nVerdicts]uint64
	truncated  uint64
	noisePairs uint64

	fields    map[string]*field
	fieldList []*field

	statusP, statusS map[int]uint64
	latP, latS       histogram

	example *example
}

func newEndpoint(rs *ruleState, method, template, key string, fixed bool) *endpoint {
	ep := &endpoint{
		rule: rs, method: method, template: template, key: key, fixed: fixed,
		fields:  make(map[string]*field),
		statusP: make(map[int]uint64),
		statusS: make(map[int]uint64),
	}
	if !fixed {
		ep.segs = strings.Split(strings.TrimPrefix(template, "/"), "/")
	}
	return ep
}

// fieldFor returns the field at path, made if there is room; beyond
// maxFields the paths share the field "{other}".
func (ep *endpoint) fieldFor(path []byte, maxFields int) *field {
	if f := ep.fields[string(path)]; f != nil {
		return f
	}
	p := string(path)
	if len(ep.fieldList) >= maxFields {
		p = otherPath
		if f := ep.fields[p]; f != nil {
			return f
		}
	}
	f := &field{path: p}
	ep.fields[p] = f
	ep.fieldList = append(ep.fieldList, f)
	return f
}

// merge adds what src knows to ep: src's template folded into ep's.
func (ep *endpoint) merge(src *endpoint, maxFields, maxSamples int) {
	ep.exchanges += src.exchanges
	ep.compared += src.compared
	for i := range ep.verdicts {
		ep.verdicts[i] += src.verdicts[i]
	}
	ep.truncated += src.truncated
	ep.noisePairs += src.noisePairs
	for k, n := range src.statusP {
		ep.statusP[k] += n
	}
	for k, n := range src.statusS {
		ep.statusS[k] += n
	}
	ep.latP.merge(&src.latP)
	ep.latS.merge(&src.latS)
	for _, sf := range src.fieldList {
		f := ep.fieldFor([]byte(sf.path), maxFields)
		f.count += sf.count
		f.noiseCount += sf.noiseCount
		for i := range f.kinds {
			f.kinds[i] += sf.kinds[i]
		}
		for _, s := range sf.samples {
			if len(f.samples) < maxSamples {
				f.samples = append(f.samples, s)
			}
		}
	}
	if ep.example == nil {
		ep.example = src.example
	}
}

// ruleState is what is known of one rule.
type ruleState struct {
	name      string
	shadowURL string
	tpl       templater
	eps       map[string]*endpoint // by method + " " + template
	list      []*endpoint
	overflow  *endpoint
}
