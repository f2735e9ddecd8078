package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/internal/browser"
)

const xss = `<img src=x onerror="document.title='pwned'">`

// pageEngine holds endpoints worth looking at, with hostile bytes in
// every place that captured data reaches.
func pageEngine(t *testing.T) *Engine {
	e := newEngine(t, Config{})
	for i := range 12 {
		p := jsonAns(200, fmt.Sprintf(`{"id":%d,"name":"widget","price":10,"note":"</script><script>document.title='pwned'</script>","%s":1}`, i, strings.ReplaceAll(xss, `"`, `\"`)),
			"X-Build", xss)
		s := jsonAns(200, fmt.Sprintf(`{"id":%d,"name":"widget","price":12,"note":"ok","%s":2}`, i, strings.ReplaceAll(xss, `"`, `\"`)),
			"X-Build", "2")
		e.Add(exchange(i, "GET", fmt.Sprintf("/users/%d", 100+i), p, s))
		same := jsonAns(200, `{"ok":true}`)
		e.Add(exchange(i, "GET", "/health/"+xss, same, same))
	}
	return e
}

func TestPageEscapes(t *testing.T) {
	e := pageEngine(t)
	var b bytes.Buffer
	if err := WriteHTML(&b, e.Report()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	// The data sits in one JSON element, with < and > escaped: nothing of
	// it can close the element or start markup.
	start := strings.Index(page, `<script type="application/json" id="report-data">`)
	end := strings.Index(page[start:], "</script>")
	if start < 0 || end < 0 {
		t.Fatal("no data element")
	}
	data := page[start+len(`<script type="application/json" id="report-data">`) : start+end]
	if strings.ContainsAny(data, "<>") {
		t.Errorf("data holds < or >")
	}
	var r Report
	if err := json.Unmarshal([]byte(data), &r); err != nil || len(r.Endpoints) != 2 {
		t.Errorf("data does not decode: %v", err)
	}
	if strings.Count(page, "<script") != 2 || strings.Contains(page, "<img") {
		t.Errorf("markup from captured data in the page")
	}
	if strings.Contains(pageJS, "innerHTML") || strings.Contains(pageJS, "insertAdjacentHTML") || strings.Contains(pageJS, "document.write") {
		t.Error("the page script parses HTML")
	}
}

func TestHandler(t *testing.T) {
	e := pageEngine(t)
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/compare")
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil || len(r.Endpoints) != 2 {
		t.Fatalf("api/compare: %v, %d endpoints", err, len(r.Endpoints))
	}
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	res, err = http.Get(srv.URL + "/compare")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'sha256-") || strings.Contains(csp, "unsafe") || !strings.Contains(string(page), "fetch('api/compare'") {
		t.Errorf("page: CSP %q", csp)
	}
	if res, _ := http.Post(srv.URL+"/api/compare", "text/plain", nil); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", res.Status)
	}
}

// chromium returns the browser, or skips the test saying why.
func chromium(t *testing.T) string {
	t.Helper()
	bin, err := browser.Find()
	if err != nil {
		t.Skip(err)
	}
	return bin
}

// dumpDOM renders url in headless chromium and returns the DOM once the
// page has loaded and its fetches have ended.
func dumpDOM(t *testing.T, bin, url string) string {
	t.Helper()
	out, err := browser.DumpDOM(t.Context(), bin, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkDOM checks the rendered page: the endpoints, their counts, a
// highlighted difference, and no markup from captured data.
func checkDOM(t *testing.T, dom string) {
	t.Helper()
	for _, want := range []string{
		`data-state="ready"`,
		`data-endpoint="GET /users/{id}"`,
		`<dd class="count" data-count="compared">12</dd>`,
		`<dd class="count" data-count="different">12</dd>`,
		`data-path="body.price"`,
		`<span class="val diff">10</span>`,
		`<span class="val diff">12</span>`,
		`<span class="diff">12</span>`, // in the shadow's body, side by side
		`curl -sS -i --globoff --path-as-is`,
		`&lt;img src=x onerror=`, // shown as text
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %s", want)
		}
	}
	// The healthy endpoint is listed after the one that differs.
	if i, j := strings.Index(dom, `data-endpoint="GET /users/{id}"`), strings.Index(dom, `data-endpoint="GET /health/`); j < 0 || i > j {
		t.Errorf("endpoints not sorted by share of differences (%d, %d)", i, j)
	}
	if regexp.MustCompile(`<img|<script>document|pwned</title>`).MatchString(dom) {
		t.Errorf("captured data became markup")
	}
}

func TestPageRendersStatic(t *testing.T) {
	bin := chromium(t)
	e := pageEngine(t)
	file := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, e.Report()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	checkDOM(t, dumpDOM(t, bin, "file://"+file))
}

func TestPageRendersLive(t *testing.T) {
	bin := chromium(t)
	e := pageEngine(t)
	srv := httptest.NewServer(e.Handler()) // listens on 127.0.0.1
	defer srv.Close()
	dom := dumpDOM(t, bin, srv.URL+"/compare")
	checkDOM(t, dom)
	if !strings.Contains(dom, `id="refresh"`) {
		t.Error("live page lacks its refresh button")
	}
}
