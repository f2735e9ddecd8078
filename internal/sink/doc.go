// Package sink is an HTTP/1.1 server that answers every request with an
// empty 200, at a fraction of the cost of a real server: the shadow of the
// replay benchmarks, so that what they measure is the replay.
package sink
