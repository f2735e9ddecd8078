package shadow

import "github.com/shadowtee/shadowtee/httpframe"

// releaseRequest hands r's buffers back to the framer's pools. Every request
// given to Sender.Send reaches this function exactly once, whatever its fate;
// it is the one place that calls Release.
func releaseRequest(r *httpframe.Request) { r.Release() }

// headerValue returns the value of the first field of r named name (ASCII
// case-insensitive).
func headerValue(r *httpframe.Request, name string) ([]byte, bool) {
	sp, ok := r.HeaderSpan(name)
	if !ok {
		return nil, false
	}
	return r.Bytes(sp), true
}

// equalFold reports whether b and s are equal under ASCII case folding, the
// only folding HTTP field names have.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if !sameFold(b[i], s[i]) {
			return false
		}
	}
	return true
}

// equalFoldBytes is equalFold for two byte slices.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if !sameFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameFold reports whether x and y are the same byte or the same ASCII
// letter in either case.
func sameFold(x, y byte) bool {
	if x == y {
		return true
	}
	lx := x | 0x20
	return lx == y|0x20 && 'a' <= lx && lx <= 'z'
}

// isTchar reports whether c may appear in an RFC 9110 token (field names,
// methods, connection options).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitive), as in Connection: keep-alive, Upgrade.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		item, v = nextListItem(v)
		if equalFold(item, tok) {
			return true
		}
	}
	return false
}

// nextListItem splits the first element off a comma-separated field value,
// trimming optional whitespace around it.
func nextListItem(v []byte) (item, rest []byte) {
	i := 0
	for i < len(v) && v[i] != ',' {
		i++
	}
	item, rest = trimOWS(v[:i]), nil
	if i < len(v) {
		rest = v[i+1:]
	}
	return item, rest
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// fieldKind sorts the field names the rewriter treats specially.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldXFF
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldHopByHop // Keep-Alive, Proxy-Connection, TE, Upgrade
)

// classify returns the kind of field name. The switch on length keeps the
// common case (an ordinary field) to one or two comparisons.
func classify(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return fieldHopByHop
		}
	case 4:
		if equalFold(name, "host") {
			return fieldHost
		}
	case 7:
		if equalFold(name, "upgrade") {
			return fieldHopByHop
		}
	case 10:
		if equalFold(name, "connection") {
			return fieldConnection
		}
		if equalFold(name, "keep-alive") {
			return fieldHopByHop
		}
	case 14:
		if equalFold(name, "content-length") {
			return fieldContentLength
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return fieldXFF
		}
	case 16:
		if equalFold(name, "proxy-connection") {
			return fieldHopByHop
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
	}
	return fieldOther
}
