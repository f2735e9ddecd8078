package compare

import (
	"strconv"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// view is an answer ready to compare: its body decoded.
type view struct {
	ans *httpmsg.Answer
	decoded
	media mediaKind
}

// comparer compares answers. It belongs to one goroutine at a time (the
// engine's lock) and reuses its scratch space.
type comparer struct {
	hc  headerComparer
	jd  jsonDiff
	dec *decoders
}

// view decodes a; dst is scratch space for the decoded body, kept by the
// caller.
func (c *comparer) view(a *httpmsg.Answer, dst *[]byte) view {
	return view{ans: a, decoded: c.dec.decode(a, dst), media: mediaOf(a.Header)}
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
