// Package httpsyntax holds the pieces of HTTP syntax (RFC 9110, RFC 9112)
// that every part of shadowtee reads the same way: character classes,
// tokens and case-insensitive names, list fields, Content-Length, the
// chunked coding, a host's port, an origin URL, and which fields belong to a
// connection rather than to a message.
//
// It is pure, allocation-free where it is on the per-request path, and
// imports nothing of the project: the framers, the rewriter, the sender, the
// rules file and the benchmarks all build on it, so it must stay a leaf.
package httpsyntax
