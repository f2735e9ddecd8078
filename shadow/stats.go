package shadow

import (
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DropReason says why Send refused a request. A dropped request is never
// queued, and Send returns false for it.
type DropReason uint8

// Reasons for a request not to be queued.
const (
	// DropOverflow: a limit was reached (the byte budget, or MaxPending
	// requests already waiting for a connection), as Envoy's circuit
	// breakers overflow.
	DropOverflow   DropReason = iota
	DropClosed                // Send was called after Close
	NumDropReasons            // the number of DropReason values
)

var dropNames = [NumDropReasons]string{"overflow", "closed"}

// String returns the reason as a snake_case metric label.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return fmt.Sprintf("drop_reason_%d", uint8(r))
}

// FailReason says why a queued request got no complete response.
type FailReason uint8

// Reasons for a queued request to fail. A failed request is never sent
// again, except as Stats.Retried and Stats.Requeued count.
const (
	FailConnect    FailReason = iota // dialling failed (refused, unreachable, timed out)
	FailTLS                          // the TLS handshake failed, or the shadow chose another protocol than http/1.1
	FailWrite                        // writing the request failed
	FailTimeout                      // no complete response within Timeout
	FailAborted                      // its connection failed while it waited behind another request (pipelining), or its body stream ended early
	FailReset                        // reset or EOF before the response was complete
	FailProtocol                     // the response could not be parsed
	FailShutdown                     // Close gave up waiting for it
	FailBackoff                      // not sent: no connection was open and dialling waits after a failed dial
	NumFailReasons                   // the number of FailReason values
)

var failNames = [NumFailReasons]string{
	"connect", "tls", "write", "timeout", "aborted", "reset", "protocol", "shutdown", "backoff",
}

// String returns the reason as a snake_case metric label.
func (r FailReason) String() string {
	if r < NumFailReasons {
		return failNames[r]
	}
	return fmt.Sprintf("fail_reason_%d", uint8(r))
}

// CloseCause says why a connection to the shadow was closed.
type CloseCause uint8

// Causes of a connection's end.
const (
	CloseIdleTimeout     CloseCause = iota // unused for IdleTimeout
	CloseShadowClosed                      // the shadow closed it (or reset it) while no answer was being read
	CloseConnectionClose                   // an answer ended it: Connection: close, HTTP/1.0 without keep-alive, or a body delimited by the close
	CloseTimeout                           // a request on it timed out
	CloseError                             // a read, write or protocol error
	CloseShutdown                          // Close
	NumCloseCauses                         // the number of CloseCause values
)

var closeNames = [NumCloseCauses]string{
	"idle_timeout", "shadow_closed", "connection_close", "timeout", "error", "shutdown",
}

// String returns the cause as a snake_case metric label.
func (c CloseCause) String() string {
	if c < NumCloseCauses {
		return closeNames[c]
	}
	return fmt.Sprintf("close_cause_%d", uint8(c))
}

const (
	minStatus = 100
	maxStatus = 599
)

