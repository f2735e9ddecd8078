package compare

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/httpmsg"
)

func TestNoiseFromRepeatedRequests(t *testing.T) {
	e := newEngine(t, Config{})
	// The same request, 21 times: the primary's ts changes from one
	// answer to the next (noise); the shadow's price differs always.
	for i := range 21 {
		p := jsonAns(200, fmt.Sprintf(`{"id":42,"ts":%d,"price":10}`, i))
		s := jsonAns(200, fmt.Sprintf(`{"id":42,"ts":%d,"price":11}`, 1000+i))
		e.Add(exchange(i, "GET", "/items/42", p, s))
	}
	ep := endpointOf(t, e.Report(), "GET", "/items/{id}")
	if ep.Compared != 21 || ep.NoisePairs != 20 {
		t.Fatalf("compared %d, noise pairs %d; want 21, 20", ep.Compared, ep.NoisePairs)
	}
	if got := paths(ep.Fields); !slices.Equal(got, []string{"body.price"}) {
		t.Errorf("fields judged different: %q, want [body.price]", got)
	}
	ts := fieldOf(ep.Noise, "body.ts")
	if ts == nil || ts.NoiseRate != 1 || ts.DiffRate != 1 {
		t.Fatalf("body.ts not judged noise: %+v (noise %q)", ts, paths(ep.Noise))
	}
	if ep.Different != 21 {
		t.Errorf("different %d, want 21 (price differs in every pair)", ep.Different)
	}
	f := fieldOf(ep.Fields, "body.price")
	if f.Sample == nil || *f.Sample.Primary != "10" || *f.Sample.Shadow != "11" || f.Sample.Target != "/items/42" || f.Sample.Method != "GET" {
		t.Errorf("sample: %+v", f.Sample)
	}
	// The example was taken from the first pair, before ts was known to be
	// noise; it is shown as the fields are judged now.
	x := ep.Example
	if x == nil {
		t.Fatal("no example")
	}
	marks := map[string]string{}
	for _, p := range x.Shadow.Body {
		switch {
		case p.Diff:
			marks[p.Text] = "different"
		case p.Noise:
			marks[p.Text] = "noise"
		}
	}
	if marks["1000"] != "noise" || marks["11"] != "different" || len(marks) != 2 {
		t.Errorf("shadow body marks %v", marks)
	}
	for _, d := range x.Differences {
		if want := map[string]string{"body.ts": "noise", "body.price": "different"}[d.Path]; d.Verdict != want {
			t.Errorf("difference %s: verdict %s, want %s", d.Path, d.Verdict, want)
		}
	}
}

func TestNoiseOnlyVerdict(t *testing.T) {
	e := newEngine(t, Config{})
	for i := range 12 {
		p := jsonAns(200, fmt.Sprintf(`{"id":7,"generated":"t%d"}`, i))
		s := jsonAns(200, fmt.Sprintf(`{"id":7,"generated":"s%d"}`, i))
		e.Add(exchange(i, "GET", "/report", p, s))
	}
	ep := endpointOf(t, e.Report(), "GET", "/report")
	// The first pair comes before any noise is known.
	if ep.Different != 1 || ep.NoiseOnly != 11 || ep.Same != 0 {
		t.Errorf("different %d, noise_only %d, same %d; want 1, 11, 0", ep.Different, ep.NoiseOnly, ep.Same)
	}
	if len(ep.Fields) != 0 || fieldOf(ep.Noise, "body.generated") == nil {
		t.Errorf("fields %q, noise %q", paths(ep.Fields), paths(ep.Noise))
	}
	var n = map[string]uint64{}
	e.VisitVerdicts(func(rule, endpoint, verdict string, c uint64) {
		if rule == "api" && endpoint == "GET /report" {
			n[verdict] += c
		}
	})
	if n["different"] != 1 || n["noise_only"] != 11 || n["same"] != 0 || n["unpaired"] != 0 {
		t.Errorf("VisitVerdicts: %v", n)
	}
}

