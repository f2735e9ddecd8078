// Package shadow decides which captured requests are mirrored, rewrites them
// the way an in-proxy mirror would, and replays them to a shadow backend,
// fire and forget.
//
// The agent uses its parts in this order, once per request framed by
// httpframe or h2frame, all on the protocol-neutral
// httpmsg.Request:
//
//   - Sampler.Keep decides (Envoy's percentage semantics, optionally keyed on
//     a header so that a fleet agrees); IsShadowed spots requests that are
//     mirrors already;
//   - Sender.Send takes the request for the rule's shadow, by one of two
//     senders. NewHTTP1: each request goes out as its own HTTP/1.1 request
//     on a pool of keep-alive connections that grows with the requests in
//     flight and shrinks when they idle. NewHTTP2: each request is a stream
//     on a few HTTP/2 connections (h2c with prior knowledge for http://,
//     h2 by ALPN for https://), as many per connection as the shadow's
//     SETTINGS_MAX_CONCURRENT_STREAMS allows, another connection only when
//     every open one is full; HTTP/1 requests given to it go as HTTP/2
//     too, gRPC calls and streaming bodies stream. Both keep circuit
//     breakers as Envoy's (connections, pending, requests) and a byte
//     budget; answers are read to the end, counted in Stats (status, and
//     grpc-status for HTTP/2) and thrown away, or handed to
//     SenderConfig.Answer for comparison;
//   - the Rewriter serialises it for the shadow (Host "-shadow" suffix,
//     X-Forwarded-For, hop-by-hop fields, configured fields): AppendHTTP1
//     splices a captured HTTP/1 request byte for byte, EncodeHTTP1 writes a
//     request that has no HTTP/1 wire form, Fields lists the header fields
//     an HTTP/2 sender encodes.
//
// The senders are in two layers: pool.go holds what does not depend on the
// shadow's protocol (dialling and TLS with session resumption, the byte
// budget, admission and the ledger, the pending line, the
// per-client-connection order, the dial backoff); http1.go and conn.go
// the HTTP/1.1 connections, http2.go and h2conn.go the HTTP/2 ones.
//
// Invariants:
//   - Send never blocks the capture: past a limit a request is dropped and
//     counted, and a request that finds an idle connection is written into
//     an empty socket buffer (small ones only; the rest go to a writer
//     goroutine). Only a sender made for a capture file (SenderConfig.Wait)
//     waits for room.
//   - Memory is bounded by the byte budget (every request is charged from
//     Send until it ends) plus per-connection buffers (one read buffer and
//     one reused write buffer each, at most MaxConnections of them).
//   - Every request given to Send ends exactly once: dropped (Send returns
//     false), or queued and then mirrored or failed, each counted in Stats
//     by reason; once Close has returned, Queued == Mirrored + Failed. Every
//     request is Released once, by the sender.
//   - A request is sent again only when the shadow provably did not
//     process it (Requeued), or where net/http's Transport would retry it
//     (Retried, once).
//   - A slow, hung or endless answer holds its own connection (HTTP/1) or
//     stream (HTTP/2) and nothing else, until Timeout. An HTTP/2 stream
//     past its Timeout is reset (RST_STREAM CANCEL); a connection on
//     which nothing arrived for any stream since such a stream started is
//     closed.
//   - HTTP/2: Send and the connection's reader only append frames to the
//     connection's next write (HEADERS are HPACK-encoded there, in stream
//     id order); one writer goroutine per connection writes them, so a
//     shadow that stops reading never blocks capture. Flow control is
//     honoured both ways: a body waits for its window in the request that
//     holds it; a streaming body is taken from its BodyStream one batch at
//     a time, once the one before is sent, so a request lasting an hour
//     holds its stream's buffer and one batch, and streams take turns, one
//     frame each. GOAWAY: streams above its last id go again on another
//     connection (Requeued), those at or below it that get no answer fail;
//     REFUSED_STREAM goes again once (Retried); any other RST_STREAM
//     fails. A streaming body whose first chunk was taken is never sent
//     again.
//
// It must never import the agent, config, bpf or capture packages: it
// knows requests and shadows, not where they came from. httpframe is
// imported for the HTTP/1 splicer only.
package shadow
