package compare

import (
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/httpmsg"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        "plain",
		"two words":    "'two words'",
		"":             "''",
		"it's":         `'it'\''s'`,
		"a\nb":         `$'a\nb'`,
		"nul\x00\x7f":  `$'nul\x00\x7f'`,
		"bad\xffutf8'": `$'bad\xffutf8\''`,
		`back\slash`:   `'back\slash'`,
		"é":            "'é'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func TestCurlLine(t *testing.T) {
	red := &redactor{headers: newNameSet(defaultRedactHeaders)}
	ex := &Exchange{
		Method: "PUT", Authority: "[::1]:8080", ShadowAuthority: "[::1]-shadow:8080", Path: "/a/{b}?q=[1]&x='y'",
		Header: []httpmsg.Field{
			fieldPair("Host", "[::1]:8080"), fieldPair("Connection", "keep-alive, X-Hop"), fieldPair("X-Hop", "1"),
			fieldPair("Keep-Alive", "timeout=5"), fieldPair("Content-Length", "3"), fieldPair("Transfer-Encoding", "chunked"),
			fieldPair("Authorization", "Bearer x"), fieldPair("X-Empty", ""), fieldPair("X-Keep", "it's"),
		},
	}
	got := curlLine("http://10.0.0.7:8000/", ex, red, "abc", true)
	want := `curl -sS -i --globoff --path-as-is -X PUT 'http://10.0.0.7:8000/a/{b}?q=[1]&x='\''y'\''' -H 'Host: [::1]-shadow:8080' -H 'X-Empty;' -H 'X-Keep: it'\''s' --data-binary abc`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := curlLine("http://s", ex, red, "@/etc/passwd", true); !strings.HasSuffix(got, " --data-raw '@/etc/passwd'") {
		t.Errorf("body starting with @: %s", got)
	}
	ex.Method = "HEAD"
	if got := curlLine("", ex, red, "", true); !strings.Contains(got, " --head 'http://SHADOW/a/") {
		t.Errorf("HEAD: %s", got)
	}
	ex.Method = "GET"
	if got := curlLine("http://s", ex, red, "", false); strings.Contains(got, " -X ") || !strings.HasSuffix(got, "# request body not included") {
		t.Errorf("GET without body: %s", got)
	}
	ex.Proto = httpmsg.HTTP2
	for base, want := range map[string]string{"http://s": " --http2-prior-knowledge ", "https://s": " --http2 "} {
		if got := curlLine(base, ex, red, "", true); !strings.Contains(got, want) {
			t.Errorf("HTTP/2 to %s: %s lacks %q", base, got, want)
		}
	}
}