func TestNoiseWindowAndDistinctRequests(t *testing.T) {
	e := newEngine(t, Config{NoiseWindow: 10e9})
	p1 := jsonAns(200, `{"v":1}`)
	p2 := jsonAns(200, `{"v":2}`)
	// Another target, another body hash, or too late: no noise pair.
	e.Add(exchange(0, "GET", "/a?x=1", p1, p1))
	e.Add(exchange(1, "GET", "/a?x=2", p2, p2))
	x := exchange(2, "GET", "/a?x=1", p2, p2)
	x.BodyHash = 99
	e.Add(x)
	e.Add(exchange(60, "GET", "/a?x=1", p2, p2))
	if ep := endpointOf(t, e.Report(), "GET", "/a"); ep.NoisePairs != 0 {
		t.Errorf("noise pairs %d, want 0", ep.NoisePairs)
	}
	// Within the window, equal request: one noise pair.
	e.Add(exchange(65, "GET", "/a?x=1", p1, p1))
	if ep := endpointOf(t, e.Report(), "GET", "/a"); ep.NoisePairs != 1 || fieldOf(ep.Noise, "body.v") == nil {
		t.Errorf("noise pairs %d, noise %q; want 1, [body.v]", ep.NoisePairs, paths(ep.Noise))
	}
}

// secondaryRun sends n distinct requests: the shadow differs in field v in
// the first diff of them, the secondary in the first noise of them.
func secondaryRun(t *testing.T, cfg Config, n, diff, noise int) *EndpointReport {
	t.Helper()
	e := newEngine(t, cfg)
	for i := range n {
		p := jsonAns(200, `{"v":1}`)
		s, x := p, p
		if i < diff {
			s = jsonAns(200, `{"v":2}`)
		}
		if i < noise {
			x = jsonAns(200, `{"v":3}`)
		}
		ex := exchange(i, "GET", "/v", p, s)
		ex.BodyHash = uint64(i) // no repeats: the secondary is the only noise
		ex.Secondary = x
		e.Add(ex)
	}
	return endpointOf(t, e.Report(), "GET", "/v")
}

func TestThresholds(t *testing.T) {
	for _, tc := range []struct {
		name               string
		cfg                Config
		n, diff, noise     int
		different, pending bool
	}{
		{"no noise", Config{}, 20, 10, 0, true, false},
		// relative: (0.5-0.4)/(0.5+0.4) = 0.11 < 0.20
		{"relative below", Config{}, 20, 10, 8, false, false},
		// relative: (0.5-0.3)/(0.5+0.3) = 0.25 > 0.20
		{"relative above", Config{}, 20, 10, 6, true, false},
		// as much noise as difference
		{"all noise", Config{}, 20, 20, 20, false, false},
		// absolute: 0.04 - 0 < 0.05
		{"absolute below", Config{AbsoluteThreshold: 0.05}, 100, 4, 0, false, false},
		{"absolute above", Config{AbsoluteThreshold: 0.05}, 100, 6, 0, true, false},
		// fewer compared pairs than MinSamples: not judged yet
		{"pending", Config{MinSamples: 30}, 20, 10, 0, false, true},
		{"min samples reached", Config{MinSamples: 20}, 20, 10, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := secondaryRun(t, tc.cfg, tc.n, tc.diff, tc.noise)
			if got := fieldOf(ep.Fields, "body.v") != nil; got != tc.different {
				t.Errorf("judged different: %v, want %v (fields %q noise %q pending %q)", got, tc.different, paths(ep.Fields), paths(ep.Noise), paths(ep.Pending))
			}
			if got := fieldOf(ep.Pending, "body.v") != nil; got != tc.pending {
				t.Errorf("pending: %v, want %v", got, tc.pending)
			}
			if ep.Judged == tc.pending {
				t.Errorf("judged %v", ep.Judged)
			}
			if ep.NoisePairs != uint64(tc.n) {
				t.Errorf("noise pairs %d, want %d", ep.NoisePairs, tc.n)
			}
		})
	}
}