// Stats counts what a Sender did. Every field is updated atomically, so the
// agent can read them at any time while the Sender runs; several Senders
// may share one Stats (a rule's old and new sender during a reload).
//
// The ledger: every request given to Send is counted once, in Dropped (not
// queued) or in Queued; once Close has returned, every queued request has
// been counted exactly once in Mirrored or Failed.
type Stats struct {
	Queued atomic.Uint64 // requests accepted by Send
	// Sent counts requests written whole to the shadow (HTTP/2: up to
	// their END_STREAM), once per request: one written again (Retried,
	// Requeued) counts once.
	Sent     atomic.Uint64
	Mirrored atomic.Uint64 // requests whose complete response was read
	// Retried counts requests sent again on a fresh connection where
	// net/http's Transport would retry: the connection had been used
	// before, no byte of the answer arrived, and the request is
	// idempotent or none of it had been written. At most once per request.
	Retried atomic.Uint64
	// Requeued counts requests that the shadow provably did not process,
	// put back in line: pipelined behind an answer that closed the
	// connection, or assigned to a connection that failed before they
	// were written.
	Requeued atomic.Uint64

	ConnectionsOpened atomic.Uint64                 // connections (and TLS sessions) established to the shadow
	ConnectionsClosed [NumCloseCauses]atomic.Uint64 // by CloseCause

	// Gauges.
	QueueBytes            atomic.Int64 // bytes of requests held now, from Send until answered or failed
	InFlight              atomic.Int64 // requests on a connection: being written or awaiting their answer
	Pending               atomic.Int64 // requests waiting for a connection (or, Ordered, for their turn)
	ConnectionsOpen       atomic.Int64 // connections established and not yet closed
	ConnectionsBusy       atomic.Int64 // open connections carrying a request
	ConnectionsIdle       atomic.Int64 // open connections waiting for one
	ConnectionsConnecting atomic.Int64 // dials and TLS handshakes in progress
	// PeakInFlight is the highest InFlight seen since the start: the
	// concurrency the shadow was asked for.
	PeakInFlight atomic.Int64

	Dropped [NumDropReasons]atomic.Uint64 // by DropReason
	Failed  [NumFailReasons]atomic.Uint64 // by FailReason

	// Latency runs from the write of a request to the end of its response.
	Latency Histogram
	// QueueDelay runs from Send to the write of a request.
	QueueDelay Histogram

	status      [maxStatus - minStatus + 1]atomic.Uint64
	statusOther atomic.Uint64
	// grpc counts the gRPC status of mirrored answers that carry one (in
	// their trailers, or in the headers of a trailers-only answer): codes
	// 0..MaxGRPCStatus, then the other values.
	grpc [MaxGRPCStatus + 2]atomic.Uint64
}

// sentOnce is what makes Stats.Sent count a request once: the requests
// counted already that went back in line, until they end. A sender guards
// it with its lock; it is empty (and costs nothing) unless requests are
// sent again.
type sentOnce map[*record]struct{}

// add notes that rec was counted.
func (m *sentOnce) add(rec *record) {
	if *m == nil {
		*m = sentOnce{}
	}
	(*m)[rec] = struct{}{}
}

// first reports whether a write of rec is the first to count.
func (m sentOnce) first(rec *record) bool {
	if len(m) == 0 {
		return true
	}
	_, ok := m[rec]
	return !ok
}

// forget drops rec, which ended.
func (m sentOnce) forget(rec *record) {
	if len(m) > 0 {
		delete(m, rec)
	}
}

// MaxGRPCStatus is the highest gRPC status code (UNAUTHENTICATED); the
// counters keep one for each code up to it and one for any other value.
const MaxGRPCStatus = 16

// grpcNone is an outcome's grpc when the answer has no grpc-status; a
// code c is kept as c+1, and grpcOther+1 for a value that is not one.
const (
	grpcNone  = 0
	grpcOther = MaxGRPCStatus + 1
)

// grpcCode parses a grpc-status value into an outcome's grpc field.
func grpcCode[T string | []byte](v T) uint8 {
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' || n > MaxGRPCStatus {
			return grpcOther + 1
		}
		n = n*10 + int(c-'0')
	}
	if len(v) == 0 || n > MaxGRPCStatus {
		return grpcOther + 1
	}
	return uint8(n) + 1
}

func (s *Stats) countGRPC(g uint8) {
	if g != grpcNone {
		s.grpc[g-1].Add(1)
	}
}

// GRPCStatus returns the number of mirrored answers with gRPC status code
// (0..MaxGRPCStatus), or with a value that is no such code when code is
// negative.
func (s *Stats) GRPCStatus(code int) uint64 {
	switch {
	case code < 0:
		return s.grpc[grpcOther].Load()
	case code <= MaxGRPCStatus:
		return s.grpc[code].Load()
	}
	return 0
}

// VisitGRPCStatus calls fn for every gRPC status code seen at least once,
// in increasing order, then with code -1 for other values if any.
func (s *Stats) VisitGRPCStatus(fn func(code int, n uint64)) {
	for i := 0; i <= MaxGRPCStatus; i++ {
		if n := s.grpc[i].Load(); n > 0 {
			fn(i, n)
		}
	}
	if n := s.grpc[grpcOther].Load(); n > 0 {
		fn(-1, n)
	}
}

// grpcLabel is the label of a gRPC status code as VisitGRPCStatus gives it.
func grpcLabel(code int) string {
	if code < 0 {
		return "other"
	}
	return strconv.Itoa(code)
}

func (s *Stats) countStatus(code int) {
	if code >= minStatus && code <= maxStatus {
		s.status[code-minStatus].Add(1)
		return
	}
	s.statusOther.Add(1)
}

