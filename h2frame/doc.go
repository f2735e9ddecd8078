// Package h2frame finds HTTP/2 requests, and the server's answers to them,
// in the ordered bytes of a captured HTTP/2 cleartext (h2c) connection:
// prior knowledge (the client starts with the connection preface) or an
// HTTP/1.1 "Upgrade: h2c" (Conn.Upgrade).
//
// It is pure Go: it neither reads sockets nor knows where the bytes came
// from. A Conn takes both directions of one connection (ClientData,
// ServerData, ClientGap, ServerGap, Tick, End) and hands each kept request to
// Config.Emit as an httpmsg.Request, whole once its stream ends, or earlier as
// a streaming request whose body it goes on writing to an
// httpmsg.BodyStream. Every request not emitted is counted by Reason.
//
// Frames are read with x/net's http2.Framer, pooled and fed one whole frame
// at a time (HEADERS and CONTINUATION payloads, which the Framer would
// allocate a frame for, are cut here). Header blocks are decoded by this
// package's own HPACK decoder (hpack.go), because an observer, unlike an
// endpoint, may not know its table: a connection joined mid-stream, or a
// direction that lost bytes, only knows the entries inserted since. The
// decoder tracks which entries it knows, is checked against x/net's
// encoder and decoder, and allocates nothing once warm.
//
// Invariants:
//   - Never blocks: no call waits for anything; BodyStream writes are
//     bounded by its limit and abort instead of waiting.
//   - Bounded memory: per connection, at most one frame's bytes (or a
//     64 KiB search window) are held between calls, and an idle
//     connection holds only its Conn and HPACK tables (about 1.5 KB in
//     TestIdleConnMemory); the HPACK tables are capped
//     (Config.MaxTableSize), header blocks (twice MaxHeaderListSize),
//     streams (MaxStreams), held bodies (HoldBody, MaxBodyBytes), streamed
//     bodies (StreamBuffer) and kept answers (AnswerBodyCap) too. Over all
//     connections, held requests and the unread bytes of streaming bodies
//     are charged to Config.Budget, shared with the HTTP/1 framer; what it
//     cannot spare is not mirrored (ReasonMemory), and every byte taken is
//     given back when its request is emitted, dropped or ended. Nothing is
//     held for a request that is not kept: its DATA is skipped.
//   - Nothing guessed: a header field that refers to an HPACK entry never
//     seen makes its request unknown (ReasonStateUnknown); it is not
//     mirrored. After a gap, every request still arriving is dropped, since
//     the lost bytes may have been its own.
//   - Every kept request gets exactly one Emit or one Drop, and, with
//     Config.Answer set, every emitted one exactly one Answer call, after
//     its Emit (a nil Answer when it could not be captured).
//
// It imports httpmsg, httpsyntax and x/net only. It must never import the
// agent, the shadow sender, the BPF loader or the capture; pcapfile,
// reassembly and httpframe (whose Budget the agent hands it) are for its
// tests only.
package h2frame
