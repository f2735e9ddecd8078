package httpsyntax

import "bytes"

// NextListItem splits the first element off a comma-separated field value,
// trimmed of OWS. The element may be empty (",," or a trailing comma).
func NextListItem(v []byte) (item, rest []byte) {
	i := bytes.IndexByte(v, ',')
	if i < 0 {
		return TrimOWS(v), nil
	}
	return TrimOWS(v[:i]), v[i+1:]
}

// ForEachElement calls fn with each non-empty element of a comma-separated
// list, trimmed of OWS.
func ForEachElement(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var e []byte
		e, v = NextListItem(v)
		if len(e) > 0 {
			fn(e)
		}
	}
}

// HasToken reports whether the comma-separated list v holds tok, compared
// without regard to ASCII case: Connection: close, Upgrade: h2c.
func HasToken[T ~string | ~[]byte](v []byte, tok T) bool {
	for len(v) > 0 {
		var item []byte
		item, v = NextListItem(v)
		if EqualFold(item, tok) {
			return true
		}
	}
	return false
}

// LastElementIs reports whether the last non-empty element of the list v is
// tok (ASCII case folded): chunked must be the final transfer coding.
func LastElementIs(v []byte, tok string) bool {
	var last []byte
	ForEachElement(v, func(e []byte) { last = e })
	return EqualFold(last, tok)
}

// ParseDecimal parses 1 to 18 decimal digits, which keeps the value far
// from overflow and far beyond any body limit.
func ParseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ParseContentLength parses a Content-Length value: one decimal, or a list
// of equal ones (as some intermediaries send after merging fields). Every
// element must be a decimal (an empty one is refused), and elements are
// compared as text, as servers do, so "5, 05" is refused too.
func ParseContentLength(v []byte) (int64, bool) {
	var first []byte
	n := int64(-1)
	for {
		var item []byte
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			item, v = TrimOWS(v), nil
		} else {
			item, v = TrimOWS(v[:i]), v[i+1:]
		}
		m, ok := ParseDecimal(item)
		switch {
		case !ok:
			return 0, false
		case first == nil:
			first, n = item, m
		case !bytes.Equal(item, first):
			return 0, false
		}
		if i < 0 {
			return n, true
		}
	}
}
