package httpframe

import (
	"github.com/shadowtee/shadowtee/httpsyntax"

	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	testClient = netip.MustParseAddrPort("198.18.0.1:40000")
	testServer = netip.MustParseAddrPort("198.18.0.2:8080")
	t0         = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
)

// gap, as a piece given to harness.feed, calls Gap instead of Data.
const gap = "\x00<gap>\x00"

// harness drives one Parser and collects what it emits.
type harness struct {
	cfg       Config
	stats     Stats
	p         *Parser
	got       []*Request
	keepCalls int
	keep      func(*Request) bool
}

func newHarness(mid bool, tweak func(*Config)) *harness {
	h := &harness{}
	h.cfg.Stats = &h.stats
	h.cfg.Emit = func(r *Request, _ any) { h.got = append(h.got, r) }
	h.cfg.Keep = func(r *Request) (any, bool) {
		h.keepCalls++
		if len(r.Raw) != r.HeadEnd {
			panic("Keep sees more than the head")
		}
		return nil, h.keep == nil || h.keep(r)
	}
	if tweak != nil {
		tweak(&h.cfg)
	}
	h.p = NewParser(&h.cfg, testClient, testServer, mid)
	return h
}

// feed gives the parser each piece in turn, piece i at t0+i seconds. Each
// piece is copied into a scratch buffer that is scribbled over after the
// call, so that a parser keeping a reference to it is caught.
func (h *harness) feed(pieces ...string) {
	for i, s := range pieces {
		if s == gap {
			h.p.Gap()
			continue
		}
		b := []byte(s)
		h.p.Data(b, t0.Add(time.Duration(i)*time.Second))
		for k := range b {
			b[k] = '#'
		}
	}
}

// release returns every collected request to the pools.
func (h *harness) release() {
	for _, r := range h.got {
		r.Release()
	}
	h.got = nil
}

// counts is a comparable snapshot of Stats.
type counts struct {
	Requests, Emitted, Resyncs, Garbage, Opaque uint64
	Skipped                                     map[string]uint64
}

func snapshot(s *Stats) counts {
	c := counts{
		Requests: s.Requests.Load(),
		Emitted:  s.Emitted.Load(),
		Resyncs:  s.Resyncs.Load(),
		Garbage:  s.GarbageBytes.Load(),
		Opaque:   s.OpaqueBytes.Load(),
	}
	for r := Reason(0); r < NumReasons; r++ {
		if n := s.Skipped[r].Load(); n > 0 {
			if c.Skipped == nil {
				c.Skipped = map[string]uint64{}
			}
			c.Skipped[r.String()] = n
		}
	}
	return c
}

func (c counts) String() string {
	return fmt.Sprintf("requests=%d emitted=%d resyncs=%d garbage=%d opaque=%d skipped=%v",
		c.Requests, c.Emitted, c.Resyncs, c.Garbage, c.Opaque, c.Skipped)
}

