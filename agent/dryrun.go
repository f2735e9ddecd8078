package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// DryRunRecord is one line of `replay --dry-run --output jsonl`: what would
// be sent for one request.
type DryRunRecord struct {
	Time         time.Time   `json:"time"`
	Rule         string      `json:"rule"`
	Client       string      `json:"client"`
	Server       string      `json:"server"`
	Method       string      `json:"method"`
	Target       string      `json:"target"`
	Proto        string      `json:"proto"`
	StreamID     uint32      `json:"stream_id,omitempty"` // HTTP/2
	Host         string      `json:"host"`                // as captured (HTTP/2: :authority); "" when absent
	ShadowHost   string      `json:"shadow_host"`         // as it would be sent
	ShadowTarget string      `json:"shadow_target,omitempty"`
	Headers      [][2]string `json:"headers"` // as captured, in order
	Chunked      bool        `json:"chunked,omitempty"`
	BodyLen      int64       `json:"body_len"` // decoded
	BodySHA256   string      `json:"body_sha256"`
}

// dryRunPrinter writes a DryRunRecord per request instead of sending it.
type dryRunPrinter struct {
	printed atomic.Uint64

	mu     sync.Mutex
	w      *bufio.Writer
	enc    *json.Encoder
	buf    []byte
	fields []httpmsg.Field
	err    error
}

func newDryRunPrinter(w io.Writer) *dryRunPrinter {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &dryRunPrinter{w: bw, enc: enc}
}

// emit prints r as rt would send it.
func (p *dryRunPrinter) emit(r httpmsg.Request, rt *route) {
	defer r.Release()
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := DryRunRecord{
		Time:     r.Time().UTC(),
		Rule:     rt.rule.Name,
		Client:   r.Client().String(),
		Server:   r.Server().String(),
		Method:   string(r.Method()),
		Proto:    r.Proto().String(),
		StreamID: r.StreamID(),
		Headers:  [][2]string{},
	}
	r.VisitHeaders(func(name, value []byte) bool {
		rec.Headers = append(rec.Headers, [2]string{string(name), string(value)})
		return true
	})
	if h1, ok := r.(*httpframe.Request); ok {
		// The wire form: the target as sent, and the shadow's request as
		// the splicer writes it.
		rec.Target, rec.Chunked = string(h1.Target()), h1.Chunked
		if v, ok := h1.Header("Host"); ok {
			rec.Host = string(v)
		}
		p.buf = rt.rewriter.AppendHTTP1(p.buf[:0], h1)
		rec.ShadowHost = headerValue(p.buf, "host")
		if target := requestLineTarget(p.buf); target != rec.Target {
			rec.ShadowTarget = target
		}
	} else {
		rec.Target, rec.Host = string(r.Path()), string(r.Authority())
		p.fields = rt.rewriter.Fields(p.fields[:0], r)
		for _, f := range p.fields {
			if string(f.Name) == ":authority" {
				rec.ShadowHost = string(f.Value)
			}
		}
	}
	h := sha256.New()
	r.VisitBody(func(b []byte) bool { h.Write(b); return true })
	rec.BodyLen, rec.BodySHA256 = r.BodyLen(), hex.EncodeToString(h.Sum(nil))
	if err := p.enc.Encode(rec); err != nil && p.err == nil {
		p.err = err
	}
	p.printed.Add(1)
}

func (p *dryRunPrinter) flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.w.Flush(); err != nil && p.err == nil {
		p.err = err
	}
	return p.err
}

// requestLineTarget returns the target of a serialised request.
func requestLineTarget(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

// headerValue returns the first value of a header in a serialised request.
func headerValue(b []byte, name string) string {
	_, rest, _ := bytes.Cut(b, []byte("\n"))
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && httpsyntax.EqualFold(k, name) {
			return string(httpsyntax.TrimOWS(v))
		}
	}
	return ""
}