func TestUnpairedAndStatus(t *testing.T) {
	e := newEngine(t, Config{})
	ok := jsonAns(200, `{}`)
	e.Add(exchange(0, "GET", "/u", ok, nil))
	e.Add(exchange(1, "GET", "/u", nil, ok))
	e.Add(exchange(2, "GET", "/u", nil, nil))
	e.Add(exchange(3, "GET", "/u", ok, jsonAns(503, `{}`)))
	ep := endpointOf(t, e.Report(), "GET", "/u")
	if ep.Unpaired != 3 || ep.Compared != 1 || ep.Exchanges != 4 {
		t.Errorf("unpaired %d compared %d exchanges %d", ep.Unpaired, ep.Compared, ep.Exchanges)
	}
	if ep.Status.Primary["200"] != 2 || ep.Status.Shadow["200"] != 1 || ep.Status.Shadow["503"] != 1 {
		t.Errorf("status %+v", ep.Status)
	}
	if fieldOf(ep.Pending, "status") == nil {
		t.Errorf("status difference not recorded: %q", paths(ep.Pending))
	}
	if ep.LatencyMS.Primary.Count != 2 || ep.LatencyMS.Shadow.Count != 2 {
		t.Errorf("latency counts %+v", ep.LatencyMS)
	}
	if p50 := ep.LatencyMS.Primary.P50; p50 < 0.9 || p50 > 1.1 {
		t.Errorf("primary p50 %v ms, want about 1", p50)
	}
	if p50 := ep.LatencyMS.Shadow.P50; p50 < 1.8 || p50 > 2.2 {
		t.Errorf("shadow p50 %v ms, want about 2", p50)
	}
}

// pairFields compares one pair and returns the paths recorded.
func pairFields(t *testing.T, cfg Config, p, s string, pf, sf []string) []string {
	t.Helper()
	e := newEngine(t, cfg)
	e.Add(exchange(0, "GET", "/x", answer(200, p, pf...), answer(200, s, sf...)))
	ep := endpointOf(t, e.Report(), "GET", "/x")
	var out []string
	for _, l := range [][]FieldReport{ep.Fields, ep.Pending, ep.Noise} {
		out = append(out, paths(l)...)
	}
	slices.Sort(out)
	return out
}

func TestHeaders(t *testing.T) {
	base := []string{"Content-Type", "application/json", "Date", "Wed, 01 May 2024 12:00:00 GMT", "Server", "a1",
		"X-Request-Id", "r1", "traceparent", "00-1-2-01", "X-Envoy-Upstream-Service-Time", "3", "Content-Length", "2",
		"Set-Cookie", "session=abc; Path=/", "ETag", `"1"`, "Cache-Control", "no-store"}
	other := []string{"Cache-Control", "no-store", "Content-Type", "application/json", "Date", "Thu, 02 May 2024 12:00:00 GMT",
		"Server", "b2", "X-Request-Id", "r2", "traceparent", "00-3-4-01", "X-Envoy-Upstream-Service-Time", "9",
		"Content-Length", "3", "Set-Cookie", "session=xyz; Path=/; HttpOnly", "ETag", `"2"`}
	if got := pairFields(t, Config{}, `{}`, `{ }`, base, other); len(got) != 0 {
		t.Errorf("noise headers compared: %q", got)
	}
	if got := pairFields(t, Config{CompareHeaders: []string{"Date", "x-envoy-*"}}, `{}`, `{}`, base, other); !slices.Equal(got, []string{"header.date", "header.x-envoy-upstream-service-time"}) {
		t.Errorf("CompareHeaders: %q", got)
	}
	more := append(slices.Clone(other), "X-Build", "7", "Set-Cookie", "theme=dark")
	if got := pairFields(t, Config{}, `{}`, `{}`, base, more); !slices.Equal(got, []string{"header.set-cookie", "header.x-build"}) {
		t.Errorf("extra fields: %q", got)
	}
	if got := pairFields(t, Config{NoiseHeaders: []string{"X-Build", "set-cookie"}}, `{}`, `{}`, base, more); len(got) != 0 {
		t.Errorf("NoiseHeaders: %q", got)
	}
	// Content-Length counts when neither answer has a body.
	if got := pairFields(t, Config{}, ``, ``, []string{"Content-Length", "10"}, []string{"Content-Length", "12"}); !slices.Equal(got, []string{"header.content-length"}) {
		t.Errorf("bodiless answers: %q", got)
	}
	// Several fields of one name, compared as one list; case of names does
	// not matter.
	if got := pairFields(t, Config{}, ``, ``, []string{"Vary", "a", "vary", "b"}, []string{"VARY", "a", "Vary", "b"}); len(got) != 0 {
		t.Errorf("list fields: %q", got)
	}
	if got := pairFields(t, Config{}, ``, ``, []string{"Vary", "a", "vary", "b"}, []string{"Vary", "b", "Vary", "a"}); !slices.Equal(got, []string{"header.vary"}) {
		t.Errorf("list order: %q", got)
	}

	e := newEngine(t, Config{})
	e.Add(exchange(0, "GET", "/x", answer(200, "", base...), answer(200, "", more...)))
	ep := endpointOf(t, e.Report(), "GET", "/x")
	sc := fieldOf(ep.Pending, "header.set-cookie")
	if sc == nil || *sc.Sample.Primary != "session" || *sc.Sample.Shadow != "session; theme" || sc.Kind != "value" {
		t.Errorf("set-cookie compares names only: %+v", sc)
	}
	xb := fieldOf(ep.Pending, "header.x-build")
	if xb == nil || xb.Kind != "extra" || xb.Sample.Primary != nil || *xb.Sample.Shadow != "7" {
		t.Errorf("x-build: %+v", xb)
	}
}

