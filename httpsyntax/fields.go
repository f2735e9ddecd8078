package httpsyntax

// Fields that a rewriter of requests must treat apart.

// IsFramingField reports whether a request field decides where the message
// ends, or names the server: Host, Content-Length, Transfer-Encoding. They
// may be neither set nor removed by configuration.
func IsFramingField[T ~string | ~[]byte](name T) bool {
	return EqualFold(name, "host") || EqualFold(name, "content-length") || EqualFold(name, "transfer-encoding")
}

// IsConnectionField reports whether a field describes the connection
// rather than the message (RFC 9110 7.6.1): Connection, Keep-Alive,
// Proxy-Connection, TE, Upgrade. A mirror owns its own connection, so these
// are never forwarded, nor set by configuration.
func IsConnectionField[T ~string | ~[]byte](name T) bool {
	switch len(name) {
	case 2:
		return EqualFold(name, "te")
	case 7:
		return EqualFold(name, "upgrade")
	case 10:
		return EqualFold(name, "connection") || EqualFold(name, "keep-alive")
	case 16:
		return EqualFold(name, "proxy-connection")
	}
	return false
}