// addInFlight moves the InFlight gauge by d and keeps PeakInFlight.
func (s *Stats) addInFlight(d int64) {
	v := s.InFlight.Add(d)
	for {
		p := s.PeakInFlight.Load()
		if v <= p || s.PeakInFlight.CompareAndSwap(p, v) {
			return
		}
	}
}

// Status returns the number of final responses with status code, or with a
// code outside 100..599 when code is 0.
func (s *Stats) Status(code int) uint64 {
	if code >= minStatus && code <= maxStatus {
		return s.status[code-minStatus].Load()
	}
	if code == 0 {
		return s.statusOther.Load()
	}
	return 0
}

// VisitStatus calls fn for every status code seen at least once, in
// increasing order, then with code 0 for codes outside 100..599 if any.
// Interim (1xx) responses are skipped, not counted: the count per code is of
// final responses, so the counts add up to Mirrored.
func (s *Stats) VisitStatus(fn func(code int, n uint64)) {
	for i := range s.status {
		if n := s.status[i].Load(); n > 0 {
			fn(i+minStatus, n)
		}
	}
	if n := s.statusOther.Load(); n > 0 {
		fn(0, n)
	}
}

// Snapshot is a copy of Stats in plain values, for a summary. Map keys are
// the String labels of the reasons and causes.
type Snapshot struct {
	Queued                uint64            `json:"queued"`
	Sent                  uint64            `json:"sent"`
	Mirrored              uint64            `json:"mirrored"`
	Retried               uint64            `json:"retried"`
	Requeued              uint64            `json:"requeued"`
	ConnectionsOpened     uint64            `json:"connections_opened"`
	ConnectionsClosed     map[string]uint64 `json:"connections_closed"` // non-zero counts by CloseCause label
	QueueBytes            int64             `json:"queue_bytes"`
	InFlight              int64             `json:"in_flight"`
	Pending               int64             `json:"pending"`
	PeakInFlight          int64             `json:"peak_in_flight"`
	ConnectionsOpen       int64             `json:"connections_open"`
	ConnectionsBusy       int64             `json:"connections_busy"`
	ConnectionsIdle       int64             `json:"connections_idle"`
	ConnectionsConnecting int64             `json:"connections_connecting"`
	Dropped               map[string]uint64 `json:"dropped"` // non-zero counts by DropReason label
	Failed                map[string]uint64 `json:"failed"`  // non-zero counts by FailReason label
	Status                map[int]uint64    `json:"status"`  // non-zero counts by final status; 0 is "other"
	// GRPCStatus counts the answers that carried a grpc-status, by code
	// ("0".."16", "other"); absent when none did.
	GRPCStatus map[string]uint64 `json:"grpc_status,omitempty"`
	Responses  uint64            `json:"responses"` // responses in the latency histogram
	LatencyP50 time.Duration     `json:"latency_p50_ns"`
	LatencyP99 time.Duration     `json:"latency_p99_ns"`
}

// Snapshot copies the counters. The copy is not atomic as a whole: counters
// read later may include requests that earlier ones do not.
func (s *Stats) Snapshot() Snapshot {
	sn := Snapshot{
		Queued:                s.Queued.Load(),
		Sent:                  s.Sent.Load(),
		Mirrored:              s.Mirrored.Load(),
		Retried:               s.Retried.Load(),
		Requeued:              s.Requeued.Load(),
		ConnectionsOpened:     s.ConnectionsOpened.Load(),
		ConnectionsClosed:     map[string]uint64{},
		QueueBytes:            s.QueueBytes.Load(),
		InFlight:              s.InFlight.Load(),
		Pending:               s.Pending.Load(),
		PeakInFlight:          s.PeakInFlight.Load(),
		ConnectionsOpen:       s.ConnectionsOpen.Load(),
		ConnectionsBusy:       s.ConnectionsBusy.Load(),
		ConnectionsIdle:       s.ConnectionsIdle.Load(),
		ConnectionsConnecting: s.ConnectionsConnecting.Load(),
		Dropped:               map[string]uint64{},
		Failed:                map[string]uint64{},
		Status:                map[int]uint64{},
		Responses:             s.Latency.Count(),
		LatencyP50:            s.Latency.Quantile(0.5),
		LatencyP99:            s.Latency.Quantile(0.99),
	}
	for c := range CloseCause(NumCloseCauses) {
		if n := s.ConnectionsClosed[c].Load(); n > 0 {
			sn.ConnectionsClosed[c.String()] = n
		}
	}
	for r := range DropReason(NumDropReasons) {
		if n := s.Dropped[r].Load(); n > 0 {
			sn.Dropped[r.String()] = n
		}
	}
	for r := range FailReason(NumFailReasons) {
		if n := s.Failed[r].Load(); n > 0 {
			sn.Failed[r.String()] = n
		}
	}
	s.VisitStatus(func(code int, n uint64) { sn.Status[code] = n })
	s.VisitGRPCStatus(func(code int, n uint64) {
		if sn.GRPCStatus == nil {
			sn.GRPCStatus = map[string]uint64{}
		}
		sn.GRPCStatus[grpcLabel(code)] = n
	})
	return sn
}

