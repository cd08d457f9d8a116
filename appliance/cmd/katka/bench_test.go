package main

import (
	"runtime/debug"
	"testing"
)

// TestBenchCommandsRunWithBenchGC: every bench command is a load generator
// and runs with GOGC 400 unless GOGC is set (bench consume ran at the
// default 100, and its own GC halved the rate it measured).
func TestBenchCommandsRunWithBenchGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	for _, c := range []struct {
		cmd, gogc string
		want      int
	}{{"produce", "", benchGCPercent}, {"consume", "", benchGCPercent}, {"e2e", "", benchGCPercent}, {"consume", "150", 100}} {
		t.Setenv("GOGC", c.gogc)
		debug.SetGCPercent(100)
		root := newRootCmd()
		// An invalid flag value fails the command before it connects anywhere.
		root.SetArgs([]string{"bench", c.cmd, "--security-protocol", "nonsense"})
		if err := root.Execute(); err == nil {
			t.Fatalf("bench %s with --security-protocol nonsense: no error", c.cmd)
		}
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("bench %s with GOGC=%q ran with GC percent %d, want %d", c.cmd, c.gogc, got, c.want)
		}
	}
}
