//go:build !race

package group

// raceEnabled: see race_on_test.go.
const raceEnabled = false
