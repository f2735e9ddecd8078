package httpframe

import (
	"github.com/shadowtee/shadowtee/httpsyntax"

	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// validRequests are requests that net/http reads too. Its reader is
// stricter than RFC 9112 in places (one Transfer-Encoding, exactly
// "chunked"; no whitespace before a chunk extension), so these stay within
// what both accept.
var validRequests = []string{
	getA,
	getB,
	postCL,
	teAndCL,
	expectHead + "12345",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"5;name=val\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
	"GET /old HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
	"GET http://foo:8080/x?y=1 HTTP/1.1\r\nHost: foo:8080\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /multi HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\naccept: */*\r\nX-Empty:\r\nX-Pad:   v  w \t\r\n\r\n",
	"GET /bytes HTTP/1.1\r\nHost: a\r\nX-Utf8: caf\xc3\xa9\r\nX-Tab: a\tb\r\nX-Sym: !#$%&'*+-.^_`|~\r\n\r\n",
	"GET /prag HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	lfGet,
	"DELETE /d/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde",
	"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 16384\r\n\r\n" + strings.Repeat("0123456789abcdef", 1024),
	"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n",
}

// TestCrossCheckNetHTTP frames the valid requests, one by one and all
// pipelined, and checks every span and body against net/http's reading of
// the same bytes.
func TestCrossCheckNetHTTP(t *testing.T) {
	all := strings.Join(validRequests, "")
	for _, in := range append(slices.Clone(validRequests), all) {
		h := newHarness(false, nil)
		h.feed(in)
		h.p.End()
		br := bufio.NewReader(strings.NewReader(in))
		for i, r := range h.got {
			goReq, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("net/http cannot read request %d of %q: %v", i, in, err)
			}
			goBody, err := io.ReadAll(goReq.Body)
			if err != nil {
				t.Fatalf("net/http cannot read the body of %q: %v", r.Raw, err)
			}
			body, err := checkRequest(r)
			if err != nil {
				t.Fatalf("%q: %v", r.Raw, err)
			}
			if !bytes.Equal(body, goBody) {
				t.Errorf("%q: body %q, net/http %q", r.Raw, body, goBody)
			}
			if err := compareHead(r, goReq, nil); err != nil {
				t.Errorf("%q: %v", r.Raw, err)
			}
			if r.Chunked {
				_, trailers, _ := decodeChunked(r.WireBody())
				for _, tr := range trailers {
					k, v, _ := strings.Cut(tr, ":")
					if got := goReq.Trailer.Get(k); got != strings.Trim(v, " \t") {
						t.Errorf("%q: trailer %s = %q, net/http %q", r.Raw, k, v, got)
					}
				}
			}
		}
		if _, err := http.ReadRequest(br); err != io.EOF {
			t.Errorf("%q: net/http reads more requests than were framed (%d): %v", in, len(h.got), err)
		}
		h.release()
	}
}

// compareHead checks that net/http read the same request line and header
// fields as r holds. ignore names fields that net/http did not see.
func compareHead(r *Request, goReq *http.Request, ignore map[string]bool) error {
	if m := string(r.Bytes(r.MethodSpan)); m != goReq.Method {
		return fmt.Errorf("method %q, net/http %q", m, goReq.Method)
	}
	if v := string(r.Bytes(r.VersionSpan)); v != goReq.Proto {
		return fmt.Errorf("version %q, net/http %q", v, goReq.Proto)
	}
	if !ignore["target"] {
		if tg := string(r.Bytes(r.TargetSpan)); tg != goReq.RequestURI {
			return fmt.Errorf("target %q, net/http %q", tg, goReq.RequestURI)
		}
	}
	mine := http.Header{}
	for _, h := range r.Headers {
		mine.Add(string(r.Bytes(h.Name)), string(r.Bytes(h.Value)))
	}
	// net/http moves these out of Header.
	moved := map[string]bool{"Host": true, "Transfer-Encoding": true}
	if r.Chunked {
		moved["Content-Length"], moved["Trailer"] = true, true
	}
	for k, vs := range mine {
		if moved[k] || ignore[k] {
			continue
		}
		if k == "Content-Length" && len(vs) > 1 {
			vs = vs[:1] // net/http keeps one of identical values
		}
		if !slices.Equal(vs, goReq.Header[k]) {
			return fmt.Errorf("field %s = %q, net/http %q", k, vs, goReq.Header[k])
		}
	}
	for k := range goReq.Header {
		if _, ok := mine[k]; !ok && k != "Cache-Control" {
			return fmt.Errorf("net/http has field %s, the framer has not", k)
		}
	}
	if hv, ok := r.HeaderSpan("Host"); ok && !ignore["Host"] && goReq.URL.Host == "" {
		if string(r.Bytes(hv)) != goReq.Host {
			return fmt.Errorf("Host %q, net/http %q", r.Bytes(hv), goReq.Host)
		}
	}
	return nil
}

// readHead reads r's head with net/http. Where net/http is stricter than
// RFC 9112 on purpose, the head is adjusted and read again, and the parts
// adjusted are returned in ignore, each only when r shows the leniency that
// explains it:
//   - a target that net/url refuses (its checks are not framing);
//   - transfer codings other than one "chunked" field;
//   - a Content-Length list ("5, 5") in one field;
//   - framing fields named in Trailer.
func readHead(r *Request) (*http.Request, map[string]bool, error) {
	ignore := map[string]bool{}
	head := slices.Clone(r.Head())
	for range 5 {
		goReq, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err == nil {
			return goReq, ignore, nil
		}
		var ue *url.Error
		switch msg := err.Error(); {
		case errors.As(err, &ue) && !ignore["target"]:
			ignore["target"] = true
			head = slices.Concat(r.Raw[:r.TargetSpan.Start], []byte("/"), head[r.TargetSpan.End:])
		case strings.Contains(msg, "transfer encoding") && r.Chunked && !ignore["Transfer-Encoding"]:
			ignore["Transfer-Encoding"], ignore["Content-Length"] = true, true
			head = dropFields(head, "Transfer-Encoding", "Content-Length")
		case strings.Contains(msg, "Content-Length") && hasCLList(r) && !ignore["Content-Length"]:
			ignore["Content-Length"] = true
			head = dropFields(head, "Content-Length")
		case strings.Contains(msg, "bad trailer key") && r.Chunked && !ignore["Trailer"]:
			ignore["Trailer"] = true
			head = dropFields(head, "Trailer")
		default:
			return nil, ignore, err
		}
	}
	return nil, ignore, errors.New("readHead: too many retries")
}

// dropFields removes the named fields from a head.
func dropFields(head []byte, names ...string) []byte {
	lines := bytes.SplitAfter(head, []byte("\n"))
	out := slices.Clone(lines[0])
	for _, l := range lines[1:] {
		name, _, _ := bytes.Cut(l, []byte(":"))
		if !slices.ContainsFunc(names, func(n string) bool { return httpsyntax.EqualFold(name, n) }) {
			out = append(out, l...)
		}
	}
	return out
}

func hasCLList(r *Request) bool {
	for _, h := range r.Headers {
		if httpsyntax.EqualFold(r.Bytes(h.Name), "content-length") && bytes.IndexByte(r.Bytes(h.Value), ',') >= 0 {
			return true
		}
	}
	return false
}
