package compare

import (
	"strconv"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// view is an answer ready to compare. Its body is decoded when a
// comparison needs it: two answers with the same coding and the same coded
// bytes are equal without.
type view struct {
	ans *httpmsg.Answer
	decoded
	ready bool    // decoded holds the decoded body
	dst   *[]byte // where to decode it
	media mediaKind
	enc   []byte // the Content-Encoding value, as sent
}

// comparer compares answers. It belongs to one goroutine at a time (the
// engine's lock) and reuses its scratch space.
type comparer struct {
	hc      headerComparer
	jd      jsonDiff
	dec     *decoders
	limited uint64 // bodies whose decoding hit the bound
}

// view prepares a for comparing; dst is scratch space for its decoded body,
// kept by the caller.
func (c *comparer) view(a *httpmsg.Answer, dst *[]byte) view {
	v := view{ans: a, dst: dst, media: mediaOf(a.Header)}
	for _, f := range a.Header {
		if httpsyntax.EqualFold(f.Name, "content-encoding") {
			v.enc = f.Value
		}
	}
	return v
}

// ensure decodes the body of v, once.
func (c *comparer) ensure(v *view) {
	if v.ready {
		return
	}
	v.decoded = c.dec.decode(v.ans, v.dst)
	v.ready = true
	if v.over {
		c.limited++
	}
}

// compare records in out how b differs from a: status, header fields (less
// noise), trailer fields, body.
func (c *comparer) compare(a, b *view, out *pairBuf) {
	if a.ans.Status != b.ans.Status {
		var sa, sb [8]byte
		out.addRaw(kindValue, []byte("status"),
			strconv.AppendInt(sa[:0], int64(a.ans.Status), 10),
			strconv.AppendInt(sb[:0], int64(b.ans.Status), 10), true, true)
	}
	c.hc.compare = a.ans.BodyLen == 0 && b.ans.BodyLen == 0
	c.hc.fields("header.", a.ans.Header, b.ans.Header, out)
	if len(a.ans.Trailer) > 0 || len(b.ans.Trailer) > 0 {
		c.hc.fields("trailer.", a.ans.Trailer, b.ans.Trailer, out)
	}
	c.bodies(a, b, out)
}