func TestTrailers(t *testing.T) {
	e := newEngine(t, Config{})
	p, s := answer(200, "ok"), answer(200, "ok")
	p.Trailer = append(p.Trailer, fieldPair("grpc-status", "0"))
	s.Trailer = append(s.Trailer, fieldPair("grpc-status", "13"))
	e.Add(exchange(0, "POST", "/rpc", p, s))
	if got := paths(endpointOf(t, e.Report(), "POST", "/rpc").Pending); !slices.Equal(got, []string{"trailer.grpc-status"}) {
		t.Errorf("trailers: %q", got)
	}
}

func TestBodyKinds(t *testing.T) {
	text := []string{"Content-Type", "text/plain; charset=utf-8"}
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	bin := []string{"Content-Type", "application/octet-stream"}
	for _, tc := range []struct {
		name         string
		p, s         string
		pf, sf       []string
		want         string // path, kind, primary, shadow, line
		wantNoChange bool
	}{
		{name: "json by structure", p: `{"a":1.0,"b":[1,2]}`, s: `{"b":[1,2],"a":1}`, pf: []string{"Content-Type", "application/problem+json"}, sf: []string{"Content-Type", "application/problem+json"}, wantNoChange: true},
		{name: "json sniffed", p: `{"a":1}`, s: ` {"a": 1}`, wantNoChange: true},
		{name: "text lines", p: "one\ntwo\nthree\nfour\n", s: "one\ntwo\nTHREE\nfour\n", pf: text, sf: text, want: "body lines three THREE 3"},
		{name: "text insert", p: "a\nb\n", s: "a\nx\ny\nb\n", pf: text, sf: text, want: "body lines  x\ny 2"},
		{name: "form same", p: "a=1&b=2&b=3", s: "b=2&b=3&a=%31", pf: form, sf: form, wantNoChange: true},
		{name: "form value", p: "a=1&b=2", s: "a=1&b=5", pf: form, sf: form, want: "body.b value 2 5 0"},
		{name: "binary", p: "\x00\x01\x02", s: "\x00\x01\x03\x04", pf: bin, sf: bin, want: "body bytes 3 bytes, fnv64a 1f7b7e87ac6ae2f0 4 bytes, fnv64a 0"},
		{name: "json not json", p: `{"a":1}`, s: `{"a":`, pf: []string{"Content-Type", "application/json"}, sf: []string{"Content-Type", "application/json"}, want: "body lines {\"a\":1} {\"a\": 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			e.Add(exchange(0, "POST", "/b", answer(200, tc.p, tc.pf...), answer(200, tc.s, tc.sf...)))
			ep := endpointOf(t, e.Report(), "POST", "/b")
			if tc.wantNoChange {
				if ep.Same != 1 || len(ep.Pending) != 0 {
					t.Errorf("want same, got %q", paths(ep.Pending))
				}
				return
			}
			if len(ep.Pending) != 1 {
				t.Fatalf("fields %q", paths(ep.Pending))
			}
			f := ep.Pending[0]
			got := fmt.Sprintf("%s %s %s %s %d", f.Path, f.Kind, deref(f.Sample.Primary), deref(f.Sample.Shadow), f.Sample.Line)
			if strings.HasPrefix(tc.want, "body bytes") {
				// Hash values are what they are; check the shape.
				if f.Kind != "bytes" || !strings.HasPrefix(*f.Sample.Primary, "3 bytes, fnv64a ") || !strings.HasPrefix(*f.Sample.Shadow, "4 bytes") {
					t.Errorf("got %s", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestTruncatedBodies(t *testing.T) {
	full := `{"a":1,"items":[1,2,3,4,5,6,7,8,9],"z":true}`
	cut := func(s string, n int) *httpmsg.Answer {
		a := jsonAns(200, s[:n])
		a.BodyLen, a.Truncated = int64(len(s)), true
		return a
	}
	e := newEngine(t, Config{})
	// The primary's answer was cut; what both hold agrees.
	e.Add(exchange(0, "GET", "/t", cut(full, 20), jsonAns(200, full)))
	// The shadow's was, and a value in what both hold differs.
	e.Add(exchange(1, "GET", "/t", jsonAns(200, full), cut(strings.Replace(full, `"a":1`, `"a":2`, 1), 25)))
	ep := endpointOf(t, e.Report(), "GET", "/t")
	if ep.Truncated != 2 || ep.Same != 1 {
		t.Errorf("truncated %d same %d, want 2 1", ep.Truncated, ep.Same)
	}
	f := fieldOf(ep.Pending, "body.a")
	if f == nil || !f.Sample.Truncated || len(ep.Pending) != 1 {
		t.Fatalf("want only body.a, marked truncated: %q %+v", paths(ep.Pending), f)
	}
	if ex := ep.Example; ex == nil || !ex.Truncated || !ex.Shadow.Truncated {
		t.Errorf("example does not say truncated: %+v", ex)
	}
}

func TestReportSortedByShare(t *testing.T) {
	e := newEngine(t, Config{})
	same := jsonAns(200, `{"a":1}`)
	diff := jsonAns(200, `{"a":2}`)
	for i := range 4 {
		e.Add(exchange(i, "GET", "/rare", same, same))
		e.Add(exchange(i, "GET", "/often", same, diff))
	}
	e.Add(exchange(9, "GET", "/rare", same, diff))
	r := e.Report()
	var order []string
	for _, ep := range r.Endpoints {
		order = append(order, ep.Path)
	}
	if !slices.Equal(order, []string{"/often", "/rare"}) {
		t.Errorf("order %q", order)
	}
	if r.Totals.Compared != 9 || r.Totals.Different != 5 || r.Totals.Same != 4 || r.Totals.Endpoints != 2 {
		t.Errorf("totals %+v", r.Totals)
	}
	if r.Endpoints[1].DiffShare != 0.2 {
		t.Errorf("diff share %v", r.Endpoints[1].DiffShare)
	}
}

func TestCompareLog(t *testing.T) {
	var log strings.Builder
	e := newEngine(t, Config{Log: &log})
	e.Add(exchange(0, "GET", "/l", jsonAns(200, `{"a":1}`), jsonAns(200, `{"a":1}`)))
	e.Add(exchange(1, "GET", "/l", jsonAns(200, `{"a":1}`), jsonAns(500, `{"a":2}`)))
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %q", len(lines), log.String())
	}
	for _, want := range []string{`"endpoint":"GET /l"`, `"primary_status":200`, `"shadow_status":500`, `"path":"body.a"`, `"path":"status"`, `"verdict":"different"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line lacks %s: %s", want, lines[0])
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{RelativeThreshold: 1.5},
		{AbsoluteThreshold: -1},
		{MinSamples: -1},
		{NoiseHeaders: []string{"bad header"}},
		{RedactPaths: []string{"password"}},
		{Patterns: map[string][]string{"api": {"users/{id}"}}},
		{Patterns: map[string][]string{"api": {"/users/x*"}}},
		{Patterns: map[string][]string{"api": {"/users?q"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestMaxFields(t *testing.T) {
	e := newEngine(t, Config{MaxFields: 3})
	e.Add(exchange(0, "GET", "/f", jsonAns(200, `{"a":1,"b":1,"c":1,"d":1,"e":1}`), jsonAns(200, `{"a":2,"b":2,"c":2,"d":2,"e":2}`)))
	ep := endpointOf(t, e.Report(), "GET", "/f")
	if got := paths(ep.Pending); len(got) != 4 || !slices.Contains(got, "{other}") {
		t.Errorf("fields %q, want 3 and {other}", got)
	}
}
