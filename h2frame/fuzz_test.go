package h2frame

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// FuzzH2Framing feeds a client's bytes (preface first) to a Conn whole,
// split, and joined mid-stream, and checks that:
//   - nothing panics, and every kept request gets exactly one Emit or Drop;
//   - every byte charged to the Budget is given back by the end;
//   - the split feed gives what the whole one gives;
//   - each request emitted is what x/net's Framer and hpack.Decoder read
//     on its stream, and each HEADERS frame's fragment is cut as the
//     Framer cuts it;
//   - what a mid-stream join emits is what the whole connection carried.
//
// The committed corpus holds the client sides of the captures in testdata.
func FuzzH2Framing(f *testing.F) {
	for _, sc := range scenarios() {
		f.Add(sc[0])
	}
	f.Add(clientWire().headersSplit(1, true, 3, get("/x", "cookie", "a")...).bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := fuzzRun(t, data, [][]byte{data}, false)
		h := fnv.New64a()
		h.Write(data)
		if split := fuzzRun(t, data, randomSplit(h.Sum64())(data), false); split.transcript != whole.transcript {
			t.Fatalf("split feed:\n%s\nwhole:\n%s", split.transcript, whole.transcript)
		}
		oracle := xnetRequests(data)
		for id, g := range whole.byID {
			if want, ok := oracle[id]; ok && want != g {
				t.Fatalf("stream %d: emitted\n%s\nx/net reads\n%s", id, g, want)
			}
		}
		checkFragments(t, data)
		mid := fuzzRun(t, data, [][]byte{data[len(data)/3:]}, true)
		for id, g := range mid.byID {
			if w, ok := whole.byID[id]; ok && w != g {
				t.Fatalf("stream %d joined mid-stream:\n%s\nwhole:\n%s", id, g, w)
			}
		}
	})
}

type fuzzResult struct {
	transcript string
	byID       map[uint32]string // method, authority, path and fields of each whole request
}

func requestKey(r httpmsg.Request) string {
	return fmt.Sprintf("%s %s %s %s\n%s", r.Method(), r.Scheme(), r.Authority(), r.Path(), fieldsString(r.VisitHeaders))
}

func fuzzRun(t *testing.T, data []byte, parts [][]byte, mid bool) fuzzResult {
	res := fuzzResult{byID: map[uint32]string{}}
	var sb strings.Builder
	kept := map[any]int{}
	var stats Stats
	n := 0
	budget := newCheckedBudget(t, 1<<40) // never refuses: the feeds must agree
	cfg := Config{
		Stats: &stats, HoldBody: 200, MaxHeaderListSize: 4096, MaxStreams: 8, Budget: budget,
		Keep: func(r httpmsg.Request) (any, bool) {
			n++
			if n%5 == 0 {
				return nil, false
			}
			tag := n
			kept[tag] = 0
			return tag, true
		},
		Emit: func(r httpmsg.Request, tag any) {
			kept[tag]++
			key := requestKey(r)
			if !mid || r.Stream() == nil {
				res.byID[r.StreamID()] = key
			}
			var body []byte
			r.VisitBody(func(b []byte) bool { body = append(body, b...); return true })
			fmt.Fprintf(&sb, "emit %d %v %q %q\n%s", r.StreamID(), r.Stream() != nil, body, fieldsString(r.VisitTrailers), key)
			r.Release()
		},
		Drop: func(tag any, why Reason) {
			kept[tag]++
			fmt.Fprintf(&sb, "drop %v %v\n", tag, why)
		},
	}
	c := NewConn(&cfg, testClient, testServer, mid)
	for _, p := range parts {
		c.ClientData(p, t0)
	}
	c.End()
	if u := budget.Used(); u != 0 {
		t.Fatalf("%d bytes still charged after End", u)
	}
	for tag, k := range kept {
		if k != 1 {
			t.Fatalf("request %v: %d Emit or Drop calls", tag, k)
		}
	}
	fmt.Fprintf(&sb, "skipped %s gave up %s", stats.skipped(), stats.gaveUp())
	res.transcript = sb.String()
	return res
}

// xnetRequests reads the client's bytes with x/net's Framer and hpack
// decoder, as an endpoint would, up to the first connection error.
func xnetRequests(data []byte) map[uint32]string {
	out := map[uint32]string{}
	if !IsPreface(data) {
		return out
	}
	fr := http2.NewFramer(io.Discard, bytes.NewReader(data[len(Preface):]))
	dec := hpack.NewDecoder(initialTableSize, nil)
	dec.SetAllowedMaxDynamicTableSize(DefaultMaxTableSize)
	fr.ReadMetaHeaders = dec
	fr.MaxHeaderListSize = 4096
	fr.SetMaxReadFrameSize(DefaultMaxFrameSize)
	seen := map[uint32]bool{}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if _, ok := err.(http2.StreamError); ok {
				continue
			}
			return out
		}
		mh, ok := f.(*http2.MetaHeadersFrame)
		if !ok || seen[mh.StreamID] {
			continue
		}
		seen[mh.StreamID] = true
		if mh.Truncated {
			continue
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "%s %s %s %s\n", mh.PseudoValue("method"), mh.PseudoValue("scheme"), authorityOf(mh), mh.PseudoValue("path"))
		for _, hf := range mh.RegularFields() {
			fmt.Fprintf(&sb, "%s: %s\n", hf.Name, hf.Value)
		}
		out[mh.StreamID] = sb.String()
	}
}

func authorityOf(mh *http2.MetaHeadersFrame) string {
	if a := mh.PseudoValue("authority"); a != "" {
		return a
	}
	for _, hf := range mh.Fields {
		if hf.Name == "host" {
			return hf.Value
		}
	}
	return ""
}

// checkFragments cuts every HEADERS frame both ways.
func checkFragments(t *testing.T, data []byte) {
	if !IsPreface(data) {
		return
	}
	b := data[len(Preface):]
	for len(b) >= frameHeaderLen {
		h := parseHeader(b)
		end := frameHeaderLen + int(h.length)
		if end > len(b) {
			return
		}
		if h.typ == http2.FrameHeaders && h.stream != 0 {
			frag, ok := headersFragment(&h, b[frameHeaderLen:end])
			f, fr, err := readFrame(b[:end])
			if (err == nil) != ok {
				t.Fatalf("HEADERS %+v: cut %v, Framer %v", h, ok, err)
			}
			if ok && !bytes.Equal(frag, fr.(*http2.HeadersFrame).HeaderBlockFragment()) {
				t.Fatalf("HEADERS %+v: fragments differ", h)
			}
			putFramer(f)
		}
		b = b[end:]
	}
}
