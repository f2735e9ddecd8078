package httpframe

import "github.com/shadowtee/shadowtee/httpsyntax"

// knownMethods are the methods that resync accepts at the start of a
// request line. PRI is there only to recognise the HTTP/2 preface: a line
// with PRI is plausible only as "PRI * HTTP/2.0".
var knownMethods = [...]string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
	"CONNECT", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK",
	"UNLOCK", "REPORT", "SEARCH", "PURGE", "PRI",
}

const (
	maxMethodLen = 9 // PROPPATCH
	allMethods   = 1<<len(knownMethods) - 1
	priBit       = 1 << (len(knownMethods) - 1)
)

// methodTable[i][c] has bit m set when knownMethods[m][i] == c, so that the
// methods a prefix may still spell are found with one AND per byte.
// lenMask[n] has bit m set when knownMethods[m] is n bytes long.
var (
	methodTable    [maxMethodLen][256]uint32
	lenMask        [maxMethodLen + 1]uint32
	lastMethodByte [256]bool
)

func init() {
	for m, name := range knownMethods {
		for i := 0; i < len(name); i++ {
			methodTable[i][name[i]] |= 1 << m
		}
		lenMask[len(name)] |= 1 << m
		lastMethodByte[name[len(name)-1]] = true
	}
}

// matchResult is what lineMatch.feed found.
type matchResult uint8

const (
	matchMore matchResult = iota // every byte fits; the line goes on
	matchOK                      // the line is complete
	matchFail                    // this byte cannot continue a request line
)

// lineMatch phases.
const (
	lmMethod uint8 = iota
	lmTarget
	lmVersion
	lmLF
)

// lineMatch checks a request line as its bytes arrive, so that a line split
// over many Data calls is checked in linear time and bad input is refused
// at its first wrong byte rather than after the whole header block.
//
// It accepts `method SP target SP version (CRLF | LF)`, where the target is
// any run of visible bytes (obs-text included) and the version HTTP/1.0 or
// HTTP/1.1, or HTTP/2.0 on the line "PRI * HTTP/2.0" that starts the HTTP/2
// connection preface. In known mode the method must be one of knownMethods;
// otherwise any token will do.
type lineMatch struct {
	phase uint8
	star  bool   // the target so far is "*"
	pri   bool   // the method is PRI
	major byte   // the major version digit
	n     int32  // bytes in the current phase
	total int32  // bytes of the line so far
	mask  uint32 // known methods that the method bytes still spell
}

func (m *lineMatch) reset() { *m = lineMatch{mask: allMethods} }

// h2 reports whether the complete line is the HTTP/2 preface's first line.
func (m *lineMatch) h2() bool { return m.major == '2' }

// feed checks b as the continuation of the line. On matchOK, n is the count
// of bytes up to and including the LF; on matchFail, b[n] is the offending
// byte; on matchMore, n is len(b).
func (m *lineMatch) feed(b []byte, known bool) (n int, res matchResult) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch m.phase {
		case lmMethod:
			if c == ' ' {
				ends := m.mask
				if m.n <= maxMethodLen {
					ends &= lenMask[m.n]
				} else {
					ends = 0
				}
				if m.n == 0 || known && ends == 0 {
					return i, matchFail
				}
				m.pri = ends&priBit != 0
				m.phase, m.n = lmTarget, 0
				break
			}
			if httpsyntax.Class(c)&httpsyntax.ClassToken == 0 {
				return i, matchFail
			}
			if m.n < maxMethodLen {
				m.mask &= methodTable[m.n][c]
			} else {
				m.mask = 0
			}
			if known && m.mask == 0 {
				return i, matchFail
			}
			m.n++
		case lmTarget:
			if c == ' ' {
				if m.n == 0 {
					return i, matchFail
				}
				m.phase, m.n = lmVersion, 0
				break
			}
			// Run through the target at once: it is most of the line.
			j := i
			for j < len(b) && httpsyntax.Class(b[j])&httpsyntax.ClassTarget != 0 {
				j++
			}
			if j == i {
				return i, matchFail
			}
			m.star = m.n == 0 && j-i == 1 && c == '*'
			m.n += int32(j - i)
			m.total += int32(j - i - 1)
			i = j - 1
		case lmVersion:
			if !m.versionByte(c, known) {
				return i, matchFail
			}
			if m.n == 8 {
				if c == '\n' {
					m.total++
					return i + 1, matchOK
				}
				m.phase = lmLF
			}
			m.n++
		case lmLF:
			if c != '\n' {
				return i, matchFail
			}
			m.total++
			return i + 1, matchOK
		}
		m.total++
	}
	return len(b), matchMore
}

// versionByte checks byte m.n of "HTTP/x.y" and the line end after it.
func (m *lineMatch) versionByte(c byte, known bool) bool {
	switch m.n {
	case 5:
		switch {
		case c == '1' && !(known && m.pri):
		case c == '2' && m.pri && m.star:
		default:
			return false
		}
		m.major = c
		return true
	case 6:
		return c == '.'
	case 7:
		return c == '0' || c == '1' && m.major == '1'
	case 8:
		return c == '\r' || c == '\n'
	default:
		return c == "HTTP/"[m.n]
	}
}

// methodBefore returns where the longest known method that ends b starts,
// or -1.
func methodBefore(b []byte) int {
	n := len(b)
	if n == 0 || !lastMethodByte[b[n-1]] {
		return -1
	}
	for l := min(n, maxMethodLen); l >= 3; l-- {
		mask := uint32(lenMask[l])
		for i := 0; i < l && mask != 0; i++ {
			mask &= methodTable[i][b[n-l+i]]
		}
		if mask != 0 {
			return n - l
		}
	}
	return -1
}
