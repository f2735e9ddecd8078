package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowtee/shadowtee/httpframe"
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
	Host         string      `json:"host"`        // as captured; "" when absent
	ShadowHost   string      `json:"shadow_host"` // as it would be sent
	ShadowTarget string      `json:"shadow_target,omitempty"`
	Headers      [][2]string `json:"headers"` // as captured, in order
	Chunked      bool        `json:"chunked,omitempty"`
	BodyLen      int64       `json:"body_len"` // decoded
	BodySHA256   string      `json:"body_sha256"`
}

// dryRunPrinter writes a DryRunRecord per request instead of sending it.
type dryRunPrinter struct {
	printed atomic.Uint64

	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
	buf []byte
	err error
}

func newDryRunPrinter(w io.Writer) *dryRunPrinter {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &dryRunPrinter{w: bw, enc: enc}
}

// emit prints r as rt would send it.
func (p *dryRunPrinter) emit(r *httpframe.Request, rt *route) {
	defer r.Release()
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := DryRunRecord{
		Time:    r.Captured.UTC(),
		Rule:    rt.rule.Name,
		Client:  r.ClientAddr.String(),
		Server:  r.ServerAddr.String(),
		Method:  string(r.Bytes(r.MethodSpan)),
		Target:  string(r.Bytes(r.TargetSpan)),
		Proto:   string(r.Bytes(r.VersionSpan)),
		Chunked: r.Chunked,
		Headers: make([][2]string, 0, len(r.Headers)),
	}
	if s, ok := r.HeaderSpan("Host"); ok {
		rec.Host = string(r.Bytes(s))
	}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, [2]string{string(r.Bytes(h.Name)), string(r.Bytes(h.Value))})
	}
	p.buf = rt.rewriter.AppendRequest(p.buf[:0], r)
	target, host := requestLineTarget(p.buf), headerValue(p.buf, "host")
	rec.ShadowHost = host
	if target != rec.Target {
		rec.ShadowTarget = target
	}
	body := r.WireBody()
	if r.Chunked {
		// The decoded body is what the server sees; errors cannot happen on
		// a body the framer accepted, and would only shorten the hash input.
		body, _ = io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body)))
	}
	sum := sha256.Sum256(body)
	rec.BodyLen, rec.BodySHA256 = int64(len(body)), hex.EncodeToString(sum[:])
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
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}
