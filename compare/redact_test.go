package compare

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// Secrets that must never leave memory.
var secrets = []string{"s3cr3t-bearer", "c00kie-value", "setc00kie-value", "pr0xy-pass", "api-k3y", "hunter2-pw", "t0ken-inner", "f0rm-pw", "private-h3ader"}

func secretExchange(i int) *Exchange {
	p := jsonAns(200, `{"user":{"name":"ann","password":"hunter2-pw","keys":[{"id":1,"token":"t0ken-inner"}]},"v":1}`,
		"Set-Cookie", "session=setc00kie-value; Path=/", "X-Private", "private-h3ader-a", "Authorization", "s3cr3t-bearer")
	s := jsonAns(200, `{"user":{"name":"bob","password":"hunter2-pw-changed","keys":[{"id":1,"token":"t0ken-inner-2"}]},"v":2}`,
		"Set-Cookie", "session=setc00kie-value2; Path=/", "Set-Cookie", "other=setc00kie-value", "X-Private", "private-h3ader-b")
	ex := exchange(i, "POST", "/login", p, s)
	ex.Header = append(ex.Header,
		httpmsg.Field{Name: []byte("Authorization"), Value: []byte("Bearer s3cr3t-bearer")},
		httpmsg.Field{Name: []byte("cookie"), Value: []byte("sid=c00kie-value")},
		httpmsg.Field{Name: []byte("Proxy-Authorization"), Value: []byte("Basic pr0xy-pass")},
		httpmsg.Field{Name: []byte("X-Api-Key"), Value: []byte("api-k3y")},
		httpmsg.Field{Name: []byte("X-Private"), Value: []byte("private-h3ader")},
		httpmsg.Field{Name: []byte("Content-Type"), Value: []byte("application/json")},
	)
	ex.Body = []byte(`{"login":"ann","password":"hunter2-pw","nested":{"token":"t0ken-inner"}}`)
	ex.BodyLen = int64(len(ex.Body))
	return ex
}

func TestRedaction(t *testing.T) {
	var log bytes.Buffer
	e := newEngine(t, Config{
		RedactHeaders: []string{"X-Private"},
		RedactPaths:   []string{"body.user.password", "body.password", "body.user.keys[].token", "body.nested"},
		Log:           &log,
	})
	for i := range 12 {
		e.Add(secretExchange(i))
	}
	// A form request too.
	fx := exchange(20, "POST", "/form", answer(200, "a=1&pw=f0rm-pw", "Content-Type", "application/x-www-form-urlencoded"),
		answer(200, "a=2&pw=f0rm-pw-2", "Content-Type", "application/x-www-form-urlencoded"))
	fx.Header = append(fx.Header, httpmsg.Field{Name: []byte("Content-Type"), Value: []byte("application/x-www-form-urlencoded")})
	fx.Body = []byte("user=ann&pw=f0rm-pw")
	fx.BodyLen = int64(len(fx.Body))
	e.Add(fx)

	r := e.Report()
	js := reportJSON(t, r)
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{"report": js, "page": page.String(), "log": log.String()} {
		for _, s := range secrets {
			if s == "f0rm-pw" {
				continue
			}
			if strings.Contains(text, s) {
				t.Errorf("%s holds %q", where, s)
			}
		}
	}
	if !strings.Contains(js, redacted) {
		t.Error("report shows nothing redacted")
	}
	ep := endpointOf(t, r, "POST", "/login")
	// The redacted fields are still counted, with their values hidden.
	for _, path := range []string{"body.user.password", "body.user.keys[].token", "header.x-private"} {
		f := fieldOf(ep.Fields, path)
		if f == nil || *f.Sample.Primary != redacted || *f.Sample.Shadow != redacted {
			t.Errorf("%s: %+v", path, f)
		}
	}
	if f := fieldOf(ep.Fields, "body.user.name"); f == nil || *f.Sample.Primary != `"ann"` {
		t.Errorf("body.user.name: %+v", f)
	}
	x := ep.Example
	if x == nil {
		t.Fatal("no example")
	}
	if strings.Contains(x.Curl, "Authorization") || strings.Contains(x.Curl, "Cookie") || strings.Contains(x.Curl, "X-Private") {
		t.Errorf("curl line holds redacted fields: %s", x.Curl)
	}
	if !strings.Contains(x.Curl, `"password":"[redacted]"`) || !strings.Contains(x.Curl, "'Host: api.example-shadow:8080'") {
		t.Errorf("curl line: %s", x.Curl)
	}
	for _, h := range x.RequestHeaders {
		if strings.EqualFold(h.Name, "authorization") && h.Value != redacted {
			t.Errorf("request header %s: %s", h.Name, h.Value)
		}
	}

	// Values of a redacted subtree: an object that holds a redacted field
	// shows it redacted when it is missing whole.
	e2 := newEngine(t, Config{RedactPaths: []string{"body.a.secret", "body.pw"}})
	e2.Add(exchange(0, "GET", "/m", jsonAns(200, `{"a":{"secret":"t0ken-inner","k":1}}`), jsonAns(200, `{}`)))
	e2.Add(fx)
	js2 := reportJSON(t, e2.Report())
	var page2 bytes.Buffer
	WriteHTML(&page2, e2.Report())
	for _, text := range []string{js2, page2.String()} {
		if strings.Contains(text, "t0ken-inner") || strings.Contains(text, "f0rm-pw") {
			t.Errorf("secret in %s", text)
		}
	}
	f := fieldOf(endpointOf(t, e2.Report(), "GET", "/m").Pending, "body.a")
	if f == nil || *f.Sample.Primary != `{"secret":"[redacted]","k":1}` {
		t.Errorf("body.a: %+v", f)
	}
}
