package httpsyntax

import "errors"

// Errors from ChunkedScanner.Scan.
var (
	// ErrChunkedSyntax reports bytes that do not follow the chunked coding
	// of RFC 9112 7.1.
	ErrChunkedSyntax = errors.New("malformed chunked body")
	// ErrChunkedTooLarge reports a chunk-size line longer than 4 KiB, a
	// chunk size beyond 2^60, or a trailer section over the scanner's
	// limit.
	ErrChunkedTooLarge = errors.New("chunked body limit exceeded")
)

const (
	maxChunkLine    = 4096
	maxChunkSize    = 1 << 60
	defaultTrailers = 64 << 10
)

// Chunked scanner states.
const (
	csSize         uint8 = iota // first hex digit of a chunk size
	csSizeMore                  // more hex digits, or what follows them
	csSizeWS                    // whitespace after the size (BWS before ";")
	csExt                       // chunk extensions, up to the line end
	csSizeLF                    // CR seen at the end of the size line
	csData                      // chunk data
	csDataCR                    // the line end after chunk data
	csDataLF                    // CR seen after chunk data
	csTrailer                   // start of a trailer line or of the final line
	csTrailerName               // field name of a trailer line
	csTrailerValue              // rest of a trailer line
	csTrailerLF                 // CR seen at the end of a trailer line
	csFinalLF                   // CR seen on the final empty line
	csDone                      // the body is complete
	csErr                       // a syntax error was found
)

// ChunkedScanner finds the end of a body in chunked transfer coding, fed in
// pieces of any size. It does not decode: the bytes stay where they are, and
// the caller learns how many of them belong to the body. Line endings may be
// CRLF or a bare LF.
//
// It suits a bufio.Reader as well as a packet stream: Peek what is
// buffered, Scan it, Discard the n bytes consumed, and repeat until done.
//
// The zero value is ready to use, with a trailer limit of
// 64 KiB.
type ChunkedScanner struct {
	// MaxTrailerBytes caps the trailer section; zero means
	// 64 KiB.
	MaxTrailerBytes int

	state   uint8
	err     error // the error that stopped the scan
	line    int   // bytes of the current size line, or of the trailer section
	remain  int64 // size being parsed, then data bytes left in the chunk
	decoded int64 // data bytes consumed
}

// Reset prepares the scanner for a new body, keeping MaxTrailerBytes.
func (s *ChunkedScanner) Reset() { *s = ChunkedScanner{MaxTrailerBytes: s.MaxTrailerBytes} }

// Decoded returns the count of chunk data bytes consumed so far: the
// decoded body length once the scan is done.
func (s *ChunkedScanner) Decoded() int64 { return s.decoded }

// Pending returns the data bytes announced by the current chunk's size line
// that have not been consumed yet, so that a caller can refuse a chunk
// before it arrives.
func (s *ChunkedScanner) Pending() int64 {
	if s.state == csData || s.state == csDataCR || s.state == csDataLF {
		return s.remain
	}
	return 0
}

// Done reports whether the whole body, trailer section and final line end
// included, has been scanned.
func (s *ChunkedScanner) Done() bool { return s.state == csDone }

// Scan consumes bytes of b that belong to the chunked body. It returns n,
// the count consumed, and done when the body ended at b[n-1]; the bytes
// after that belong to what follows the body. On error, b[n] is the
// offending byte and every later call returns the same error.
func (s *ChunkedScanner) Scan(b []byte) (n int, done bool, err error) {
	switch s.state {
	case csDone:
		return 0, true, nil
	case csErr:
		return 0, false, s.err
	}
	i := 0
	for i < len(b) {
		c := b[i]
		switch s.state {
		case csSize, csSizeMore:
			d := Unhex(c)
			if d < 16 {
				if s.remain > maxChunkSize>>4 {
					return s.fail(i, ErrChunkedTooLarge)
				}
				s.remain = s.remain<<4 | int64(d)
				s.state = csSizeMore
				break
			}
			if s.state == csSize {
				return s.fail(i, ErrChunkedSyntax)
			}
			switch c {
			case ' ', '\t':
				s.state = csSizeWS
			case ';':
				s.state = csExt
			case '\r':
				s.state = csSizeLF
			case '\n':
				s.sizeLine()
			default:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csSizeWS:
			switch c {
			case ' ', '\t':
			case ';':
				s.state = csExt
			case '\r':
				s.state = csSizeLF
			case '\n':
				s.sizeLine()
			default:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csExt:
			switch {
			case c == '\r':
				s.state = csSizeLF
			case c == '\n':
				s.sizeLine()
			case classes[c]&ClassValue == 0:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csSizeLF:
			if c != '\n' {
				return s.fail(i, ErrChunkedSyntax)
			}
			s.sizeLine()
		case csData:
			k := int64(len(b) - i)
			if k > s.remain {
				k = s.remain
			}
			s.remain -= k
			s.decoded += k
			i += int(k)
			if s.remain == 0 {
				s.state = csDataCR
			}
			continue
		case csDataCR:
			switch c {
			case '\r':
				s.state = csDataLF
			case '\n':
				s.state, s.line = csSize, -1
			default:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csDataLF:
			if c != '\n' {
				return s.fail(i, ErrChunkedSyntax)
			}
			s.state, s.line = csSize, -1
		case csTrailer:
			switch {
			case c == '\r':
				s.state = csFinalLF
			case c == '\n':
				s.state = csDone
				return i + 1, true, nil
			case classes[c]&ClassToken != 0:
				s.state = csTrailerName
			default:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csTrailerName:
			switch {
			case c == ':':
				s.state = csTrailerValue
			case classes[c]&ClassToken == 0:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csTrailerValue:
			switch {
			case c == '\r':
				s.state = csTrailerLF
			case c == '\n':
				s.state = csTrailer
			case classes[c]&ClassValue == 0:
				return s.fail(i, ErrChunkedSyntax)
			}
		case csTrailerLF:
			if c != '\n' {
				return s.fail(i, ErrChunkedSyntax)
			}
			s.state = csTrailer
		case csFinalLF:
			if c != '\n' {
				return s.fail(i, ErrChunkedSyntax)
			}
			s.state = csDone
			return i + 1, true, nil
		}
		// Bound the size line and the trailer section; data is bounded by
		// the caller, which sees Pending.
		if s.state < csData {
			s.line++
			if s.line > maxChunkLine {
				return s.fail(i, ErrChunkedTooLarge)
			}
		} else if s.state >= csTrailer && s.state < csDone {
			s.line++
			if s.line > s.maxTrailer() {
				return s.fail(i, ErrChunkedTooLarge)
			}
		}
		i++
	}
	return len(b), s.state == csDone, nil
}

// sizeLine acts on the end of a chunk-size line.
func (s *ChunkedScanner) sizeLine() {
	s.line = 0
	if s.remain == 0 {
		s.state = csTrailer
		return
	}
	s.state = csData
}

func (s *ChunkedScanner) fail(i int, err error) (int, bool, error) {
	s.state, s.err = csErr, err
	return i, false, err
}

func (s *ChunkedScanner) maxTrailer() int {
	if s.MaxTrailerBytes > 0 {
		return s.MaxTrailerBytes
	}
	return defaultTrailers
}

// Unhex returns the value of hex digit c, or 255.
func Unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}
