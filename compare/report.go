package compare

import (
	"cmp"
	"encoding/json"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// Report is a snapshot of what an engine knows: the /api/compare
// document. The package documentation gives its schema.
type Report struct {
	GeneratedAt time.Time        `json:"generated_at"`
	Settings    Settings         `json:"settings"`
	Totals      Totals           `json:"totals"`
	Endpoints   []EndpointReport `json:"endpoints"`
}

// Settings are the numbers the verdicts were made with.
type Settings struct {
	MinSamples         int     `json:"min_samples"`
	RelativeThreshold  float64 `json:"relative_threshold"`
	AbsoluteThreshold  float64 `json:"absolute_threshold"`
	NoiseWindowSeconds float64 `json:"noise_window_seconds"`
}

// Totals count over every endpoint.
type Totals struct {
	Exchanges     uint64 `json:"exchanges"`
	Compared      uint64 `json:"compared"`
	Same          uint64 `json:"same"`
	Different     uint64 `json:"different"`
	NoiseOnly     uint64 `json:"noise_only"`
	Unpaired      uint64 `json:"unpaired"`
	Truncated     uint64 `json:"truncated"`
	NoisePairs    uint64 `json:"noise_pairs"`
	Secondary     uint64 `json:"secondary"`
	DecodeLimited uint64 `json:"decode_limited"`
	Dropped       uint64 `json:"dropped"`
	Endpoints     int    `json:"endpoints"`
}

// EndpointReport is one endpoint: a rule, a method and a path template.
type EndpointReport struct {
	Rule       string        `json:"rule"`
	Method     string        `json:"method"`
	Path       string        `json:"path"`
	Exchanges  uint64        `json:"exchanges"`
	Compared   uint64        `json:"compared"`
	Same       uint64        `json:"same"`
	Different  uint64        `json:"different"`
	NoiseOnly  uint64        `json:"noise_only"`
	Unpaired   uint64        `json:"unpaired"`
	Truncated  uint64        `json:"truncated"`
	NoisePairs uint64        `json:"noise_pairs"`
	DiffShare  float64       `json:"diff_share"`
	Judged     bool          `json:"judged"`
	Fields     []FieldReport `json:"fields"`
	Noise      []FieldReport `json:"noise"`
	Pending    []FieldReport `json:"pending"`
	Status     StatusCounts  `json:"status"`
	LatencyMS  Latency       `json:"latency_ms"`
	Example    *Example      `json:"example,omitempty"`
}

// FieldReport is one field path of an endpoint.
type FieldReport struct {
	Path       string            `json:"path"`
	Kind       string            `json:"kind"`
	Kinds      map[string]uint64 `json:"kinds"`
	Count      uint64            `json:"count"`
	NoiseCount uint64            `json:"noise_count"`
	DiffRate   float64           `json:"diff_rate"`
	NoiseRate  float64           `json:"noise_rate"`
	Sample     *Sample           `json:"sample,omitempty"`
	More       []Sample          `json:"more_samples,omitempty"`
}

// Sample is one instance of a difference. Primary and Shadow are null when
// that side does not hold the field.
type Sample struct {
	Path      string    `json:"path"`
	Kind      string    `json:"kind"`
	Primary   *string   `json:"primary"`
	Shadow    *string   `json:"shadow"`
	Line      int       `json:"line,omitempty"`
	Method    string    `json:"method"`
	Target    string    `json:"target"`
	Time      time.Time `json:"time"`
	Truncated bool      `json:"truncated,omitempty"`
}

// StatusCounts counts the status codes of each side.
type StatusCounts struct {
	Primary map[string]uint64 `json:"primary"`
	Shadow  map[string]uint64 `json:"shadow"`
}

// Latency holds the latency quantiles of each side, in milliseconds.
type Latency struct {
	Primary Quantiles `json:"primary"`
	Shadow  Quantiles `json:"shadow"`
}

// Quantiles of one side's latency, in milliseconds.
type Quantiles struct {
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Count uint64  `json:"count"`
}

// Example is one pair judged different, whole: both answers side by side,
// with the differing parts marked, and a curl line that replays the
// request against the shadow. Everything in it is redacted.
type Example struct {
	Time           time.Time    `json:"time"`
	Proto          string       `json:"proto"`
	Method         string       `json:"method"`
	Authority      string       `json:"authority"`
	Target         string       `json:"target"`
	RequestHeaders []Header     `json:"request_headers"`
	RequestBody    string       `json:"request_body,omitempty"`
	RequestBodyLen int64        `json:"request_body_len"`
	RequestNote    string       `json:"request_note,omitempty"`
	Curl           string       `json:"curl"`
	Primary        AnswerView   `json:"primary"`
	Shadow         AnswerView   `json:"shadow"`
	Differences    []Difference `json:"differences"`
	Truncated      bool         `json:"truncated,omitempty"`
}

// Header is one header field; Diff marks a field that differs and is
// judged different, Noise one that differs and is judged noise.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Diff  bool   `json:"diff,omitempty"`
	Noise bool   `json:"noise,omitempty"`
}

