// Command shadowtee mirrors live HTTP traffic to a shadow backend from
// outside the request path: a TC eBPF program copies the requests, and an
// agent replays them with the Host suffixed "-shadow".
package main
