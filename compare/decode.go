package compare

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// maxCodings is how many content codings one answer may stack
// ("gzip, br"); more are refused as undecodable.
const maxCodings = 4

// zstdMaxWindow bounds the window a zstd frame may ask for: larger frames
// are undecodable rather than a 2 GiB allocation.
const zstdMaxWindow = 8 << 20

var (
	errUnknownCoding = errors.New("unsupported content coding")
	errTooManyCoding = errors.New("too many content codings")
)

// coding is one content coding that the engine removes.
type coding uint8

const (
	codingGzip coding = iota + 1
	codingDeflate
	codingBrotli
	codingZstd
)

func (c coding) String() string {
	switch c {
	case codingGzip:
		return "gzip"
	case codingDeflate:
		return "deflate"
	case codingBrotli:
		return "br"
	case codingZstd:
		return "zstd"
	}
	return "?"
}

// decoders holds one reusable reader per content coding, for the engine's
// goroutine (they are not safe for concurrent use).
type decoders struct {
	limit int // most decoded bytes kept: the bomb bound
	src   bytes.Reader
	gz    *gzip.Reader
	zl    io.ReadCloser
	fl    io.ReadCloser
	br    *brotli.Reader
	zs    *zstd.Decoder
	tmp   []byte // intermediate output of a stack of codings
}

func newDecoders(limit int) *decoders { return &decoders{limit: limit} }

func (d *decoders) close() {
	if d.zs != nil {
		d.zs.Close()
		d.zs = nil
	}
}

// decoded is what decoding an answer's body gave.
type decoded struct {
	body    []byte // decoded bytes: all of them, or a prefix when cut
	cut     bool   // body is a prefix: the capture was truncated, or the bound was hit
	over    bool   // the decoded size passed the bound (a bomb, or simply large)
	removed []byte // the content codings removed, as sent ("gzip"); nil for none
	err     error  // the body could not be decoded; body is then the raw body
}

// parseCodings reads the Content-Encoding fields of h into cs, in the order
// applied. It reports an error for a coding it cannot remove.
func parseCodings(h []httpmsg.Field, cs *[maxCodings]coding) (int, []byte, error) {
	n := 0
	var raw []byte
	var err error
	for _, f := range h {
		if !httpsyntax.EqualFold(f.Name, "content-encoding") {
			continue
		}
		raw = f.Value
		httpsyntax.ForEachElement(f.Value, func(e []byte) {
			var c coding
			switch {
			case httpsyntax.EqualFold(e, "identity"):
				return
			case httpsyntax.EqualFold(e, "gzip"), httpsyntax.EqualFold(e, "x-gzip"):
				c = codingGzip
			case httpsyntax.EqualFold(e, "deflate"):
				c = codingDeflate
			case httpsyntax.EqualFold(e, "br"):
				c = codingBrotli
			case httpsyntax.EqualFold(e, "zstd"):
				c = codingZstd
			default:
				if err == nil {
					err = fmt.Errorf("%w %q", errUnknownCoding, e)
				}
				return
			}
			if n == maxCodings {
				err = errTooManyCoding
				return
			}
			cs[n] = c
			n++
		})
	}
	return n, raw, err
}

