package h2frame

import (
	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// FromUpgrade returns the HTTP/2 view of an HTTP/1.1 request that asked for
// "Upgrade: h2c": stream 1 of the connection (RFC 7540 3.2, the upgrade
// that RFC 9113 deprecates but clients still send). Names are lower-cased; :method, :scheme
// ("http" unless the target named another), :authority (from the target or
// Host) and :path come from the request line; Host, HTTP2-Settings, the
// connection-specific fields and those the Connection field names are
// dropped, and TE is kept only as "trailers". The body and trailers are
// copied. r is only read: its owner still releases it; the returned
// Request is the caller's, to Release.
func FromUpgrade(r httpmsg.Request) *Request {
	out := newRequest(1, r.Client(), r.Server(), r.Time())
	out.method = out.add(r.Method())
	if s := r.Scheme(); len(s) > 0 {
		out.scheme = out.add(s)
	} else {
		out.scheme = out.add([]byte("http"))
	}
	if a := r.Authority(); a != nil {
		out.authority = out.add(a)
	}
	out.path = out.add(r.Path())

	var conn [][]byte // Connection values, which name more fields to drop
	r.VisitHeaders(func(name, value []byte) bool {
		if httpsyntax.EqualFold(name, "connection") {
			conn = append(conn, value)
		}
		return true
	})
	named := func(name []byte) bool {
		for _, v := range conn {
			if httpsyntax.HasToken(v, name) {
				return true
			}
		}
		return false
	}
	copyFields := func(visit func(func(name, value []byte) bool), trailers bool) {
		visit(func(name, value []byte) bool {
			switch {
			case httpsyntax.EqualFold(name, "te"):
				if !httpsyntax.HasToken(value, "trailers") || trailers {
					return true
				}
				value = []byte("trailers")
			case httpsyntax.IsConnectionField(name), httpsyntax.EqualFold(name, "transfer-encoding"),
				httpsyntax.EqualFold(name, "http2-settings"), httpsyntax.EqualFold(name, "host"),
				named(name):
				return true
			}
			f := field{name: out.addLower(name), value: out.add(value)}
			if trailers {
				out.trailers = append(out.trailers, f)
			} else {
				out.fields = append(out.fields, f)
			}
			return true
		})
	}
	copyFields(r.VisitHeaders, false)
	body := span{int32(len(out.blk.b)), 0}
	r.VisitBody(func(b []byte) bool {
		out.add(b)
		body.n += int32(len(b))
		return true
	})
	if body.n > 0 {
		out.body = body
	}
	copyFields(r.VisitTrailers, true)
	return out
}

// addLower copies b into the arena in lower case.
func (r *Request) addLower(b []byte) span {
	s := r.add(b)
	p := r.bytes(s)
	for i, c := range p {
		if 'A' <= c && c <= 'Z' {
			p[i] = c + 'a' - 'A'
		}
	}
	return s
}

// Upgrade starts a connection that switched from HTTP/1.1 with "Upgrade:
// h2c": req is the request that asked, which is stream 1, half-closed by
// the client; the client's bytes that follow start with the preface. tag
// and kept are the consumer's decision on req, already taken on its
// HTTP/1 view: when kept, the HTTP/2 view of stream 1 (FromUpgrade) is
// emitted with tag, and its answer, read from the server's HTTP/2 bytes,
// paired. req is only read. Upgrade must come before the first ClientData.
func (c *Conn) Upgrade(req httpmsg.Request, tag any, kept bool) {
	if c.ended {
		return
	}
	c.st.Upgrades.Add(1)
	c.lastID = max(c.lastID, 1)
	if !kept {
		return
	}
	s := streamPool.Get().(*stream)
	s.id, s.tag, s.req, s.wantAnswer = 1, tag, FromUpgrade(req), c.lim.answerOn
	c.streams = append(c.streams, s)
	// Not counted in Requests: the HTTP/1 framer that framed it did.
	c.emitWhole(s)
}