// AnswerView is one answer of an example. Body is its decoded body,
// indented when it is JSON, in parts: those with Diff set differ in a field
// judged different, those with Noise set in a field judged noise.
type AnswerView struct {
	Status      int        `json:"status"`
	StatusDiff  bool       `json:"status_diff,omitempty"`
	StatusNoise bool       `json:"status_noise,omitempty"`
	Headers     []Header   `json:"headers"`
	Body        []BodyPart `json:"body"`
	BodyLen     int64      `json:"body_len"`
	Encoding    string     `json:"encoding,omitempty"`
	Media       string     `json:"media"`
	Truncated   bool       `json:"truncated,omitempty"`
	Note        string     `json:"note,omitempty"`
}

// BodyPart is a piece of a body as shown.
type BodyPart struct {
	Text  string `json:"text"`
	Diff  bool   `json:"diff,omitempty"`
	Noise bool   `json:"noise,omitempty"`
}

// Difference is one difference of an example; Verdict is "different" or
// "noise", as the field was judged when the example was taken.
type Difference struct {
	Path    string  `json:"path"`
	Kind    string  `json:"kind"`
	Primary *string `json:"primary"`
	Shadow  *string `json:"shadow"`
	Line    int     `json:"line,omitempty"`
	Verdict string  `json:"verdict"`
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// Report returns a snapshot of what the engine knows, endpoints sorted by
// their share of different answers.
func (e *Engine) Report() *Report {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := &Report{
		GeneratedAt: e.cfg.Now().UTC(),
		Settings: Settings{
			MinSamples:         e.cfg.MinSamples,
			RelativeThreshold:  e.cfg.RelativeThreshold,
			AbsoluteThreshold:  e.cfg.AbsoluteThreshold,
			NoiseWindowSeconds: e.cfg.NoiseWindow.Seconds(),
		},
		Totals: Totals{
			Exchanges:     e.tot.exchanges,
			Compared:      e.tot.compared,
			Same:          e.tot.verdicts[verdictSame],
			Different:     e.tot.verdicts[verdictDifferent],
			NoiseOnly:     e.tot.verdicts[verdictNoiseOnly],
			Unpaired:      e.tot.verdicts[verdictUnpaired],
			Truncated:     e.tot.truncated,
			NoisePairs:    e.tot.noisePairs,
			Secondary:     e.tot.secondary,
			DecodeLimited: e.cmp.limited,
			Dropped:       e.dropped.Load(),
		},
		Endpoints: []EndpointReport{},
	}
	for _, rs := range e.ruleList {
		for _, ep := range rs.list {
			r.Endpoints = append(r.Endpoints, e.endpointReport(rs, ep))
		}
		if rs.overflow != nil {
			r.Endpoints = append(r.Endpoints, e.endpointReport(rs, rs.overflow))
		}
	}
	r.Totals.Endpoints = len(r.Endpoints)
	slices.SortStableFunc(r.Endpoints, func(a, b EndpointReport) int {
		if c := cmp.Compare(b.DiffShare, a.DiffShare); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Different, a.Different); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return cmp.Compare(a.Method, b.Method)
	})
	return r
}