// String formats the snapshot on one line, maps in sorted order.
func (sn Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "queued=%d sent=%d mirrored=%d retried=%d requeued=%d in_flight=%d pending=%d peak_in_flight=%d queue_bytes=%d",
		sn.Queued, sn.Sent, sn.Mirrored, sn.Retried, sn.Requeued, sn.InFlight, sn.Pending, sn.PeakInFlight, sn.QueueBytes)
	fmt.Fprintf(&b, " connections_opened=%d connections_open=%d connections_busy=%d connections_idle=%d connections_connecting=%d",
		sn.ConnectionsOpened, sn.ConnectionsOpen, sn.ConnectionsBusy, sn.ConnectionsIdle, sn.ConnectionsConnecting)
	writeMap(&b, "connections_closed", sn.ConnectionsClosed)
	writeMap(&b, "dropped", sn.Dropped)
	writeMap(&b, "failed", sn.Failed)
	codes := make([]int, 0, len(sn.Status))
	for c := range sn.Status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		if c == 0 {
			fmt.Fprintf(&b, " status_other=%d", sn.Status[c])
		} else {
			fmt.Fprintf(&b, " status_%d=%d", c, sn.Status[c])
		}
	}
	if len(sn.GRPCStatus) > 0 {
		// In code order, "other" last.
		for c := 0; c <= MaxGRPCStatus; c++ {
			if n, ok := sn.GRPCStatus[grpcLabel(c)]; ok {
				fmt.Fprintf(&b, " grpc_status_%d=%d", c, n)
			}
		}
		if n, ok := sn.GRPCStatus["other"]; ok {
			fmt.Fprintf(&b, " grpc_status_other=%d", n)
		}
	}
	if sn.Responses > 0 {
		fmt.Fprintf(&b, " p50=%v p99=%v", sn.LatencyP50, sn.LatencyP99)
	}
	return b.String()
}

func writeMap(b *strings.Builder, prefix string, m map[string]uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(b, " %s_%s=%d", prefix, k, m[k])
	}
}

// Histogram buckets durations on a log scale with four buckets per power of
// two (each at most 25% wide), from 1µs to 2^26µs (about 67s), plus an
// overflow bucket. Observe is a few integer operations and one atomic add,
// with no allocation, so it can sit on the path of every response.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	sumNs  atomic.Int64
}

const (
	maxExp     = 25                // the highest power of two with its own four buckets
	numBounded = 4 + (maxExp-1)*4  // buckets with a finite upper bound: 100
	numBuckets = numBounded + 1    // plus overflow
	maxBoundUs = 1 << (maxExp + 1) // upper bound of the last finite bucket, in µs
)

// bucketBounds holds the inclusive upper bound of each finite bucket in µs.
var bucketBounds = func() (b [numBounded]uint64) {
	for i := range b {
		b[i] = boundOf(i)
	}
	return b
}()

// bucketOf returns the bucket of a value of v µs. Bucket i holds the values
// in (bound(i-1), bound(i)]: the scheme works on x = v-1 so that the bounds
// are inclusive, as Prometheus "le" buckets are.
func bucketOf(v uint64) int {
	if v <= 1 {
		return 0
	}
	x := v - 1
	if x < 4 {
		return int(x)
	}
	e := bits.Len64(x) - 1
	if e > maxExp {
		return numBounded
	}
	sub := int(x>>(e-2)) & 3
	return 4 + (e-2)*4 + sub
}

