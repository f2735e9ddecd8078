//go:build !race

package httpframe

const raceEnabled = false
