package httpframe

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// fuzzRun frames data cut into pieces and checks, request by request, what
// must hold whatever the input.
type fuzzRun struct {
	t        *testing.T
	cfg      Config
	stats    Stats
	p        *Parser
	run      []byte    // bytes delivered since the last gap
	callFrom int       // offset in run where the current Data call starts
	callT    time.Time // time of the current Data call
	lastEnd  int       // offset in run after the last emitted request
	got      []string
	// switched is run and callFrom as they stood when the parser stopped
	// after an h2c upgrade request, which it holds (TakeUpgrade) and End
	// emits: that request ended then.
	switched     []byte
	switchedFrom int
	keeps        int
	ending       bool // in End
	refused      int
}

func newFuzzRun(t *testing.T, mid bool, budget *Budget) *fuzzRun {
	f := &fuzzRun{t: t}
	f.cfg = Config{
		MaxHeaderBytes: 512,
		MaxBodyBytes:   1024,
		Stats:          &f.stats,
		Budget:         budget,
		Keep: func(r *Request) (any, bool) {
			f.keeps++
			keep := r.TargetSpan.Len()%5 != 0
			if !keep {
				f.refused++
			}
			return nil, keep
		},
		Emit: f.emit,
	}
	f.p = NewParser(&f.cfg, testClient, testServer, mid)
	return f
}

func (f *fuzzRun) data(b []byte, i int) {
	f.callFrom = len(f.run)
	f.run = append(f.run, b...)
	f.callT = t0.Add(time.Duration(i) * time.Millisecond)
	buf := bytes.Clone(b)
	f.p.Data(buf, f.callT)
	if f.p.Switched() && f.switched == nil {
		f.switched, f.switchedFrom = bytes.Clone(f.run), f.callFrom
	}
	for k := range buf {
		buf[k] = '#'
	}
}

func (f *fuzzRun) gap() {
	f.p.Gap()
	f.run, f.lastEnd = f.run[:0], 0
}

func (f *fuzzRun) emit(r *Request, _ any) {
	t := f.t
	defer r.Release()
	if _, err := checkRequest(r); err != nil {
		t.Fatalf("emitted %q: %v", r.Raw, err)
	}
	// Raw is a contiguous slice of the input: it ends in the current call,
	// after the previous request, and does not span a gap. A held upgrade
	// request, emitted by End, ended in the call that made the parser
	// switch.
	run, from := f.run, f.callFrom
	if f.ending && r.UpgradeH2C {
		run, from = f.switched, f.switchedFrom
	}
	found := false
	for end := max(from+1, f.lastEnd+len(r.Raw)); end <= len(run); end++ {
		if bytes.Equal(run[end-len(r.Raw):end], r.Raw) {
			f.lastEnd, found = end, true
			break
		}
	}
	if !found {
		t.Fatalf("emitted %q is not a slice of the input ending in the current call", r.Raw)
	}
	if r.Captured.After(f.callT) || r.Captured.Before(t0) {
		t.Fatalf("Time %v outside the calls", r.Captured)
	}
	goReq, ignore, err := readHead(r)
	if err != nil {
		t.Fatalf("net/http refuses the head of %q: %v", r.Raw, err)
	}
	if err := compareHead(r, goReq, ignore); err != nil {
		t.Fatalf("%q: %v", r.Raw, err)
	}
	f.got = append(f.got, fmt.Sprintf("%q %d", r.Raw, r.DecodedLen))
}

// end closes the stream and checks the counters.
func (f *fuzzRun) end() {
	t := f.t
	f.ending = true
	f.p.End()
	c := snapshot(&f.stats)
	if c.Emitted != uint64(len(f.got)) {
		t.Fatalf("Emitted %d, but %d requests were emitted", c.Emitted, len(f.got))
	}
	sk := &f.stats.Skipped
	framed := c.Emitted + sk[ReasonConnect].Load() + sk[ReasonUpgrade].Load() + uint64(f.refused) +
		sk[ReasonBodyTooLarge].Load()
	if framed > c.Requests {
		t.Fatalf("more requests ended (%d) than heads were parsed: %v", framed, c)
	}
	if sk[ReasonHTTP2].Load() > 1 || sk[ReasonConnect].Load() > 1 {
		t.Fatalf("a stream went opaque twice: %v", c)
	}
	if b := f.cfg.Budget; b != nil && b.Used() != 0 {
		t.Fatalf("Budget holds %d bytes after End", b.Used())
	}
	if f.p.blk != nil || f.p.req != nil || f.p.tail != nil {
		t.Fatalf("parser holds buffers after End")
	}
}

// pieces cuts data as cuts says: each byte of cuts gives the length of the
// next piece (1 to 64); when its top two bits are set, that piece is lost
// instead, and Gap is called. What is left after the cuts is the last piece.
func pieces(data, cuts []byte) (ps [][]byte, lost []bool) {
	for _, c := range cuts {
		if len(data) == 0 {
			break
		}
		n := min(int(c&0x3f)+1, len(data))
		ps, lost = append(ps, data[:n]), append(lost, c&0xc0 == 0xc0)
		data = data[n:]
	}
	if len(data) > 0 {
		ps, lost = append(ps, data), append(lost, false)
	}
	return ps, lost
}

func FuzzHTTPFraming(f *testing.F) {
	for _, s := range validRequests {
		f.Add([]byte(s), []byte{}, false)
		f.Add([]byte(s), []byte{7, 3, 0xc1, 20}, false)
	}
	for _, tc := range frameCases {
		var in []byte
		for _, s := range tc.in {
			if s != gap {
				in = append(in, s...)
			}
		}
		f.Add(in, []byte{5, 63, 2, 17}, tc.mid)
	}
	f.Add([]byte(postChunked+getB+postCL), []byte{1, 1, 1, 1, 1, 0xc2, 1, 40}, true)
	f.Add([]byte(junk+"xGET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte{9, 9, 9}, true)

	f.Fuzz(func(t *testing.T, data, cuts []byte, mid bool) {
		// Framing never blocks: a stuck input crashes the worker, and the
		// fuzzer keeps it.
		wd := time.AfterFunc(10*time.Second, func() { panic("framing one input took over 10s") })
		defer wd.Stop()
		// The whole input in one call: the reference.
		ref := newFuzzRun(t, mid, nil)
		ref.data(data, 0)
		ref.end()

		ps, lost := pieces(data, cuts)

		// The same bytes cut into pieces, none lost. Unless the reference
		// lost framing somewhere (where resync may look at other bytes
		// depending on the cuts), the outcome must be the same.
		split := newFuzzRun(t, mid, nil)
		for i, p := range ps {
			split.data(p, i)
		}
		split.end()
		rc := snapshot(&ref.stats)
		if rc.Garbage == 0 && rc.Skipped["malformed"] == 0 && rc.Skipped["header_too_large"] == 0 &&
			rc.Skipped["upgrade"] == 0 {
			sc := snapshot(&split.stats)
			if !equalCounts(rc, sc) || fmt.Sprint(ref.got) != fmt.Sprint(split.got) || ref.keeps != split.keeps {
				t.Fatalf("cutting changed the outcome:\nwhole %v %v keeps=%d\ncut   %v %v keeps=%d",
					rc, ref.got, ref.keeps, sc, split.got, split.keeps)
			}
		}

		// Pieces lost, with a small Budget: only the invariants hold.
		lossy := newFuzzRun(t, mid, NewBudget(2048))
		for i, p := range ps {
			if lost[i] {
				lossy.gap()
				continue
			}
			lossy.data(p, i)
		}
		lossy.end()
	})
}
