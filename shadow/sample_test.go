package shadow

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestParsePercent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  string // substring of the error, "" for success
	}{
		{"0", 0, ""},
		{"100", 100, ""},
		{"50", 50, ""},
		{"12.5", 12.5, ""},
		{"0.0001", 0.0001, ""},
		{"100.0", 100, ""},
		{"007", 7, ""},
		{".5", 0.5, ""},
		{"5.", 5, ""},
		{"", 0, "empty"},
		{"100.0001", 0, "out of range"},
		{"101", 0, "out of range"},
		{"-1", 0, "not a decimal number"},
		{"+5", 0, "not a decimal number"},
		{"NaN", 0, "not a decimal number"},
		{"Inf", 0, "not a decimal number"},
		{"1e2", 0, "not a decimal number"},
		{"0x10", 0, "not a decimal number"},
		{"5%", 0, "not a decimal number"},
		{" 5", 0, "not a decimal number"},
		{"1.2.3", 0, "not a decimal number"},
		{".", 0, "not a decimal number"},
		{"ten", 0, "not a decimal number"},
	} {
		got, err := ParsePercent(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParsePercent(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParsePercent(%q) = %v, want %v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParsePercent(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func TestNewSamplerErrors(t *testing.T) {
	for _, tc := range []struct {
		percent float64
		key     string
		err     string
	}{
		{math.NaN(), "", "NaN"},
		{math.Inf(1), "", "+Inf"},
		{math.Inf(-1), "", "-Inf"},
		{-0.5, "", "out of range"},
		{100.5, "", "out of range"},
		{50, "x-request-id", `want "" or "header:NAME"`},
		{50, "cookie:session", `want "" or "header:NAME"`},
		{50, "header:", "not a valid header name"},
		{50, "header:x request id", "not a valid header name"},
		{50, "header:x-id\r\n", "not a valid header name"},
	} {
		_, err := NewSampler(tc.percent, tc.key)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("NewSampler(%v, %q) error = %v, want one containing %q", tc.percent, tc.key, err, tc.err)
		}
	}
	for _, key := range []string{"", "header:x-request-id", "header:X-B3-TraceId"} {
		if _, err := NewSampler(10, key); err != nil {
			t.Errorf("NewSampler(10, %q): %v", key, err)
		}
	}
}

func TestSamplerNumerator(t *testing.T) {
	// Envoy and Istio truncate uint32(p*10000); so do we, even where the
	// float product lands just below the integer.
	for _, tc := range []struct {
		p    float64
		want uint32
	}{
		{0, 0}, {100, 1_000_000}, {50, 500_000}, {0.0001, 1}, {12.3456789, 123456}, {0.57, 5699},
	} {
		s, err := NewSampler(tc.p, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Numerator(); got != tc.want {
			t.Errorf("percent %v: numerator %d, want %d", tc.p, got, tc.want)
		}
	}
}

func keepRate(t *testing.T, s *Sampler, n int, mk func(i int) string) float64 {
	t.Helper()
	kept := 0
	for i := range n {
		if s.Keep(parseRequest(t, mk(i))) {
			kept++
		}
	}
	return float64(kept) / float64(n)
}

func TestSamplerKeep(t *testing.T) {
	plain := func(int) string { return crlf("GET / HTTP/1.1\nHost: a\n\n") }
	none, _ := NewSampler(0, "")
	all, _ := NewSampler(100, "")
	half, _ := NewSampler(50, "")
	if r := keepRate(t, none, 10000, plain); r != 0 {
		t.Errorf("0%%: kept %v", r)
	}
	if r := keepRate(t, all, 10000, plain); r != 1 {
		t.Errorf("100%%: kept %v", r)
	}
	// n = 200000 at p = 0.5: one standard deviation is 0.11%; ±1.5% is far
	// outside chance.
	if r := keepRate(t, half, 200000, plain); math.Abs(r-0.5) > 0.015 {
		t.Errorf("50%%: kept %v", r)
	}
}

func TestSamplerKeyed(t *testing.T) {
	withID := func(i int) string {
		return crlf(fmt.Sprintf("GET / HTTP/1.1\nHost: a\nX-Request-Id: %08x-7a1c-4f00-9d3b-%012x\n\n", i*7919, i))
	}
	a, _ := NewSampler(25, "header:x-request-id")
	b, _ := NewSampler(25, "header:X-REQUEST-ID")
	wider, _ := NewSampler(60, "header:x-request-id")
	keptA := 0
	for i := range 100000 {
		r := parseRequest(t, withID(i))
		ka, kb := a.Keep(r), b.Keep(r)
		if ka != kb {
			t.Fatalf("request %d: two samplers disagree", i)
		}
		if ka != a.Keep(r) {
			t.Fatalf("request %d: same sampler changed its mind", i)
		}
		if ka && !wider.Keep(r) {
			t.Fatalf("request %d: kept at 25%% but not at 60%%", i)
		}
		if ka {
			keptA++
		}
	}
	if r := float64(keptA) / 100000; math.Abs(r-0.25) > 0.015 {
		t.Errorf("keyed 25%%: kept %v", r)
	}
	// Without the key header the decision is random again.
	noID := func(int) string { return crlf("GET / HTTP/1.1\nHost: a\n\n") }
	if r := keepRate(t, a, 100000, noID); math.Abs(r-0.25) > 0.015 {
		t.Errorf("keyed 25%% without the header: kept %v", r)
	}
}

func TestKeyHashStable(t *testing.T) {
	// Fleet nodes and future versions must agree: pin the function (values
	// checked against an independent FNV-1a + fmix64 implementation).
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0xefd01f60ba992926},
		{"0ae53bc3-2644-44f2-8603-158d2ccf9f78", 0x238bdc51d62a628a},
	} {
		if got := KeyHash([]byte(tc.in)); got != tc.want {
			t.Errorf("KeyHash(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func TestSamplerKeepDoesNotAllocate(t *testing.T) {
	r := parseRequest(t, crlf("GET / HTTP/1.1\nHost: a\nX-Request-Id: abc\n\n"))
	for _, key := range []string{"", "header:x-request-id", "header:x-missing"} {
		s, _ := NewSampler(33.3, key)
		if n := testing.AllocsPerRun(1000, func() { s.Keep(r) }); n != 0 {
			t.Errorf("key %q: %v allocations per Keep", key, n)
		}
	}
}
