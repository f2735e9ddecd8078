package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/internal/recorder"
)

func rule(name, url string, port uint16, hosts ...string) config.Rule {
	return config.Rule{Name: name, Percentage: 100, HostSuffix: true, Headers: config.Headers{XForwardedFor: true},
		Match:  config.Match{Ports: []uint16{port}, Hosts: hosts},
		Shadow: config.Shadow{URL: url, Timeout: 5 * time.Second}}
}

// frame parses raw client bytes sent to server into requests, through the
// mirror's Keep and Emit.
func frame(m *mirror, server, raw string) {
	p := httpframe.NewParser(m.framingConfig(Limits{}), netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort(server), false)
	p.Data([]byte(raw), time.Now())
	p.End()
}

// Many reloads that change a rule leak nothing: each replaced sender is
// closed once its requests are done, so that goroutines and the rules'
// statistics come back to what one rule set holds, and every request
// reaches the shadow.
func TestMirrorManyReloads(t *testing.T) {
	recA, recB := recorder.New(nil), recorder.New(nil)
	srvA, srvB := httptest.NewServer(recA), httptest.NewServer(recB)
	defer srvA.Close()
	defer srvB.Close()
	m := newMirror(slog.Default(), 2*time.Second)
	apply := func(url string) {
		t.Helper()
		f := &config.File{Rules: []config.Rule{rule("a", srvA.URL, 80), rule("b", url, 81)}}
		if err := m.apply(f); err != nil {
			t.Fatal(err)
		}
	}
	apply(srvA.URL)
	frame(m, "198.18.0.2:81", "GET /warm HTTP/1.1\r\nHost: b.example\r\n\r\n")
	if !recA.Wait(context.Background(), 1, 5*time.Second) {
		t.Fatal("the first request was not mirrored")
	}
	m.retired.Wait()
	base := runtime.NumGoroutine()
	const reloads = 200
	for i := range reloads {
		url := srvA.URL
		if i%2 == 0 {
			url = srvB.URL
		}
		apply(url)
		frame(m, "198.18.0.2:81", fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: b.example\r\n\r\n", i))
	}
	apply(srvA.URL)
	if !recA.Wait(context.Background(), 1+reloads/2, 10*time.Second) || !recB.Wait(context.Background(), reloads/2, 10*time.Second) {
		t.Fatalf("shadows got %d and %d of %d", recA.Len(), recB.Len(), 1+reloads)
	}
	m.retired.Wait()
	// The shadows' keep-alive connections of the replaced senders are
	// closed, on both sides, shortly after the senders are.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+4 {
		t.Errorf("%d goroutines after %d reloads, %d before", n, reloads, base)
	}
	if n := len(m.rules()); n != 2 {
		t.Errorf("statistics kept for %d rules, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.close(ctx); err != nil {
		t.Fatal(err)
	}
}

// Reloading keeps the senders of unchanged rules, replaces changed ones
// after their requests in flight are done, and routes by the new rules at
// once.
func TestMirrorApplyReload(t *testing.T) {
	recA, recB := recorder.New(nil), recorder.New(nil)
	srvA, srvB := httptest.NewServer(recA), httptest.NewServer(recB)
	defer srvA.Close()
	defer srvB.Close()

	m := newMirror(slog.Default(), 2*time.Second)
	first := &config.File{Rules: []config.Rule{rule("a", srvA.URL, 80, "a.example"), rule("b", srvA.URL, 81)}}
	if err := m.apply(first); err != nil {
		t.Fatal(err)
	}
	senderA := m.table.Load().routes[0].sender
	frame(m, "198.18.0.2:80", "GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
	frame(m, "198.18.0.2:81", "GET /2 HTTP/1.1\r\nHost: b.example\r\n\r\n")
	frame(m, "198.18.0.2:80", "GET /3 HTTP/1.1\r\nHost: other.example\r\n\r\n") // matches no rule
	frame(m, "198.18.0.2:81", "GET /4 HTTP/1.1\r\nHost: b.example-shadow\r\n\r\n")
	if !recA.Wait(context.Background(), 2, 5*time.Second) {
		t.Fatalf("shadow A received %d of 2", recA.Len())
	}

	// b now goes to shadow B; a is unchanged; c is new.
	second := &config.File{Rules: []config.Rule{rule("a", srvA.URL, 80, "a.example"), rule("b", srvB.URL, 81), rule("c", srvB.URL, 82)}}
	if err := m.apply(second); err != nil {
		t.Fatal(err)
	}
	if m.table.Load().routes[0].sender != senderA {
		t.Error("the unchanged rule got a new sender")
	}
	frame(m, "198.18.0.2:81", "GET /5 HTTP/1.1\r\nHost: b.example\r\n\r\n")
	frame(m, "198.18.0.2:82", "GET /6 HTTP/1.1\r\nHost: c.example\r\n\r\n")
	if !recB.Wait(context.Background(), 2, 5*time.Second) {
		t.Fatalf("shadow B received %d of 2", recB.Len())
	}
	// A rules file that does not compile changes nothing.
	bad := &config.File{Rules: []config.Rule{{Name: "x", Match: config.Match{Ports: []uint16{80}, Hosts: []string{"a b"}}}}}
	if err := m.apply(bad); err == nil {
		t.Error("a bad file was applied")
	}
	if got := len(m.table.Load().routes); got != 3 {
		t.Errorf("%d routes after a refused file, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.close(ctx); err != nil {
		t.Fatal(err)
	}

	if recA.Len() != 2 || recB.Len() != 2 {
		t.Errorf("shadow A got %d, B %d; want 2 and 2", recA.Len(), recB.Len())
	}
	if n := m.skipped[skipNoRule].Load(); n != 1 {
		t.Errorf("no_rule %d, want 1", n)
	}
	if n := m.skipped[skipShadowed].Load(); n != 1 {
		t.Errorf("already_shadowed %d, want 1", n)
	}
	byName := map[string]*ruleStats{}
	for _, r := range m.rules() {
		byName[r.name] = r
	}
	// Counters follow the rule's name across the reload.
	if b := byName["b"]; b == nil || b.matched.Load() != 2 || b.shadow.Mirrored.Load() != 2 {
		t.Errorf("rule b counters: %+v", b)
	}
}
