// Package e2e holds the end-to-end tests: the built shadowtee binary in a
// client / gateway / shadow topology of network namespaces joined by veth
// pairs (internal/sandbox), with real servers (go-httpbin, net/http, a JSON
// API and a changed release of it) and real clients, in both attach modes,
// asserting what the shadow received, what the agent counted, and what a
// user sees (the summary, /metrics, /compare in headless Chromium).
//
// The tests need root (namespaces, BPF) and skip without it; they send
// traffic only inside the namespaces they make, to 198.18.0.0/15 and
// fd00::/8, and remove them at the end. Every load is bounded in count and
// time. There is no code here but tests.
package e2e
