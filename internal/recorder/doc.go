// Package recorder is an HTTP middleware that remembers every request it
// sees: the shadow and primary servers of the demo and the end-to-end tests
// use it to show and to check what arrived.
package recorder
