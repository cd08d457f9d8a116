//go:build !race

package mirror

// raceEnabled is false: throughput tests measure real figures.
const raceEnabled = false
