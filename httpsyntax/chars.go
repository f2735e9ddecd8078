package httpsyntax

// Character classes of RFC 9110 and RFC 9112, one table lookup per byte.
const (
	ClassToken  = 1 << iota // tchar: method and field-name bytes
	ClassValue              // field-vchar, SP, HTAB: field-value bytes
	ClassTarget             // visible bytes, obs-text included: request-target bytes
)

var classes = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		var k uint8
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			k |= ClassToken
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			k |= ClassToken
		}
		if c > 0x20 && c != 0x7f {
			k |= ClassValue | ClassTarget
		}
		if c == ' ' || c == '\t' {
			k |= ClassValue
		}
		t[c] = k
	}
	return t
}()

// Class returns the character classes of c, a set of Class* bits.
func Class(c byte) uint8 { return classes[c] }

// IsTchar reports whether c may appear in a token (field names, methods,
// list elements such as connection options).
func IsTchar(c byte) bool { return classes[c]&ClassToken != 0 }

// IsToken reports whether b is a non-empty token.
func IsToken[T ~string | ~[]byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if classes[b[i]]&ClassToken == 0 {
			return false
		}
	}
	return true
}

// EqualFold reports whether a and b are equal without regard to ASCII case,
// the only case folding HTTP names have. It does not allocate.
func EqualFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// HasPrefixFold reports whether b starts with prefix, without regard to
// ASCII case.
func HasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && EqualFold(b[:len(prefix)], prefix)
}

// TrimOWS returns b without leading and trailing SP and HTAB.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// TrimOWSBounds returns the bounds of b[s:e] without leading and trailing SP
// and HTAB, for callers that keep offsets rather than slices.
func TrimOWSBounds(b []byte, s, e int) (int, int) {
	for s < e && (b[s] == ' ' || b[s] == '\t') {
		s++
	}
	for e > s && (b[e-1] == ' ' || b[e-1] == '\t') {
		e--
	}
	return s, e
}

// CheckFieldValue reports an error when v cannot be sent as a field value:
// it holds a control character (CR, LF, NUL, DEL...).
func CheckFieldValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; classes[c]&ClassValue == 0 && c < 0x80 {
			return errControl
		}
	}
	return nil
}

type syntaxError string

func (e syntaxError) Error() string { return string(e) }

const errControl = syntaxError("value contains a control character (CR, LF, NUL or similar)")
