// Package cli turns shadowtee's command line (and its SHADOWTEE_*
// environment twins) into agent configurations, runs them and prints the
// results. It holds no logic of its own beyond that: every check of a value
// that a rules file can hold too is config's, every check of HTTP syntax
// httpsyntax's.
//
// Exit statuses: 0 success, 1 failure, 2 bad command line, 3 a damaged
// capture replayed up to the damage, 130 an interrupted demo.
package cli
