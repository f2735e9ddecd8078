package compare

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// answer builds an answer: header fields as name, value pairs.
func answer(status int, body string, fields ...string) *httpmsg.Answer {
	a := &httpmsg.Answer{Proto: httpmsg.HTTP11, Status: status, Body: []byte(body), BodyLen: int64(len(body))}
	for i := 0; i+1 < len(fields); i += 2 {
		a.Header = append(a.Header, httpmsg.Field{Name: []byte(fields[i]), Value: []byte(fields[i+1])})
	}
	return a
}

func jsonAns(status int, body string, fields ...string) *httpmsg.Answer {
	return answer(status, body, append([]string{"Content-Type", "application/json"}, fields...)...)
}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// exchange builds an exchange of rule "api" at t0 + n seconds.
func exchange(n int, method, path string, p, s *httpmsg.Answer) *Exchange {
	return &Exchange{
		Rule: "api", ShadowURL: "http://10.0.0.7:8000", Proto: httpmsg.HTTP11,
		Method: method, Authority: "api.example:8080", ShadowAuthority: "api.example-shadow:8080", Path: path,
		Header: []httpmsg.Field{
			{Name: []byte("Host"), Value: []byte("api.example:8080")},
			{Name: []byte("Accept"), Value: []byte("application/json")},
		},
		Primary: p, Shadow: s,
		PrimaryLatency: time.Millisecond, ShadowLatency: 2 * time.Millisecond,
		Time: t0.Add(time.Duration(n) * time.Second),
	}
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func endpointOf(t testing.TB, r *Report, method, path string) *EndpointReport {
	t.Helper()
	for i := range r.Endpoints {
		if r.Endpoints[i].Method == method && r.Endpoints[i].Path == path {
			return &r.Endpoints[i]
		}
	}
	var have []string
	for _, ep := range r.Endpoints {
		have = append(have, ep.Method+" "+ep.Path)
	}
	t.Fatalf("no endpoint %s %s; have %q", method, path, have)
	return nil
}

func fieldOf(l []FieldReport, path string) *FieldReport {
	for i := range l {
		if l[i].Path == path {
			return &l[i]
		}
	}
	return nil
}

func paths(l []FieldReport) []string {
	var out []string
	for _, f := range l {
		out = append(out, f.Path)
	}
	return out
}

func reportJSON(t testing.TB, r *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func fieldPair(name, value string) httpmsg.Field {
	return httpmsg.Field{Name: []byte(name), Value: []byte(value)}
}
