//go:build race

package opcua

// raceEnabled: under the race detector gopcua's server publishes too slowly to
// report every one of 10,000 changes a second (it keeps one value per item
// between publishes), so the tests check what it reported.
const raceEnabled = true