// boundOf returns the inclusive upper bound of bucket i in µs.
func boundOf(i int) uint64 {
	if i < 4 {
		return uint64(i + 1)
	}
	e := (i-4)/4 + 2
	sub := uint64((i - 4) % 4)
	return 1<<e + (sub+1)<<(e-2)
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := (uint64(d) + 999) / 1000
	h.counts[bucketOf(us)].Add(1)
	h.sumNs.Add(int64(d))
}

// Count returns the number of durations observed.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum returns the total of the durations observed.
func (h *Histogram) Sum() time.Duration { return time.Duration(h.sumNs.Load()) }

// Visit calls fn for every finite bucket in increasing order with its
// inclusive upper bound and the cumulative count of durations up to it, the
// shape of a Prometheus histogram. The +Inf bucket is the last cumulative
// count plus the overflow, which Visit passes with le < 0. An exporter may
// keep any subset of the bounds: cumulative counts stay correct.
func (h *Histogram) Visit(fn func(le time.Duration, cumulative uint64)) {
	var n uint64
	for i := 0; i < numBounded; i++ {
		n += h.counts[i].Load()
		fn(time.Duration(bucketBounds[i])*time.Microsecond, n)
	}
	fn(-1, n+h.counts[numBounded].Load())
}

// Quantile estimates the q-quantile (0 < q <= 1) by linear interpolation
// inside the bucket that holds it; the error is at most the bucket's width.
// It returns 0 when nothing was observed.
func (h *Histogram) Quantile(q float64) time.Duration {
	var counts [numBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen uint64
	for i, c := range counts {
		if c == 0 || float64(seen+c) < rank {
			seen += c
			continue
		}
		if i == numBounded {
			return time.Duration(maxBoundUs) * time.Microsecond
		}
		lo := 0.0
		if i > 0 {
			lo = float64(bucketBounds[i-1])
		}
		hi := float64(bucketBounds[i])
		frac := (rank - float64(seen)) / float64(c)
		return time.Duration((lo + (hi-lo)*frac) * float64(time.Microsecond))
	}
	return time.Duration(maxBoundUs) * time.Microsecond
}

// AddTo adds the counts of h to dst.
func (h *Histogram) AddTo(dst *Histogram) {
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			dst.counts[i].Add(n)
		}
	}
	dst.sumNs.Add(h.sumNs.Load())
}

// AddTo adds every counter of s to dst: the totals of several Senders (one
// per rule) for a summary. Gauges are added too, and so are the peaks (the
// sum is an upper bound of the peak of the total).
func (s *Stats) AddTo(dst *Stats) {
	dst.Queued.Add(s.Queued.Load())
	dst.Sent.Add(s.Sent.Load())
	dst.Mirrored.Add(s.Mirrored.Load())
	dst.Retried.Add(s.Retried.Load())
	dst.Requeued.Add(s.Requeued.Load())
	dst.ConnectionsOpened.Add(s.ConnectionsOpened.Load())
	for i := range s.ConnectionsClosed {
		dst.ConnectionsClosed[i].Add(s.ConnectionsClosed[i].Load())
	}
	dst.QueueBytes.Add(s.QueueBytes.Load())
	dst.InFlight.Add(s.InFlight.Load())
	dst.Pending.Add(s.Pending.Load())
	dst.PeakInFlight.Add(s.PeakInFlight.Load())
	dst.ConnectionsOpen.Add(s.ConnectionsOpen.Load())
	dst.ConnectionsBusy.Add(s.ConnectionsBusy.Load())
	dst.ConnectionsIdle.Add(s.ConnectionsIdle.Load())
	dst.ConnectionsConnecting.Add(s.ConnectionsConnecting.Load())
	for i := range s.Dropped {
		dst.Dropped[i].Add(s.Dropped[i].Load())
	}
	for i := range s.Failed {
		dst.Failed[i].Add(s.Failed[i].Load())
	}
	for i := range s.status {
		if n := s.status[i].Load(); n > 0 {
			dst.status[i].Add(n)
		}
	}
	dst.statusOther.Add(s.statusOther.Load())
	for i := range s.grpc {
		if n := s.grpc[i].Load(); n > 0 {
			dst.grpc[i].Add(n)
		}
	}
	s.Latency.AddTo(&dst.Latency)
	s.QueueDelay.AddTo(&dst.QueueDelay)
}
