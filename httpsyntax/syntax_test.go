package httpsyntax

import "testing"

func TestParseContentLength(t *testing.T) {
	cases := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"42, 42", 42, true},
		{" 7 ,7", 7, true},
		{"", 0, false},
		{"5,", 0, false},
		{",5", 0, false},
		{"5, 05", 0, false},
		{"5, 6", 0, false},
		{"-1", 0, false},
		{"1e3", 0, false},
		{"1234567890123456789", 0, false}, // 19 digits
	}
	for _, c := range cases {
		n, ok := ParseContentLength([]byte(c.in))
		if n != c.n || ok != c.ok {
			t.Errorf("ParseContentLength(%q) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.ok)
		}
	}
}

func TestPortStart(t *testing.T) {
	cases := map[string]int{
		"foo.bar.com":      -1,
		"foo.bar.com:8080": 11,
		"[::1]:8080":       5,
		"[::1]":            -1,
		"::1":              1, // not bracketed: the last ':' wins, as in Envoy
		"":                 -1,
	}
	for in, want := range cases {
		if got := PortStart(in); got != want {
			t.Errorf("PortStart(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestTokensAndFolding(t *testing.T) {
	if !IsToken("x-request-id") || IsToken("a b") || IsToken("") || IsToken([]byte("a:b")) {
		t.Error("IsToken")
	}
	if !EqualFold([]byte("Content-Length"), "content-length") || EqualFold("a", "b") || EqualFold("[", "{") {
		t.Error("EqualFold")
	}
	if !HasToken([]byte("keep-alive, Upgrade"), "upgrade") || HasToken([]byte("upgrades"), "upgrade") {
		t.Error("HasToken")
	}
	if !LastElementIs([]byte("gzip, chunked ,"), "chunked") || LastElementIs([]byte("chunked, gzip"), "chunked") {
		t.Error("LastElementIs")
	}
	var got []string
	ForEachElement([]byte(" a ,, b\t,"), func(e []byte) { got = append(got, string(e)) })
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("ForEachElement = %q", got)
	}
}

func TestConnectionAndFramingFields(t *testing.T) {
	for _, n := range []string{"Connection", "keep-alive", "Proxy-Connection", "TE", "upgrade"} {
		if !IsConnectionField(n) {
			t.Errorf("%s is a connection field", n)
		}
	}
	for _, n := range []string{"Host", "content-length", "Transfer-Encoding"} {
		if !IsFramingField(n) || IsConnectionField(n) {
			t.Errorf("%s is a framing field", n)
		}
	}
	if IsConnectionField("trailer") || IsFramingField("x-host") {
		t.Error("false positive")
	}
}

func TestParseOrigin(t *testing.T) {
	ok := map[string]Origin{
		"http://10.0.0.7:8000":   {Addr: "10.0.0.7:8000", Host: "10.0.0.7"},
		"https://shadow.example": {Addr: "shadow.example:443", Host: "shadow.example", Secure: true},
		"http://[fd00::7]/":      {Addr: "[fd00::7]:80", Host: "fd00::7"},
	}
	for in, want := range ok {
		got, err := ParseOrigin(in)
		if err != nil || got != want {
			t.Errorf("ParseOrigin(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://x", "http://x/path", "http://u@x", "http://x?q", "http://:80", "http://x:0", "http://x:70000", "x:80"} {
		if _, err := ParseOrigin(in); err == nil {
			t.Errorf("ParseOrigin(%q) accepted", in)
		}
	}
}

func TestCheckAuthority(t *testing.T) {
	for _, h := range []string{"shadow.example", "shadow.example:8080", "[::1]", "[fd00::1]:80"} {
		if err := CheckAuthority(h); err != nil {
			t.Errorf("CheckAuthority(%q): %v", h, err)
		}
	}
	for _, h := range []string{"", "a b", "a/b", "x:", "x:123456", "[::1", "::1", "[zz]:80", "a@b"} {
		if err := CheckAuthority(h); err == nil {
			t.Errorf("CheckAuthority(%q) accepted", h)
		}
	}
	if CheckFieldValue("ok value\t1") != nil || CheckFieldValue("a\r\nb") == nil || CheckFieldValue("\x00") == nil {
		t.Error("CheckFieldValue")
	}
}

func TestParseStatusLine(t *testing.T) {
	for in, want := range map[string][2]int{
		"HTTP/1.1 200 OK":           {200, 1},
		"HTTP/1.0 404 Not Found":    {404, 0},
		"HTTP/1.1 204":              {204, 1},
		"HTTP/1.1 101 Switching  x": {101, 1},
		"HTTP/1.9 599 ":             {599, 9},
	} {
		status, minor, ok := ParseStatusLine([]byte(in))
		if !ok || status != want[0] || minor != want[1] {
			t.Errorf("ParseStatusLine(%q) = %d, %d, %v; want %v", in, status, minor, ok, want)
		}
	}
	for _, in := range []string{"", "HTTP/1.1 20", "HTTP/1.1 2x0 OK", "HTTP/2 200 OK", "HTTP/1.1  200 OK", "HTTP/1.1 2000",
		"HTTP/1.x 200 OK", "http/1.1 200 OK", "SSH-2.0-OpenSSH_9.6", "HTTP/1.1 200\tOK"} {
		if _, _, ok := ParseStatusLine([]byte(in)); ok {
			t.Errorf("ParseStatusLine(%q) accepted", in)
		}
	}
}
