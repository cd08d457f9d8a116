//go:build race

package mirror

// raceEnabled: the race detector slows the uplink tens of times, so
// throughput figures measured under it mean nothing (TestCatchUpThroughput
// is skipped; every correctness test still runs).
const raceEnabled = true
