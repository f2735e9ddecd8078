// Package browser renders pages in headless Chromium for the tests of the
// comparison's page and report: what a user's browser would show, DOM and
// all, after the page's scripts ran.
package browser
