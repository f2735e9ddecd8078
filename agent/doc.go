// Package agent wires the stages of shadowtee together and owns their
// lifecycle: the source (the live capture behind the Capture seam, or a
// capture file), reassembly and framing in connection-sharded workers (the
// connection object picks HTTP/1 or HTTP/2 per connection and pairs answers
// with requests), then the mirror: routing by rules, sampling, and the
// senders; and, when asked, the comparison of the shadow's answers with the
// primary's. It also serves metrics, health and the comparison's page,
// reloads the rules, and writes the summary.
//
// Data crosses it once, left to right:
//
//	Capture -> Pipeline (shards: reassembly, conn: httpframe | h2frame)
//	        -> mirror (config.Router, shadow.Sampler, shadow.Sender)
//	        -> comparer (compare.Engine), with the primary's answers from conn
//
// Invariants:
//   - Nothing here makes the capture wait: hand-offs to the shards and to
//     the senders drop and count when full (a capture file waits instead).
//   - Every framed request ends in exactly one of skipped (by reason),
//     dropped, failed or mirrored; the Summary and /metrics are made from the
//     same counters (metrics.go lists every family once).
//   - Nothing runs on a timer while nothing is held: the shards sleep until
//     the next deadline of what they hold.
//
// It imports every stage; no stage imports it. cli is its only user.
package agent
