package recorder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"time"
)

// Request is what arrived, as the server parsed it.
type Request struct {
	Time       time.Time
	RemoteAddr string
	Method     string
	Target     string // the request target as sent (RequestURI)
	Proto      string
	Host       string
	Header     http.Header
	BodyLen    int
	BodySHA256 string
	Chunked    bool
}

// Recorder wraps a handler and records the requests it serves.
type Recorder struct {
	next http.Handler

	mu      sync.Mutex
	reqs    []Request
	changed chan struct{}
}

// New returns a Recorder in front of next (nil answers 200 with no body).
func New(next http.Handler) *Recorder {
	if next == nil {
		next = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	}
	return &Recorder{next: next, changed: make(chan struct{})}
}

// ServeHTTP records the request, then serves it with the wrapped handler.
// The body is read here (and handed on), so its length and hash are known.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	sum := sha256.Sum256(body)
	rec := Request{
		Time:       time.Now(),
		RemoteAddr: req.RemoteAddr,
		Method:     req.Method,
		Target:     req.RequestURI,
		Proto:      req.Proto,
		Host:       req.Host,
		Header:     req.Header.Clone(),
		BodyLen:    len(body),
		BodySHA256: hex.EncodeToString(sum[:]),
		Chunked:    len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked",
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.next.ServeHTTP(w, req)
}

// Requests returns a copy of what was recorded so far.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Len returns the number of requests recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// Wait blocks until at least n requests were recorded, timeout passes or
// ctx ends, and reports whether n were reached.
func (r *Recorder) Wait(ctx context.Context, n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		have, changed := len(r.reqs), r.changed
		r.mu.Unlock()
		if have >= n {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}
