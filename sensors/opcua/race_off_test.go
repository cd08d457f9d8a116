//go:build !race

package opcua

// raceEnabled is false without the race detector.
const raceEnabled = false
