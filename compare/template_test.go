package compare

import (
	"fmt"
	"slices"
	"testing"
)

func TestLooksLikeID(t *testing.T) {
	ids := []string{"0", "42", "123456789012", "550e8400-e29b-41d4-a716-446655440000", "550E8400-E29B-41D4-A716-446655440000",
		"5f1d7a3b", "507f1f77bcf86cd799439011", "da39a3ee5e6b4b0d3255bfef95601890afd80709",
		"01ARZ3NDEKTSV4RRFFQ69G5FAV", "2Xj7Kd9QpLm3Nz8Rt5Vw", "aGVsbG8gd29ybGQxMjM0NQ==", "dGhpcyBpcyBhIHRlc3Q_-x1"}
	words := []string{"", "users", "v1", "v2", "api", "orders", "deadbeef", "facade", "me", "search", "getUserPreferences",
		"2024-01-05", "abc123", "user_123", "index.html", "file.tar.gz", "%E2%82%AC"}
	for _, s := range ids {
		if !looksLikeID(s) {
			t.Errorf("%q: want id", s)
		}
	}
	for _, s := range words {
		if looksLikeID(s) {
			t.Errorf("%q: want literal", s)
		}
	}
}

func templates(t *testing.T, cfg Config, reqs ...string) []string {
	t.Helper()
	e := newEngine(t, cfg)
	ok := jsonAns(200, `{}`)
	for i, r := range reqs {
		var method, path string
		fmt.Sscan(r, &method, &path)
		e.Add(exchange(i, method, path, ok, ok))
	}
	var out []string
	for _, ep := range e.Report().Endpoints {
		out = append(out, fmt.Sprintf("%s %s %d", ep.Method, ep.Path, ep.Exchanges))
	}
	slices.Sort(out)
	return out
}

func TestTemplates(t *testing.T) {
	got := templates(t, Config{},
		"GET /users/42", "GET /users/43?expand=1", "GET /users/550e8400-e29b-41d4-a716-446655440000/orders",
		"GET /users/7/orders", "DELETE /users/9", "GET /blobs/da39a3ee5e6b4b0d3255bfef95601890afd80709",
		"GET /blobs/5f1d7a3b9c0e", "GET /t/2Xj7Kd9QpLm3Nz8Rt5Vw", "GET /users/me", "GET /", "OPTIONS *",
		"GET /users/", "GET /a//b", "GET http://api.example:8080/users/44?x=1", "GET https://h?q")
	want := []string{
		"DELETE /users/{id} 1", "GET / 2", "GET /a//b 1", "GET /blobs/{id} 2", "GET /t/{id} 1",
		"GET /users/ 1", "GET /users/me 1", "GET /users/{id} 3", "GET /users/{id}/orders 2", "OPTIONS * 1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestTemplateCardinality(t *testing.T) {
	var reqs []string
	// A popular literal next to many user names, and a fixed resource.
	for i := range 60 {
		reqs = append(reqs, "GET /profiles/search", fmt.Sprintf("GET /profiles/user%c%c/posts", 'a'+i%26, 'a'+i/26), "GET /health")
	}
	got := templates(t, Config{Cardinality: 8}, reqs...)
	want := []string{"GET /health 60", "GET /profiles/search 60", "GET /profiles/{id}/posts 60"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestTemplateFoldMerges(t *testing.T) {
	e := newEngine(t, Config{Cardinality: 4})
	p, s := jsonAns(200, `{"a":1}`), jsonAns(200, `{"a":2}`)
	for i, name := range []string{"anna", "bob", "carl", "dora", "emil", "fred"} {
		e.Add(exchange(i, "GET", "/people/"+name, p, s))
	}
	r := e.Report()
	if len(r.Endpoints) != 1 {
		t.Fatalf("endpoints %d, want 1", len(r.Endpoints))
	}
	ep := endpointOf(t, r, "GET", "/people/{id}")
	if ep.Exchanges != 6 || ep.Compared != 6 || ep.Different != 6 {
		t.Errorf("merged counts: %+v", ep)
	}
	if f := fieldOf(ep.Pending, "body.a"); f == nil || f.Count != 6 {
		t.Errorf("merged fields: %+v", ep.Pending)
	}
	n := uint64(0)
	e.VisitVerdicts(func(rule, endpoint, verdict string, c uint64) {
		if endpoint != "GET /people/{id}" {
			t.Errorf("visited %s", endpoint)
		}
		n += c
	})
	if n != 6 {
		t.Errorf("visited %d verdicts", n)
	}
}

func TestTemplatePatterns(t *testing.T) {
	cfg := Config{Patterns: map[string][]string{
		"api": {"/users/{user}/orders", "/files/*", "/v/*/x"},
		"*":   {"/static/*"},
	}}
	got := templates(t, cfg, "GET /users/alice/orders", "GET /users/bob/orders?page=2", "GET /files", "GET /files/a/b/c.txt",
		"GET /static/app.js", "GET /v/1/x", "GET /v/abc/x", "GET /v/abc/y", "GET /users/alice")
	want := []string{"GET /files/* 2", "GET /static/* 1", "GET /users/alice 1", "GET /users/{user}/orders 2", "GET /v/*/x 2", "GET /v/abc/y 1"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestTemplateBounds(t *testing.T) {
	var reqs []string
	for i := range 30 {
		reqs = append(reqs, fmt.Sprintf("GET /r%c/x", 'a'+i%26)+fmt.Sprint(i/26))
	}
	got := templates(t, Config{MaxEndpoints: 5, Cardinality: 100}, reqs...)
	if len(got) != 6 || got[0] != "* {other} 25" {
		t.Errorf("got %q, want 5 endpoints and {other} with the rest", got)
	}
	deep := "/a"
	for range 40 {
		deep += "/a"
	}
	if got := templates(t, Config{}, "GET "+deep); len(got) != 1 || len(got[0]) > 4+2*maxSegments+10 {
		t.Errorf("deep path: %q", got)
	}
}