// checkRequest verifies that the spans and lengths of r agree with its Raw
// bytes; it returns the decoded body.
func checkRequest(r *Request) ([]byte, error) {
	raw := r.Raw
	if r.HeadEnd < 0 || r.HeadEnd > len(raw) {
		return nil, fmt.Errorf("HeadEnd %d out of range %d", r.HeadEnd, len(raw))
	}
	head := raw[:r.HeadEnd]
	if !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\n\r\n")) {
		return nil, fmt.Errorf("head does not end with a blank line: %q", head)
	}
	if r.MethodSpan.Start != 0 || r.MethodSpan.Len() == 0 || !httpsyntax.IsToken(r.Bytes(r.MethodSpan)) || raw[r.MethodSpan.End] != ' ' {
		return nil, fmt.Errorf("bad method span %v", r.MethodSpan)
	}
	if r.TargetSpan.Start != r.MethodSpan.End+1 || r.TargetSpan.Len() == 0 || raw[r.TargetSpan.End] != ' ' ||
		bytes.ContainsAny(r.Bytes(r.TargetSpan), " \r\n\t") {
		return nil, fmt.Errorf("bad target span %v", r.TargetSpan)
	}
	if r.VersionSpan.Start != r.TargetSpan.End+1 || string(r.Bytes(r.VersionSpan)) != "HTTP/1."+strconv.Itoa(r.Minor) ||
		r.Minor > 1 {
		return nil, fmt.Errorf("bad version span %v, minor %d", r.VersionSpan, r.Minor)
	}
	next := r.VersionSpan.End
	if raw[next] == '\r' {
		next++
	}
	if raw[next] != '\n' {
		return nil, errors.New("request line does not end with LF")
	}
	next++
	for i, h := range r.Headers {
		if h.Line.Start != next || h.Line.End > r.HeadEnd || raw[h.Line.End-1] != '\n' {
			return nil, fmt.Errorf("header %d: bad line span %v", i, h.Line)
		}
		if h.Name.Start != h.Line.Start || raw[h.Name.End] != ':' || !httpsyntax.IsToken(r.Bytes(h.Name)) {
			return nil, fmt.Errorf("header %d: bad name span %v", i, h.Name)
		}
		if h.Value.Start <= h.Name.End || h.Value.End >= h.Line.End || h.Value.End < h.Value.Start {
			return nil, fmt.Errorf("header %d: bad value span %v", i, h.Value)
		}
		v := r.Bytes(h.Value)
		if strings.Trim(string(v), " \t") != string(v) || strings.Trim(string(raw[h.Name.End+1:h.Value.Start]), " \t") != "" {
			return nil, fmt.Errorf("header %d: value %q not trimmed", i, v)
		}
		next = h.Line.End
	}
	if rest := string(raw[next:r.HeadEnd]); rest != "\r\n" && rest != "\n" {
		return nil, fmt.Errorf("blank line expected after the headers, got %q", rest)
	}
	if r.ClientAddr != testClient || r.ServerAddr != testServer {
		return nil, fmt.Errorf("endpoints %v -> %v", r.ClientAddr, r.ServerAddr)
	}
	body := r.WireBody()
	switch {
	case r.Chunked:
		if r.ContentLength != -1 {
			return nil, fmt.Errorf("chunked with ContentLength %d", r.ContentLength)
		}
		data, _, err := decodeChunked(body)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != r.DecodedLen {
			return nil, fmt.Errorf("BodyLen %d, decoded %d", r.DecodedLen, len(data))
		}
		return data, nil
	case r.ContentLength >= 0:
		if int64(len(body)) != r.ContentLength || r.DecodedLen != r.ContentLength {
			return nil, fmt.Errorf("body %d bytes, ContentLength %d, BodyLen %d", len(body), r.ContentLength, r.DecodedLen)
		}
	default:
		if len(body) != 0 || r.DecodedLen != 0 || r.ContentLength != -1 {
			return nil, fmt.Errorf("unframed body of %d bytes", len(body))
		}
	}
	return body, nil
}

// decodeChunked removes the chunked coding, written here independently of
// httpsyntax.ChunkedScanner so that each checks the other. It returns the data and
// the trailer lines; the whole of body must be used.
func decodeChunked(body []byte) (data []byte, trailers []string, err error) {
	line := func() (string, bool) {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			return "", false
		}
		l := strings.TrimSuffix(string(body[:i]), "\r")
		body = body[i+1:]
		return l, true
	}
	for {
		l, ok := line()
		if !ok {
			return nil, nil, errors.New("chunk size line missing")
		}
		size, _, _ := strings.Cut(l, ";")
		n, err := strconv.ParseUint(strings.TrimRight(size, " \t"), 16, 62)
		if err != nil {
			return nil, nil, fmt.Errorf("chunk size %q: %v", l, err)
		}
		if n == 0 {
			break
		}
		if uint64(len(body)) < n {
			return nil, nil, errors.New("short chunk")
		}
		data, body = append(data, body[:n]...), body[n:]
		if l, ok := line(); !ok || l != "" {
			return nil, nil, errors.New("no line end after chunk data")
		}
	}
	for {
		l, ok := line()
		if !ok {
			return nil, nil, errors.New("trailer section not ended")
		}
		if l == "" {
			break
		}
		trailers = append(trailers, l)
	}
	if len(body) != 0 {
		return nil, nil, fmt.Errorf("%d bytes after the chunked body", len(body))
	}
	return data, trailers, nil
}

// checkAll runs checkRequest on every collected request.
func (h *harness) checkAll(t *testing.T) {
	t.Helper()
	for i, r := range h.got {
		if _, err := checkRequest(r); err != nil {
			t.Errorf("request %d %q: %v", i, r.Raw, err)
		}
	}
}
