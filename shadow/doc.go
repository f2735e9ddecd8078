// Package shadow decides which captured requests are mirrored, rewrites them
// the way an in-proxy mirror would, and replays them to a shadow backend,
// fire and forget.
//
// The three parts are used in this order by the agent, once per request
// framed by httpframe:
//
//   - Sampler.Keep decides (Envoy's percentage semantics, optionally keyed on
//     a header so that a fleet agrees);
//   - Rewriter.AppendRequest serialises the request for the shadow (Host
//     "-shadow" suffix, X-Forwarded-For, hop-by-hop fields, configured
//     fields), called by the Sender's workers;
//   - Sender.Send queues it for one of a few persistent, pipelined
//     connections to the shadow, whose answers are read to the end, counted
//     in Stats and thrown away.
//
// Nothing here may slow the capture: Send never blocks, every queue is
// bounded and drops (and counts) when full, and memory is bounded by the
// queue's byte budget plus fixed per-worker buffers.
package shadow
