package compare

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
)

// The page is one HTML document with its style and script inline, so that
// a static report is a single file. Both are allowed by hash in the
// Content-Security-Policy, which allows nothing else: no other script, no
// inline event handler, no fetch but /api/compare on the live page.

//go:embed ui/report.css
var pageCSS string

//go:embed ui/report.js
var pageJS string

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

var (
	cspLive = "default-src 'none'; script-src " + cspHash(pageJS) + "; style-src " + cspHash(pageCSS) +
		"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	cspStatic = "default-src 'none'; script-src " + cspHash(pageJS) + "; style-src " + cspHash(pageCSS) +
		"; img-src data:; base-uri 'none'; form-action 'none'"
)

const pageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
`

const pageTop = `<title>shadowtee · response comparison</title>
<style>`

const pageBody = `</style>
</head>
<body>
<header class="top">
<h1>shadowtee <span>response comparison</span></h1>
<div id="meta"></div>
<div class="controls">
<input id="filter" type="search" placeholder="Filter endpoints" aria-label="Filter endpoints">
<label class="live-only"><input type="checkbox" id="auto"> auto-refresh</label>
<button id="refresh" class="live-only" type="button">Refresh</button>
</div>
</header>
<main>
<section id="totals"></section>
<section id="endpoints"><p class="empty">Loading…</p></section>
</main>
<footer>Endpoints are sorted by their share of answers judged different. Values are redacted where the configuration says so.</footer>
`

// writePage writes the page; data, when not nil, is the report inline
// (a static file), else the page fetches api/compare.
func writePage(w io.Writer, data []byte) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(pageHead)
	if data != nil {
		// The attribute is double-quoted and the policy holds no double
		// quote.
		bw.WriteString(`<meta http-equiv="Content-Security-Policy" content="` + cspStatic + "\">\n")
	}
	bw.WriteString(pageTop)
	bw.WriteString(pageCSS)
	bw.WriteString(pageBody)
	if data != nil {
		// encoding/json escapes <, > and & (and U+2028, U+2029): the data
		// cannot end this element or open another.
		bw.WriteString(`<script type="application/json" id="report-data">`)
		bw.Write(data)
		bw.WriteString("</script>\n")
	}
	bw.WriteString("<script>")
	bw.WriteString(pageJS)
	bw.WriteString("</script>\n</body>\n</html>\n")
	return bw.Flush()
}

// WriteHTML writes a static report: the page of /compare with r inline, one
// file that needs nothing else.
func WriteHTML(w io.Writer, r *Report) error {
	if r == nil {
		r = &Report{Endpoints: []EndpointReport{}}
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writePage(w, data)
}

func securityHeaders(w http.ResponseWriter, csp string) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// Handler serves GET /api/compare (the report as JSON) and GET /compare
// (the page, which fetches it).
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/compare", func(w http.ResponseWriter, _ *http.Request) {
		securityHeaders(w, "default-src 'none'; frame-ancestors 'none'")
		w.Header().Set("Content-Type", "application/json")
		_ = WriteJSON(w, e.Report())
	})
	mux.HandleFunc("GET /compare", func(w http.ResponseWriter, _ *http.Request) {
		securityHeaders(w, cspLive)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Frame-Options", "DENY")
		_ = writePage(w, nil)
	})
	return mux
}
