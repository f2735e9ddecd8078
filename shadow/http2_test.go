package shadow

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHTTP2Smoke(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		t.Logf("%s %s %s host=%s hdr=%v body=%d", r.Proto, r.Method, r.URL, r.Host, r.Header, len(b))
		io.WriteString(w, "hello")
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	defer ts.Close()
	s, err := NewHTTP2(SenderConfig{URL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.Send(request(t, clientAddr(i), i, ""), nil)
		s.Send(request(t, clientAddr(i), i, "body body"), nil)
	}
	f := newFake("POST", "api.example:9000", "/p", [2]string{"content-type", "text/plain"})
	f.body = "0123456789"
	s.Send(f, nil)
	waitFor(t, "mirrored", func() bool { return s.Stats().Mirrored.Load()+failures(s.Stats()) == 11 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Close(ctx)
	t.Log(s.Stats().Snapshot())
	checkAccounting(t, s.Stats())
	checkNoGoroutines(t)
}
