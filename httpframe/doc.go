// Package httpframe finds HTTP/1.x requests in the ordered bytes of a TCP
// stream, as a server would frame them: request line, header block, and a
// body delimited by Content-Length or chunked coding; and the server's
// answers in the other direction (ResponseParser), paired with the requests
// in order.
//
// It is pure Go: it neither reads sockets nor knows where the bytes came from.
//
// A Parser serves one client-to-server stream (it satisfies the Stream
// interface of package reassembly) and hands each complete request, head
// and whole body, to Config.Emit, as an httpmsg.Request over the bytes as
// captured (Raw and spans, for byte-exact splicing). Requests whose body is
// incomplete, too large, or not wanted by Config.Keep are framed but not
// emitted; the framer counts its own reasons in Stats, the consumer its
// refusals, and every kept request gets one Emit or one Drop.
//
// Invariants: no call blocks; memory is bounded by MaxHeaderBytes,
// MaxBodyBytes and the shared Budget; bytes are held only while a request
// is split across calls. It must not import anything of the project but
// httpmsg and httpsyntax, and knows nothing of its consumer.
//
// Framing follows RFC 9112, with these choices where it leaves room:
//   - bare LF line ends are accepted, and empty lines before a request line
//     are skipped;
//   - obs-fold and whitespace between a field name and its colon are
//     refused as malformed;
//   - a Transfer-Encoding whose last coding is chunked frames the body and
//     overrides Content-Length; any other Transfer-Encoding, or one in
//     HTTP/1.0, is malformed;
//   - Content-Length may repeat one value, in several fields or as a list;
//     differing or non-decimal values are malformed;
//   - a request framed soundly that a server would still refuse (HTTP/1.1
//     without Host, several Host fields, a target of no known form) is
//     counted as malformed and skipped, and framing goes on;
//   - CONNECT and the HTTP/2 preface end HTTP/1 on the stream; an h2c
//     upgrade request is framed and held for the connection (Switched,
//     TakeUpgrade), which hands what follows to an HTTP/2 framer; any other
//     protocol upgrade request is skipped and may end HTTP/1, so the parser
//     then looks for a request line, as it does after a gap, malformed
//     input, or a mid-stream start (see Stats.Resyncs).
package httpframe