func (e *Engine) endpointReport(rs *ruleState, ep *endpoint) EndpointReport {
	er := EndpointReport{
		Rule: rs.name, Method: ep.method, Path: ep.template,
		Exchanges: ep.exchanges, Compared: ep.compared,
		Same: ep.verdicts[verdictSame], Different: ep.verdicts[verdictDifferent],
		NoiseOnly: ep.verdicts[verdictNoiseOnly], Unpaired: ep.verdicts[verdictUnpaired],
		Truncated: ep.truncated, NoisePairs: ep.noisePairs,
		Judged:  ep.compared >= uint64(e.cfg.MinSamples),
		Fields:  []FieldReport{},
		Noise:   []FieldReport{},
		Pending: []FieldReport{},
		Status:  StatusCounts{Primary: statusMap(ep.statusP), Shadow: statusMap(ep.statusS)},
		LatencyMS: Latency{
			Primary: Quantiles{P50: ms(ep.latP.quantile(0.5)), P99: ms(ep.latP.quantile(0.99)), Count: ep.latP.n},
			Shadow:  Quantiles{P50: ms(ep.latS.quantile(0.5)), P99: ms(ep.latS.quantile(0.99)), Count: ep.latS.n},
		},
	}
	if ep.compared > 0 {
		er.DiffShare = round6(float64(er.Different) / float64(ep.compared))
	}
	if ep.example != nil {
		er.Example = e.marked(ep, ep.example)
	}
	for _, f := range ep.fieldList {
		fr := fieldReport(ep, f)
		switch {
		case f.count > 0 && !er.Judged:
			er.Pending = append(er.Pending, fr)
		case f.count > 0 && e.judge(ep, f):
			er.Fields = append(er.Fields, fr)
		default:
			er.Noise = append(er.Noise, fr)
		}
	}
	for _, l := range [][]FieldReport{er.Fields, er.Noise, er.Pending} {
		slices.SortStableFunc(l, func(a, b FieldReport) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			if c := cmp.Compare(b.NoiseCount, a.NoiseCount); c != 0 {
				return c
			}
			return cmp.Compare(a.Path, b.Path)
		})
	}
	return er
}

func fieldReport(ep *endpoint, f *field) FieldReport {
	d, n := rates(ep, f)
	fr := FieldReport{
		Path: f.path, Count: f.count, NoiseCount: f.noiseCount,
		DiffRate: round6(d), NoiseRate: round6(n),
		Kinds: map[string]uint64{},
	}
	var top uint64
	for k, c := range f.kinds {
		if c == 0 {
			continue
		}
		fr.Kinds[kindNames[k]] = c
		if c > top {
			top, fr.Kind = c, kindNames[k]
		}
	}
	if fr.Kind == "" {
		fr.Kind = "value"
	}
	for i := range f.samples {
		s := f.samples[i].export()
		if i == 0 {
			fr.Sample = &s
			continue
		}
		fr.More = append(fr.More, s)
	}
	return fr
}

func (s *sample) export() Sample {
	return Sample{
		Path: s.inst, Kind: s.kind.String(), Primary: s.va, Shadow: s.vb, Line: s.line,
		Method: s.method, Target: s.target, Time: s.at.UTC(), Truncated: s.truncated,
	}
}

func statusMap(m map[int]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, n := range m {
		out[strconv.Itoa(k)] = n
	}
	return out
}

// WriteJSON writes r as /api/compare serves it.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
