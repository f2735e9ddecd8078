package shadow

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// denominator is the fixed scale of a sampling fraction: Envoy's
// FractionalPercent MILLION, so that a percentage means the same here as in
// a route's request_mirror_policies.
const denominator = 1_000_000

// ParsePercent parses a sampling percentage written as a plain decimal number
// from 0 to 100, such as "100", "12.5" or "0.01". Exponents, signs, hex
// floats, NaN and infinities are refused, as are values outside 0..100: a
// typo in a percentage must be a configuration error, not a silent clamp.
func ParsePercent(s string) (float64, error) {
	if s == "" {
		return 0, errors.New("shadow percentage is empty: want a number from 0 to 100")
	}
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return 0, fmt.Errorf("shadow percentage %q is not a decimal number from 0 to 100", s)
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("shadow percentage %q is not a decimal number from 0 to 100", s)
	}
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("shadow percentage %q: %w", s, err)
	}
	if err := checkPercent(p); err != nil {
		return 0, err
	}
	return p, nil
}

func checkPercent(p float64) error {
	switch {
	case math.IsNaN(p):
		return errors.New("shadow percentage is NaN: want a number from 0 to 100")
	case math.IsInf(p, 0):
		return fmt.Errorf("shadow percentage is %v: want a number from 0 to 100", p)
	case p < 0 || p > 100:
		return fmt.Errorf("shadow percentage %v is out of range: want a number from 0 to 100", p)
	}
	return nil
}

// Sampler decides, request by request, whether a request is mirrored.
//
// The percentage becomes a numerator over one million exactly as Envoy and
// Istio compute it (uint32(percent*10000)), so 0.0001 is the finest step and
// a value such as 0.57 truncates (to 5699) the same way it does in a proxy.
//
// Without a key every request draws a fresh random number, as Envoy does.
// With the key "header:NAME" the decision is a function of the first NAME
// field's value (see KeyHash), so every node of a fleet mirrors the same
// requests; a request without that field falls back to the random draw.
// A Sampler is safe for concurrent use.
type Sampler struct {
	numerator uint32
	header    string // key header name, "" when the decision is random
}

// NewSampler returns a Sampler that keeps percent (0 to 100) of the requests.
// key is "" for a random decision per request, or "header:NAME" for a
// decision derived from the value of header NAME.
func NewSampler(percent float64, key string) (*Sampler, error) {
	if err := checkPercent(percent); err != nil {
		return nil, err
	}
	s := &Sampler{numerator: uint32(percent * 10000)}
	if key == "" {
		return s, nil
	}
	name, ok := strings.CutPrefix(key, "header:")
	if !ok {
		return nil, fmt.Errorf("shadow sampling key %q: want \"\" or \"header:NAME\"", key)
	}
	if !httpsyntax.IsToken(name) {
		return nil, fmt.Errorf("shadow sampling key %q: %q is not a valid header name", key, name)
	}
	s.header = name
	return s, nil
}

// Numerator returns the share of requests kept, in millionths.
func (s *Sampler) Numerator() uint32 { return s.numerator }

// Keep reports whether r is to be mirrored. It sees the protocol-neutral
// view (the key header through r.Header), so HTTP/1 and HTTP/2 requests
// with the same key value get the same decision. It does not allocate.
func (s *Sampler) Keep(r httpmsg.Request) bool {
	// 0 and 100 are decided without consulting any randomness, so that they
	// are exact and cost nothing.
	if s.numerator == 0 {
		return false
	}
	if s.numerator >= denominator {
		return true
	}
	if s.header != "" {
		if v, ok := r.Header(s.header); ok {
			return KeyHash(v)%denominator < uint64(s.numerator)
		}
	}
	// The top-level generator of math/rand/v2 is per-thread state in the
	// runtime: fast, and safe from any goroutine without a lock.
	return rand.Uint32N(denominator) < s.numerator
}

// KeyHash is the stable hash behind keyed sampling: FNV-1a 64 over the raw
// bytes of the header value, followed by the MurmurHash3 64-bit finaliser
// (which spreads FNV's weak low bits before the modulo). A request is kept
// when KeyHash(value) % 1,000,000 < numerator, so a request kept at some
// percentage is also kept at every higher one. The function must never
// change: nodes of one fleet, and successive versions, have to agree.
func KeyHash(v []byte) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, c := range v {
		h ^= uint64(c)
		h *= prime64
	}
	return fmix64(h)
}

// fmix64 is the MurmurHash3 finaliser: every input bit affects every output
// bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
