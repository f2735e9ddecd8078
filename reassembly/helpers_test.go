package reassembly

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

	fA = Flow{Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:80")}
	fB = fA.Reverse()
	fC = Flow{Src: netip.MustParseAddrPort("10.0.0.3:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:80")}
	fD = Flow{Src: netip.MustParseAddrPort("10.0.0.4:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:80")}
	f6 = Flow{Src: netip.MustParseAddrPort("[2001:db8::1]:40000"), Dst: netip.MustParseAddrPort("[2001:db8::2]:80")}
	// f4in6 is fA's addresses written as IPv4-mapped IPv6: another flow.
	f4in6 = Flow{Src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:40000"), Dst: netip.MustParseAddrPort("[::ffff:10.0.0.2]:80")}

	flowNames = map[Flow]string{fA: "A", fB: "B", fC: "C", fD: "D", f6: "V6", f4in6: "M"}
)

// recorder logs every Stream call of every flow, as "A open", "A open mid",
// "A data:bytes", "A gap", "A end", and fails the test on a call after End.
type recorder struct {
	t   testing.TB
	log []string
}

func (r *recorder) newStream(seg *Segment, mid bool) Stream {
	f := seg.Flow
	name, ok := flowNames[f]
	if !ok {
		name = f.String()
	}
	e := name + " open"
	if mid {
		e += " mid"
	}
	r.log = append(r.log, e)
	return &recStream{r: r, name: name}
}

type recStream struct {
	r     *recorder
	name  string
	ended bool
}

func (s *recStream) add(e string) {
	if s.ended {
		s.r.t.Errorf("%s: %q after End", s.name, e)
	}
	s.r.log = append(s.r.log, s.name+" "+e)
}

func (s *recStream) Data(b []byte, _ time.Time) { s.add("data:" + string(b)) }
func (s *recStream) Gap()                       { s.add("gap") }
func (s *recStream) End()                       { s.add("end"); s.ended = true }

// step is one thing done to an Assembler in a table test: a segment, a
// Tick, or Close.
type step struct {
	seg   *Segment
	tick  bool
	close bool
	at    time.Duration // since t0, for a segment or a Tick
}

func seg(f Flow, seq uint32, fl Flags, payload string, at time.Duration) step {
	s := &Segment{Flow: f, Seq: seq, Flags: fl | ACK, Time: t0.Add(at)}
	if payload != "" {
		s.Payload = []byte(payload)
	}
	if fl&SYN != 0 && fl&ACK == 0 {
		s.Flags &^= ACK
	}
	return step{seg: s, at: at}
}

func tick(at time.Duration) step { return step{tick: true, at: at} }

func closeAll() step { return step{close: true} }

// run feeds steps to a and returns the log. The payload given to Add is
// overwritten after each call, to catch any reference kept past Add.
func run(a *Assembler, steps []step) {
	for _, s := range steps {
		switch {
		case s.seg != nil:
			p := append([]byte(nil), s.seg.Payload...)
			seg := *s.seg
			seg.Payload = p
			a.Add(&seg)
			for i := range p {
				p[i] = '#'
			}
		case s.tick:
			a.Tick(t0.Add(s.at))
		case s.close:
			a.Close()
		}
	}
}

func logString(l []string) string { return strings.Join(l, "\n") }
