package compare

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON scanner: just enough of RFC 8259 to walk two documents in lock
// step, skip values, compare numbers by value and strings after unescaping,
// without building trees. It is lenient where leniency costs nothing
// (control characters in strings, invalid escapes) and strict about
// structure, so that a body that is not JSON is compared as bytes.

var (
	errJSONSyntax = errors.New("not JSON")
	errJSONEOF    = errors.New("JSON ends early")
	errJSONDepth  = errors.New("JSON nested too deep")
)

// maxJSONDepth bounds nesting, for the recursive walks and for skipValue's
// stack.
const maxJSONDepth = 512

// JSON value kinds.
const (
	jNone uint8 = iota
	jObject
	jArray
	jString
	jNumber
	jBool
	jNull
)

var jsonKinds = func() (t [256]uint8) {
	t['{'], t['['], t['"'] = jObject, jArray, jString
	t['-'] = jNumber
	for c := '0'; c <= '9'; c++ {
		t[c] = jNumber
	}
	t['t'], t['f'], t['n'] = jBool, jBool, jNull
	return t
}()

var jsonKindNames = [...]string{"none", "object", "array", "string", "number", "boolean", "null"}

func ws(d []byte, i int) int {
	if i < len(d) && d[i] > ' ' {
		return i
	}
	for i < len(d) {
		switch d[i] {
		case ' ', '\n', '\r', '\t':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index after the string that starts at d[i] ('"').
func scanString(d []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(d[j:], '"')
		if k < 0 {
			return len(d), errJSONEOF
		}
		q := j + k
		n := 0
		for p := q - 1; p > i && d[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber returns the index after the number that starts at d[i].
func scanNumber(d []byte, i int) (int, error) {
	j := i
	if d[j] == '-' {
		j++
	}
	if j >= len(d) {
		return j, errJSONEOF
	}
	switch {
	case d[j] == '0':
		j++
	case isDigit(d[j]):
		for j < len(d) && isDigit(d[j]) {
			j++
		}
	default:
		return j, errJSONSyntax
	}
	if j < len(d) && d[j] == '.' {
		j++
		k := j
		for j < len(d) && isDigit(d[j]) {
			j++
		}
		if j == k {
			if j >= len(d) {
				return j, errJSONEOF
			}
			return j, errJSONSyntax
		}
	}
	if j < len(d) && (d[j] == 'e' || d[j] == 'E') {
		j++
		if j < len(d) && (d[j] == '+' || d[j] == '-') {
			j++
		}
		k := j
		for j < len(d) && isDigit(d[j]) {
			j++
		}
		if j == k {
			if j >= len(d) {
				return j, errJSONEOF
			}
			return j, errJSONSyntax
		}
	}
	return j, nil
}

// scanLiteral returns the index after true, false or null at d[i].
func scanLiteral(d []byte, i int) (int, error) {
	var lit string
	switch d[i] {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	default:
		lit = "null"
	}
	rest := d[i:]
	if len(rest) < len(lit) {
		if string(rest) == lit[:len(rest)] {
			return len(d), errJSONEOF
		}
		return i, errJSONSyntax
	}
	if string(rest[:len(lit)]) != lit {
		return i, errJSONSyntax
	}
	return i + len(lit), nil
}

// scanScalar returns the end of the string, number or literal at d[i].
func scanScalar(d []byte, i int, k uint8) (int, error) {
	switch k {
	case jString:
		return scanString(d, i)
	case jNumber:
		return scanNumber(d, i)
	case jBool, jNull:
		return scanLiteral(d, i)
	}
	return i, errJSONSyntax
}

// memberKey reads `"key" :` at d[i] and returns the index after the colon.
func memberKey(d []byte, i int) (int, error) {
	if i >= len(d) {
		return i, errJSONEOF
	}
	if d[i] != '"' {
		return i, errJSONSyntax
	}
	e, err := scanString(d, i)
	if err != nil {
		return e, err
	}
	e = ws(d, e)
	if e >= len(d) {
		return e, errJSONEOF
	}
	if d[e] != ':' {
		return e, errJSONSyntax
	}
	return e + 1, nil
}

// skipValue returns the index after the JSON value that starts at or after
// d[i] (leading white space skipped), without recursion.
func skipValue(d []byte, i int) (int, error) {
	var objs [maxJSONDepth / 64]uint64 // one bit per open container: object
	depth := 0
	var err error
	for {
		// A value starts here.
		i = ws(d, i)
		if i >= len(d) {
			return i, errJSONEOF
		}
		c := d[i]
		switch k := jsonKinds[c]; k {
		case jObject, jArray:
			if depth == maxJSONDepth {
				return i, errJSONDepth
			}
			if k == jObject {
				objs[depth/64] |= 1 << (depth % 64)
			} else {
				objs[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = ws(d, i+1)
			if i >= len(d) {
				return i, errJSONEOF
			}
			if (k == jObject && d[i] == '}') || (k == jArray && d[i] == ']') {
				i++
				depth--
				break
			}
			if k == jObject {
				if i, err = memberKey(d, i); err != nil {
					return i, err
				}
			}
			continue
		case jNone:
			return i, errJSONSyntax
		default:
			if i, err = scanScalar(d, i, k); err != nil {
				return i, err
			}
		}
		// After a value: close containers until one continues.
	after:
		for {
			if depth == 0 {
				return i, nil
			}
			i = ws(d, i)
			if i >= len(d) {
				return i, errJSONEOF
			}
			obj := objs[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			switch d[i] {
			case ',':
				i++
				if obj {
					if i, err = memberKey(d, ws(d, i)); err != nil {
						return i, err
					}
				}
				break after
			case '}':
				if !obj {
					return i, errJSONSyntax
				}
				i++
				depth--
			case ']':
				if obj {
					return i, errJSONSyntax
				}
				i++
				depth--
			default:
				return i, errJSONSyntax
			}
		}
	}
}

// mismatch returns the length of the common prefix of a and b.
func mismatch(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	// Long equal stretches go by blocks, compared by the runtime's
	// vectorised memequal; the block that differs, by words.
	for i+128 <= n && string(a[i:i+128]) == string(b[i:i+128]) {
		i += 128
	}
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// mismatchBack returns the length of the common suffix of a and b.
func mismatchBack(a, b []byte) int {
	la, lb := len(a), len(b)
	n := min(la, lb)
	i := 0
	for i+128 <= n && string(a[la-i-128:la-i]) == string(b[lb-i-128:lb-i]) {
		i += 128
	}
	for ; i+8 <= n; i += 8 {
		if x := binary.BigEndian.Uint64(a[la-i-8:]) ^ binary.BigEndian.Uint64(b[lb-i-8:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for i < n && a[la-1-i] == b[lb-1-i] {
		i++
	}
	return i
}

// numEqual compares two JSON numbers (valid per scanNumber) by value,
// exactly: 1 == 1.0 == 10e-1 == 0.1e1, -0 == 0, and integers beyond 2^53
// stay distinct. Exponents beyond ±10^15 are taken as ±10^15.
func numEqual(x, y []byte) bool {
	nx, ix, fx, ex := splitNumber(x)
	ny, iy, fy, ey := splitNumber(y)
	x1, x2, px, zx := normNumber(ix, fx, ex)
	y1, y2, py, zy := normNumber(iy, fy, ey)
	if zx || zy {
		return zx && zy
	}
	if nx != ny || px != py || len(x1)+len(x2) != len(y1)+len(y2) {
		return false
	}
	at := func(d1, d2 []byte, k int) byte {
		if k < len(d1) {
			return d1[k]
		}
		return d2[k-len(d1)]
	}
	for k := 0; k < len(x1)+len(x2); k++ {
		if at(x1, x2, k) != at(y1, y2, k) {
			return false
		}
	}
	return true
}

func splitNumber(s []byte) (neg bool, intp, frac []byte, exp int64) {
	i := 0
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	intp = s[i:j]
	if j < len(s) && s[j] == '.' {
		k := j + 1
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		frac = s[j+1 : k]
		j = k
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		eneg := false
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			eneg = s[j] == '-'
			j++
		}
		for ; j < len(s) && isDigit(s[j]); j++ {
			if exp < 1e15 {
				exp = exp*10 + int64(s[j]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	return neg, intp, frac, exp
}

// normNumber returns the significant digits of a number as two pieces
// d1 d2 (no leading or trailing zeros) and p such that the value is
// 0.d1d2 × 10^p; zero says that the value is zero.
func normNumber(intp, frac []byte, exp int64) (d1, d2 []byte, p int64, zero bool) {
	for len(intp) > 0 && intp[0] == '0' {
		intp = intp[1:]
	}
	p = int64(len(intp)) + exp
	if len(intp) == 0 {
		for len(frac) > 0 && frac[0] == '0' {
			frac = frac[1:]
			p--
		}
	}
	d1, d2 = intp, frac
	for len(d2) > 0 && d2[len(d2)-1] == '0' {
		d2 = d2[:len(d2)-1]
	}
	if len(d2) == 0 {
		for len(d1) > 0 && d1[len(d1)-1] == '0' {
			d1 = d1[:len(d1)-1]
		}
	}
	return d1, d2, p, len(d1) == 0 && len(d2) == 0
}

// unescape appends the decoded content of a JSON string (the bytes between
// its quotes) to dst. Invalid escapes are kept as written; lone surrogates
// become U+FFFD.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			i++
			continue
		}
		e := s[i+1]
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				dst = append(dst, c, e)
				break
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+2+6 <= len(s) && s[i+2] == '\\' && s[i+3] == 'u' {
					r2, ok2 = hex4(s[i+4:])
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = append(dst, c, e)
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
