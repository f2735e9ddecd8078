//go:build race

package httpframe

// raceEnabled is true under the race detector, where sync.Pool drops items
// on purpose and allocation counts mean nothing.
const raceEnabled = true
