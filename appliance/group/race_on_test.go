//go:build race

package group

// raceEnabled: the race detector slows replay tens of times, so timing
// bounds are widened (correctness is still checked).
const raceEnabled = true