// decode removes the content codings of a from its body. dst is scratch
// space that the result may use (the caller keeps it for the next call);
// an answer without coding costs nothing and returns a.Body itself.
func (d *decoders) decode(a *httpmsg.Answer, dst *[]byte) decoded {
	var cs [maxCodings]coding
	n, raw, err := parseCodings(a.Header, &cs)
	if err != nil {
		return decoded{body: a.Body, cut: a.Truncated, removed: raw, err: err}
	}
	if n == 0 || len(a.Body) == 0 {
		return decoded{body: a.Body, cut: a.Truncated}
	}
	out := decoded{removed: raw}
	in := a.Body
	// The last coding applied is the first to remove. With more than one,
	// the output of each step is the input of the next: alternate between
	// dst and d.tmp.
	bufs := [2]*[]byte{dst, &d.tmp}
	if n%2 == 0 {
		bufs[0], bufs[1] = &d.tmp, dst
	}
	cut := a.Truncated
	for i := n - 1; i >= 0; i-- {
		b := bufs[(n-1-i)%2]
		got, over, err := d.decodeOne(cs[i], in, (*b)[:0])
		*b = got[:0]
		in = got
		if over {
			out.over, cut = true, true
		}
		if err != nil {
			if cut {
				// Truncated input ends in the middle of the stream:
				// what decoded before the end is the prefix.
				break
			}
			return decoded{body: a.Body, cut: a.Truncated, removed: out.removed, err: fmt.Errorf("%s: %w", cs[i], err)}
		}
	}
	out.body, out.cut = in, cut
	return out
}

// decodeOne removes one coding from in, into dst, keeping at most d.limit
// bytes.
func (d *decoders) decodeOne(c coding, in, dst []byte) ([]byte, bool, error) {
	d.src.Reset(in)
	var r io.Reader
	switch c {
	case codingGzip:
		if d.gz == nil {
			z, err := gzip.NewReader(&d.src)
			if err != nil {
				return dst, false, err
			}
			d.gz = z
		} else if err := d.gz.Reset(&d.src); err != nil {
			return dst, false, err
		}
		r = d.gz
	case codingDeflate:
		// HTTP's deflate is zlib (RFC 1950); some servers send raw
		// deflate (RFC 1951) instead, which browsers accept too.
		if looksZlib(in) {
			if d.zl == nil {
				z, err := zlib.NewReader(&d.src)
				if err != nil {
					return dst, false, err
				}
				d.zl = z
			} else if err := d.zl.(zlib.Resetter).Reset(&d.src, nil); err != nil {
				return dst, false, err
			}
			r = d.zl
		} else {
			if d.fl == nil {
				d.fl = flate.NewReader(&d.src)
			} else if err := d.fl.(flate.Resetter).Reset(&d.src, nil); err != nil {
				return dst, false, err
			}
			r = d.fl
		}
	case codingBrotli:
		if d.br == nil {
			d.br = brotli.NewReader(&d.src)
		} else if err := d.br.Reset(&d.src); err != nil {
			return dst, false, err
		}
		r = d.br
	case codingZstd:
		if d.zs == nil {
			z, err := zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(zstdMaxWindow),
				zstd.WithDecoderMaxMemory(zstdMaxWindow))
			if err != nil {
				return dst, false, err
			}
			d.zs = z
		}
		if err := d.zs.Reset(&d.src); err != nil {
			return dst, false, err
		}
		r = d.zs
	default:
		return dst, false, errUnknownCoding
	}
	return readLimited(r, dst, d.limit)
}

// looksZlib reports whether b starts with a zlib header: CM 8, a window of
// at most 32 KiB, and a check value that makes the first two bytes a
// multiple of 31.
func looksZlib(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// readLimited reads r to its end into dst, keeping at most limit bytes; it
// reports whether there was more.
func readLimited(r io.Reader, dst []byte, limit int) ([]byte, bool, error) {
	dst = dst[:0]
	for idle := 0; ; {
		if len(dst) == cap(dst) {
			want := min(max(2*cap(dst), 4096), limit+1)
			if want <= len(dst) {
				return dst[:limit], true, nil
			}
			nd := make([]byte, len(dst), want)
			copy(nd, dst)
			dst = nd
		}
		n, err := r.Read(dst[len(dst):min(cap(dst), limit+1)])
		dst = dst[:len(dst)+n]
		switch {
		case len(dst) > limit:
			return dst[:limit], true, nil
		case err == io.EOF:
			return dst, false, nil
		case err != nil:
			return dst, false, err
		case n == 0:
			// A reader that gives nothing and no error must not spin.
			if idle++; idle > 100 {
				return dst, false, io.ErrNoProgress
			}
		default:
			idle = 0
		}
	}
}
