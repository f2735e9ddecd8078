package httpframe

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// answerLog collects what a ResponseParser hands over, by tag.
type answerLog struct {
	got []string
}

func (l *answerLog) answer(tag any, a *httpmsg.Answer) {
	if a == nil {
		l.got = append(l.got, fmt.Sprintf("%v: none", tag))
		return
	}
	var h []string
	for _, f := range a.Header {
		h = append(h, string(f.Name)+"="+string(f.Value))
	}
	var tr []string
	for _, f := range a.Trailer {
		tr = append(tr, string(f.Name)+"="+string(f.Value))
	}
	s := fmt.Sprintf("%v: %d %q len=%d", tag, a.Status, a.Body, a.BodyLen)
	if a.Truncated {
		s += " truncated"
	}
	if len(h) > 0 {
		s += " h[" + strings.Join(h, ",") + "]"
	}
	if len(tr) > 0 {
		s += " t[" + strings.Join(tr, ",") + "]"
	}
	l.got = append(l.got, s)
}

type req struct {
	method string
	tag    any
}

var responseCases = []struct {
	name  string
	reqs  []req
	in    string
	want  []string
	stats wantStats
}{
	{"content length", []req{{"GET", 1}},
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		[]string{`1: 200 "hello" len=5 h[Content-Length=5]`}, wantStats{}},
	{"pipelined, one not kept", []req{{"GET", 1}, {"GET", nil}, {"POST", 3}},
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" +
			"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno" +
			"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
		[]string{`1: 200 "a" len=1 h[Content-Length=1]`, `3: 201 "" len=0 h[Content-Length=0]`}, wantStats{}},
	{"HEAD has no body", []req{{"HEAD", 1}, {"GET", 2}},
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		[]string{`1: 200 "" len=0 h[Content-Length=100]`, `2: 200 "ok" len=2 h[Content-Length=2]`}, wantStats{}},
	{"1xx skipped", []req{{"POST", 1}},
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		[]string{`1: 200 "ok" len=2 h[Content-Length=2]`}, wantStats{Interim: 2}},
	{"204 and 304", []req{{"DELETE", 1}, {"GET", 2}, {"GET", 3}},
		"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
		[]string{`1: 204 "" len=0`, `2: 304 "" len=0 h[Content-Length=9]`, `3: 200 "z" len=1 h[Content-Length=1]`}, wantStats{}},
	{"chunked with trailers", []req{{"GET", 1}, {"GET", 2}},
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nGrpc-Status: 0\r\nX-T: v\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nq",
		[]string{`1: 200 "abcde" len=5 h[Transfer-Encoding=chunked] t[Grpc-Status=0,X-T=v]`, `2: 200 "q" len=1 h[Content-Length=1]`}, wantStats{}},
	{"body to the close", []req{{"GET", 1}, {"GET", 2}},
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it",
		[]string{`1: 200 "all of it" len=9 h[Connection=close]`, `2: none`}, wantStats{}},
	{"HTTP/1.0 closes", []req{{"GET", 1}, {"GET", 2}},
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		[]string{`1: 200 "hi" len=2 h[Content-Length=2]`, `2: none`}, wantStats{}},
	{"connection close after a length body", []req{{"GET", 1}, {"GET", 2}},
		"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
		[]string{`1: 400 "no" len=2 h[Content-Length=2,Connection=close]`, `2: none`}, wantStats{}},
	{"an answer nobody asked for", []req{},
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", nil, wantStats{Orphans: 1}},
	{"malformed status", []req{{"GET", 1}},
		"HTTP/2 200\r\n\r\n", []string{`1: none`}, wantStats{Malformed: 1}},
	// The answer to the request that asked comes in the new protocol.
	{"switching protocols", []req{{"GET", 1}, {"GET", 2}},
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
		[]string{`2: none`}, wantStats{Interim: 1}},
	{"CONNECT tunnel", []req{{"CONNECT", 1}, {"GET", 2}},
		"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01",
		[]string{`1: 200 "" len=0`, `2: none`}, wantStats{}},
	{"stream ends in a body", []req{{"GET", 1}},
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		[]string{`1: none`}, wantStats{}},
}

// wantStats is the part of ResponseStats a case checks.
type wantStats struct{ Interim, Orphans, Malformed uint64 }

func TestResponseFraming(t *testing.T) {
	for _, c := range responseCases {
		// Whole, then one byte at a time: the same answers either way.
		for _, step := range []int{len(c.in), 1} {
			t.Run(fmt.Sprintf("%s/step%d", c.name, step), func(t *testing.T) {
				var log answerLog
				var st ResponseStats
				p := NewResponseParser(&ResponseConfig{Answer: log.answer, Stats: &st}, false)
				for _, r := range c.reqs {
					p.Expect([]byte(r.method), r.tag)
				}
				t0 := time.Unix(100, 0)
				for i := 0; i < len(c.in); i += step {
					p.Data([]byte(c.in[i:min(i+step, len(c.in))]), t0.Add(time.Duration(i)))
				}
				p.End()
				if strings.Join(log.got, "\n") != strings.Join(c.want, "\n") {
					t.Errorf("answers\n got %q\nwant %q", log.got, c.want)
				}
				if got := (wantStats{st.Interim.Load(), st.Orphans.Load(), st.Malformed.Load()}); got != c.stats {
					t.Errorf("stats interim %d orphans %d malformed %d", st.Interim.Load(), st.Orphans.Load(), st.Malformed.Load())
				}
			})
		}
	}
}

// Every kept request gets exactly one answer call, whatever happens to the
// stream: a gap or a mid-stream start loses the pairing for good.
func TestResponsePairingLost(t *testing.T) {
	var log answerLog
	p := NewResponseParser(&ResponseConfig{Answer: log.answer}, false)
	p.Expect([]byte("GET"), 1)
	p.Expect([]byte("GET"), 2)
	p.Data([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"), time.Now())
	p.Gap()
	p.Expect([]byte("GET"), 3)
	p.Data([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"), time.Now())
	p.End()
	want := []string{`1: 200 "a" len=1 h[Content-Length=1]`, `2: none`, `3: none`}
	if strings.Join(log.got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", log.got, want)
	}

	log = answerLog{}
	p = NewResponseParser(&ResponseConfig{Answer: log.answer}, true)
	p.Expect([]byte("GET"), 1)
	p.Data([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"), time.Now())
	p.End()
	if len(log.got) != 1 || log.got[0] != "1: none" {
		t.Errorf("mid-stream: %q", log.got)
	}
}

// The body kept is capped; the length is the whole one.
func TestResponseBodyCap(t *testing.T) {
	var log answerLog
	p := NewResponseParser(&ResponseConfig{Answer: log.answer, BodyCap: 4}, false)
	p.Expect([]byte("GET"), 1)
	p.Expect([]byte("GET"), 2)
	p.Data([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"+
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n"), time.Now())
	p.End()
	want := []string{`1: 200 "0123" len=10 truncated h[Content-Length=10]`, `2: 200 "abcd" len=10 truncated h[Transfer-Encoding=chunked]`}
	if strings.Join(log.got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", log.got, want)
	}
}

// Feed stops after a 101's head: the bytes that follow are the new
// protocol's, for the caller to hand on.
func TestResponseFeedSwitch(t *testing.T) {
	var log answerLog
	p := NewResponseParser(&ResponseConfig{Answer: log.answer}, false)
	p.Expect([]byte("GET"), 1)
	head := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
	if n := p.Feed([]byte(head+"\x00\x00\x00\x04\x00"), time.Now()); n != len(head) || !p.Switched() {
		t.Fatalf("Feed consumed %d of the 101's %d, switched %v", n, len(head), p.Switched())
	}
	p.End()
	if len(log.got) != 0 {
		t.Errorf("answers %q: the upgraded request's answer is the new protocol's", log.got)
	}
}

// A connection whose answers are never seen holds at most MaxOutstanding
// requests: past it, they are all given up on, and so is what follows.
func TestResponseOutstandingBound(t *testing.T) {
	var log answerLog
	var st ResponseStats
	p := NewResponseParser(&ResponseConfig{Answer: log.answer, Stats: &st, MaxOutstanding: 3}, false)
	for i := range 3 {
		p.Expect([]byte("GET"), i)
	}
	if len(log.got) != 0 {
		t.Fatalf("given up on %q within the bound", log.got)
	}
	p.Expect([]byte("GET"), 3)
	p.Expect([]byte("GET"), 4)
	want := []string{"0: none", "1: none", "2: none", "3: none", "4: none"}
	if strings.Join(log.got, "|") != strings.Join(want, "|") || len(p.queue) != 0 || st.Overrun.Load() != 1 {
		t.Errorf("past the bound: %q, %d held, overrun %d; want %q, none held, 1", log.got, len(p.queue), st.Overrun.Load(), want)
	}
}
