package compare

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/shadowtee/shadowtee/httpmsg"
	"github.com/shadowtee/shadowtee/httpsyntax"
)

// shellQuote quotes s for a POSIX shell: in single quotes when it holds
// only printable text, else in bash's $'...' with escapes.
func shellQuote(s string) string {
	bare := s != ""
	for i := 0; bare && i < len(s); i++ {
		c := s[i]
		bare = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_./:%+=,", c) >= 0
	}
	if bare {
		return s
	}
	plain := utf8.ValidString(s)
	for i := 0; plain && i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			plain = false
		}
	}
	if plain {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
			i++
		case c == '\n':
			b.WriteString(`\n`)
			i++
		case c == '\t':
			b.WriteString(`\t`)
			i++
		case c == '\r':
			b.WriteString(`\r`)
			i++
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(c)&15, 16))
			i++
		case c < 0x80:
			b.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteString(`\x`)
				b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
				b.WriteString(strconv.FormatUint(uint64(c)&15, 16))
			} else {
				b.WriteString(s[i : i+size])
			}
			i += size
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// curlLine returns a curl command that replays the request of ex against
// the shadow: its method, target and headers (less the redacted ones and
// those of the connection), the Host the shadow was sent, and body (already
// redacted) when it is small enough to show.
func curlLine(shadowURL string, ex *Exchange, red *redactor, body string, bodyOK bool) string {
	base := strings.TrimSuffix(shadowURL, "/")
	if base == "" {
		base = "http://SHADOW"
	}
	var b strings.Builder
	b.WriteString("curl -sS -i --globoff --path-as-is")
	if ex.Proto == httpmsg.HTTP2 {
		// As the shadow was sent it: h2c with prior knowledge, or h2 by ALPN.
		if strings.HasPrefix(base, "https:") {
			b.WriteString(" --http2")
		} else {
			b.WriteString(" --http2-prior-knowledge")
		}
	}
	switch {
	case ex.Method == "HEAD":
		b.WriteString(" --head")
	case ex.Method == "GET" && body == "":
	default:
		b.WriteString(" -X ")
		b.WriteString(shellQuote(ex.Method))
	}
	target := originForm(ex.Path)
	if !strings.HasPrefix(target, "/") {
		target = "/" + target
	}
	b.WriteByte(' ')
	b.WriteString(shellQuote(base + target))
	if ex.ShadowAuthority != "" {
		b.WriteString(" -H ")
		b.WriteString(shellQuote("Host: " + ex.ShadowAuthority))
	}
	// The fields that Connection names belong to the connection too.
	var connNames []string
	for _, f := range ex.Header {
		if httpsyntax.EqualFold(f.Name, "connection") {
			httpsyntax.ForEachElement(f.Value, func(e []byte) { connNames = append(connNames, string(e)) })
		}
	}
	for _, f := range ex.Header {
		n := f.Name
		if len(n) == 0 || n[0] == ':' || httpsyntax.EqualFold(n, "host") || httpsyntax.IsFramingField(n) ||
			httpsyntax.IsConnectionField(n) || httpsyntax.EqualFold(n, "expect") || red.header(n) {
			continue
		}
		skip := false
		for _, c := range connNames {
			if httpsyntax.EqualFold(n, c) {
				skip = true
			}
		}
		if skip {
			continue
		}
		b.WriteString(" -H ")
		if len(f.Value) == 0 {
			b.WriteString(shellQuote(string(n) + ";")) // curl sends an empty field for "Name;"
			continue
		}
		b.WriteString(shellQuote(string(n) + ": " + string(f.Value)))
	}
	switch {
	case body != "" && body[0] == '@':
		b.WriteString(" --data-raw ") // --data-binary would read a file
		b.WriteString(shellQuote(body))
	case body != "":
		b.WriteString(" --data-binary ")
		b.WriteString(shellQuote(body))
	case !bodyOK:
		b.WriteString("   # request body not included")
	}
	return b.String()
}
