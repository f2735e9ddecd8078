package httpframe

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type splitCase struct {
	name  string
	mid   bool
	tweak func(*Config)
	keep  func(*Request) bool
	in    string
	pairs bool // also try every pair of split points
}

func noPOST(r *Request) bool { return string(r.Bytes(r.MethodSpan)) != "POST" }

var splitCases = []splitCase{
	{name: "POST with Content-Length", in: postCL, pairs: true},
	{name: "chunked POST with extensions and trailers", in: postChunked, pairs: true},
	{name: "pipelined", in: getA + postCL + "\r\n" + postChunked + getB},
	{name: "Expect 100-continue", in: expectHead + "12345" + getB},
	{name: "bare LF", in: lfGet + lfPost},
	{name: "TE and CL", in: teAndCL + getB},
	{name: "mid-stream inside a body", mid: true, in: "orld\"}" + postCL + getB},
	{name: "mid-stream inside headers", mid: true, in: "Agent: t/1\r\n\r\n" + getB},
	{name: "header too large", tweak: maxHeader(128), in: bigHead + getB},
	{name: "body too large by chunks", tweak: maxBody(8), in: postChunked + getB},
	{name: "body too large by Content-Length", tweak: maxBody(10), in: postCL + getB},
	{name: "refused upgrade", in: wsUpgrade + getA},
	{name: "upgrade, frames, request", in: wsUpgrade + wsFrame + getA},
	{name: "garbage then a request", in: junk + getA},
	{name: "h2c upgrade", in: h2cUpgrade + h2Preface + h2Frames},
	{name: "CONNECT", in: connect + tlsHello + getA},
	{name: "sampled", keep: noPOST, in: postCL + getB + postChunked + getA},
	{name: "broken chunked body", in: badChunks + "zz\r\n" + getB},
	{name: "leading empty lines", in: "\r\n\r\n" + getA + "\r\n\n" + getB},
}

// outcome is what a run emitted and counted, in comparable form.
type outcome struct {
	reqs   []string // Raw, BodyLen and Time of each request
	counts counts
	keeps  int
}

// runPieces frames in, cut at the given offsets.
func runPieces(t *testing.T, sc splitCase, cuts []int) outcome {
	t.Helper()
	var pieces []string
	last := 0
	for _, c := range cuts {
		pieces = append(pieces, sc.in[last:c])
		last = c
	}
	pieces = append(pieces, sc.in[last:])
	h := newHarness(sc.mid, sc.tweak)
	h.keep = sc.keep
	h.feed(pieces...)
	h.p.End()
	defer h.release()
	h.checkAll(t)

	// The Time of a request is that of the piece holding its first byte.
	var o outcome
	pos := 0
	for _, r := range h.got {
		off := strings.Index(sc.in[pos:], string(r.Raw))
		if off < 0 {
			t.Fatalf("cuts %v: emitted %q is not in the input after offset %d", cuts, r.Raw, pos)
		}
		off += pos
		pos = off + len(r.Raw)
		piece := 0
		for piece < len(cuts) && cuts[piece] <= off {
			piece++
		}
		if want := t0.Add(time.Duration(piece) * time.Second); !r.Captured.Equal(want) {
			t.Errorf("cuts %v: request at %d has Time %v, want %v", cuts, off, r.Captured, want)
		}
		o.reqs = append(o.reqs, fmt.Sprintf("%q body=%d", r.Raw, r.DecodedLen))
	}
	o.counts = snapshot(&h.stats)
	o.keeps = h.keepCalls
	return o
}

func sameOutcome(a, b outcome) bool {
	if len(a.reqs) != len(b.reqs) || a.keeps != b.keeps || !equalCounts(a.counts, b.counts) {
		return false
	}
	for i := range a.reqs {
		if a.reqs[i] != b.reqs[i] {
			return false
		}
	}
	return true
}

// TestEverySplit checks that where the input is cut into Data calls does
// not change what is framed: at every single offset, into single bytes, and
// for some messages at every pair of offsets.
func TestEverySplit(t *testing.T) {
	for _, sc := range splitCases {
		t.Run(sc.name, func(t *testing.T) {
			ref := runPieces(t, sc, nil)
			if len(ref.reqs) == 0 && ref.counts.Skipped == nil {
				t.Fatalf("reference run framed nothing")
			}
			check := func(cuts []int) {
				if got := runPieces(t, sc, cuts); !sameOutcome(got, ref) {
					t.Fatalf("cuts %v:\n got %v %v keeps=%d\nwant %v %v keeps=%d",
						cuts, got.reqs, got.counts, got.keeps, ref.reqs, ref.counts, ref.keeps)
				}
			}
			n := len(sc.in)
			for i := 1; i < n; i++ {
				check([]int{i})
			}
			bytewise := make([]int, 0, n)
			for i := 1; i < n; i++ {
				bytewise = append(bytewise, i)
			}
			check(bytewise)
			if sc.pairs {
				for i := 1; i < n; i++ {
					for j := i + 1; j < n; j++ {
						check([]int{i, j})
					}
				}
			}
		})
	}
}
