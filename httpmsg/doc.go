// Package httpmsg is the protocol-neutral view of captured HTTP messages:
// the one shape in which routing, sampling, rewriting, sending, printing and
// comparing see a request or an answer, whichever framer (HTTP/1.x or
// HTTP/2) found it on the wire.
//
// A framer implements Request over its own buffers, without copying: an
// HTTP/1 request answers from the bytes and offsets of the request as
// captured, an HTTP/2 request from its decoded header list. Consumers that
// need the wire form of one protocol (the HTTP/1 byte splicer) ask the
// framer's own type for it; everything else uses this view only.
//
// Invariants:
//   - Byte slices returned by a Request alias its buffers: they are valid
//     until Release and must not be modified.
//   - A Request is owned by one party at a time; the last owner calls
//     Release exactly once.
//   - A BodyStream's producer never blocks: it is the capture path.
//
// It imports only httpsyntax: every other package may import it.
package httpmsg
