package httpframe

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHeaderLookup(t *testing.T) {
	h := newHarness(false, nil)
	h.feed("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id:  abc \r\nx-request-id: second\r\nEmpty:\r\n\r\n")
	defer h.release()
	if len(h.got) != 1 {
		t.Fatalf("emitted %d requests", len(h.got))
	}
	r := h.got[0]
	for name, want := range map[string]string{"X-REQUEST-ID": "abc", "host": "a", "empty": ""} {
		s, ok := r.HeaderSpan(name)
		if !ok || string(r.Bytes(s)) != want {
			t.Errorf("Header(%q) = %q, %v; want %q", name, r.Bytes(s), ok, want)
		}
	}
	if _, ok := r.HeaderSpan("X-Request"); ok {
		t.Errorf("Header matched a prefix")
	}
	if n := testing.AllocsPerRun(100, func() { r.HeaderSpan("x-request-id") }); n != 0 {
		t.Errorf("Header allocates %.1f times", n)
	}
}

func TestReleaseForeignRequest(t *testing.T) {
	r := &Request{Raw: []byte("GET / HTTP/1.1\r\n\r\n")}
	r.Release() // must not panic nor pool r
	var nilReq *Request
	nilReq.Release()
}

func TestReasonLabels(t *testing.T) {
	label := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]bool{}
	for r := Reason(0); r < NumReasons; r++ {
		s := r.String()
		if !label.MatchString(s) || seen[s] {
			t.Errorf("Reason %d has label %q", r, s)
		}
		seen[s] = true
	}
	for _, want := range []string{"connect", "upgrade", "http2", "body_too_large", "header_too_large",
		"malformed", "incomplete", "memory"} {
		if !seen[want] {
			t.Errorf("no Reason labelled %q", want)
		}
	}
}

// TestBudgetShared has two parsers share a Budget: while one holds a
// partial request, the other cannot buffer one, and everything is given
// back in the end.
func TestBudgetShared(t *testing.T) {
	budget := NewBudget(4096)
	var stats Stats
	var emitted []string
	cfg := &Config{Stats: &stats, Budget: budget, Emit: func(r *Request, _ any) {
		emitted = append(emitted, string(r.Bytes(r.TargetSpan)))
		r.Release()
	}}
	a := NewParser(cfg, testClient, testServer, false)
	b := NewParser(cfg, testClient, testServer, false)
	bodyA := clPost("/a", "3000", "")
	bodyB := clPost("/b", "1500", "")
	now := time.Now()

	a.Data([]byte(bodyA+strings.Repeat("a", 2900)), now)
	if budget.Used() == 0 {
		t.Fatalf("a partial request holds no reservation")
	}
	b.Data([]byte(bodyB+strings.Repeat("b", 1400)), now)
	if n := stats.Skipped[ReasonMemory].Load(); n != 1 {
		t.Fatalf("Skipped[memory] = %d, want 1", n)
	}
	b.Data([]byte(strings.Repeat("b", 100)+getB), now) // the rest is skipped, getB framed
	a.Data([]byte(strings.Repeat("a", 100)), now)
	if budget.Used() != 0 {
		t.Fatalf("Budget holds %d bytes after the request was emitted", budget.Used())
	}
	if strings.Join(emitted, " ") != "/b?x=1 /a" {
		t.Fatalf("emitted %q", emitted)
	}
	a.End()
	b.End()
}

// TestConcurrentParsers runs parsers on several goroutines that share
// Stats, Budget and Config; run it with -race.
func TestConcurrentParsers(t *testing.T) {
	var stats Stats
	cfg := &Config{Stats: &stats, Budget: NewBudget(1 << 20), Emit: release}
	in := getA + postCL + postChunked + getB
	var wg sync.WaitGroup
	const workers, rounds = 4, 200
	for range workers {
		wg.Go(func() {
			for range rounds {
				p := NewParser(cfg, testClient, testServer, false)
				for _, s := range segmentsOf(in, 7) {
					p.Data(s, time.Now())
				}
				p.End()
			}
		})
	}
	wg.Wait()
	if got := stats.Emitted.Load(); got != workers*rounds*4 {
		t.Fatalf("emitted %d requests, want %d", got, workers*rounds*4)
	}
	if cfg.Budget.Used() != 0 {
		t.Fatalf("Budget holds %d bytes", cfg.Budget.Used())
	}
}

func segmentsOf(s string, n int) [][]byte {
	var out [][]byte
	for len(s) > 0 {
		k := min(n, len(s))
		out = append(out, []byte(s[:k]))
		s = s[k:]
	}
	return out
}

func TestSizeClasses(t *testing.T) {
	prev := 0
	for n := 1; n <= 1<<maxBlockShift; n += 1 + n/7 {
		c, size := sizeClass(n)
		if size < n || c < 0 || c >= numClasses {
			t.Fatalf("sizeClass(%d) = %d, %d", n, c, size)
		}
		if size < prev {
			t.Fatalf("sizeClass(%d) = %d, below the class of a smaller size", n, size)
		}
		if n > 1<<minBlockShift && size > n*3/2+1 {
			t.Fatalf("sizeClass(%d) = %d wastes more than a third", n, size)
		}
		prev = size
	}
	if c, size := sizeClass(1<<maxBlockShift + 1); c != -1 || size != 1<<maxBlockShift+1 {
		t.Fatalf("oversized: %d, %d", c, size)
	}
	bl := getBlock(1000)
	if cap(bl.b) != 1024 || len(bl.b) != 0 {
		t.Fatalf("getBlock(1000): len %d cap %d", len(bl.b), cap(bl.b))
	}
	putBlock(bl)
}

// The Stream interface of package reassembly, restated so that this
// package does not depend on it.
var _ interface {
	Data(b []byte, t time.Time)
	Gap()
	End()
} = (*Parser)(nil)
