package selfupdate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script that, when healthy, writes the
// health marker for its pid and version, then logs its pid to dir/pids and
// NAME to dir/started, and sleeps.
func script(t *testing.T, path, name, version string, healthy bool) string {
	t.Helper()
	dir := filepath.Dir(path)
	body := "#!/bin/sh\n"
	if healthy {
		body += fmt.Sprintf("printf '{\"pid\":%%d,\"version\":\"%s\"}' $$ > %s/state/healthy.json.w && mv %s/state/healthy.json.w %s/state/healthy.json\n", version, dir, dir, dir)
	}
	body += fmt.Sprintf("echo $$ >> %s/pids\necho %s >> %s/started\nexec sleep 600\n", dir, name, dir)
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := hashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// runUntilStarted runs a supervisor over dir until the started log holds
// want (one name per line) and no trial is pending, then stops it.
func runUntilStarted(t *testing.T, dir string, maxAttempts int, want ...string) {
	t.Helper()
	sv, err := NewSupervisor(SupervisorOptions{Binary: filepath.Join(dir, "katka"), Dir: filepath.Join(dir, "state"), Args: []string{"serve"},
		Enabled: true, HealthWindow: 20 * time.Second, MaxAttempts: maxAttempts, StopGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sv.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "started"))
		got := strings.Fields(string(b))
		st, _ := LoadState(filepath.Join(dir, "state"))
		if strings.Join(got, " ") == strings.Join(want, " ") && st.Trial == nil {
			break // and the state is at rest (no trial pending)
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("started %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every child is stopped when Run returns (none outlives the supervisor).
	pids, _ := os.ReadFile(filepath.Join(dir, "pids"))
	for _, p := range strings.Fields(string(pids)) {
		var pid int
		fmt.Sscan(p, &pid)
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("child %d outlived the supervisor", pid)
		}
	}
}

// TestRecoverAfterPowerCut puts the on-disk state as a power cut leaves it
// after each step of an update and checks that the supervisor starts a
// binary that is safe to start and brings the state to rest.
func TestRecoverAfterPowerCut(t *testing.T) {
	type setup struct {
		dir, bin, state string
		sumA, sumB      string
	}
	prep := func(t *testing.T) setup {
		dir := t.TempDir()
		s := setup{dir: dir, bin: filepath.Join(dir, "katka"), state: filepath.Join(dir, "state")}
		os.MkdirAll(s.state, 0o755)
		s.sumA = script(t, s.bin, "A", "1", true)
		s.sumB = script(t, s.bin+".new", "B", "2", true)
		return s
	}
	trial := func(t *testing.T, s setup, attempts int) {
		st := State{Trial: &Trial{Version: "2", SHA256: s.sumB, From: "1", Attempts: attempts}, Bad: map[string]string{}, Totals: map[string]int{}}
		if err := writeJSON(filepath.Join(s.state, stateFile), st); err != nil {
			t.Fatal(err)
		}
	}
	load := func(t *testing.T, s setup) State {
		st, err := LoadState(s.state)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	t.Run("while staging: katka.new without a request is removed", func(t *testing.T) {
		s := prep(t)
		os.WriteFile(s.bin+".new.tmp", []byte("half"), 0o755)
		runUntilStarted(t, s.dir, 2, "A")
		if exists(s.bin+".new") || exists(s.bin+".new.tmp") {
			t.Error("staged binary without staged.json kept")
		}
		if st := load(t, s); st.Trial != nil || len(st.Results) != 0 {
			t.Errorf("state %+v", st)
		}
	})
	t.Run("after staging: the request becomes a trial and commits", func(t *testing.T) {
		s := prep(t)
		writeJSON(filepath.Join(s.state, stagedFile), Staged{Version: "2", SHA256: s.sumB, From: "1"})
		runUntilStarted(t, s.dir, 2, "B")
		st := load(t, s)
		if st.Current != "2" || st.Previous != "1" || st.Trial != nil || st.Totals[ResultCommitted] != 1 || st.Totals[ResultStaged] != 1 {
			t.Errorf("state %+v", st)
		}
		if sum, _ := hashFile(s.bin); sum != s.sumB {
			t.Error("katka is not B after the commit")
		}
		if sum, _ := hashFile(s.bin + ".prev"); sum != s.sumA {
			t.Error("katka.prev is not A")
		}
		if exists(filepath.Join(s.state, stagedFile)) {
			t.Error("staged.json kept")
		}
	})
	t.Run("staged binary changed: not tried", func(t *testing.T) {
		s := prep(t)
		writeJSON(filepath.Join(s.state, stagedFile), Staged{Version: "2", SHA256: s.sumA, From: "1"})
		runUntilStarted(t, s.dir, 2, "A")
		if exists(s.bin + ".new") {
			t.Error("changed katka.new kept")
		}
	})
	t.Run("during a trial: tried again while attempts remain", func(t *testing.T) {
		s := prep(t)
		trial(t, s, 1)
		runUntilStarted(t, s.dir, 2, "B")
		if st := load(t, s); st.Current != "2" || st.Trial != nil {
			t.Errorf("state %+v", st)
		}
	})
	t.Run("during a trial: attempts spent, rolled back", func(t *testing.T) {
		s := prep(t)
		trial(t, s, 2)
		runUntilStarted(t, s.dir, 2, "A")
		st := load(t, s)
		if st.Trial != nil || !strings.Contains(st.Bad["2"], "2 trial starts did not finish") || st.Totals[ResultRolledBack] != 1 {
			t.Errorf("state %+v", st)
		}
		if exists(s.bin + ".new") {
			t.Error("katka.new kept after the rollback")
		}
	})
	t.Run("during the commit: renames done, record missing", func(t *testing.T) {
		s := prep(t)
		trial(t, s, 1)
		os.Link(s.bin, s.bin+".prev")
		os.Rename(s.bin+".new", s.bin)
		runUntilStarted(t, s.dir, 2, "B")
		if st := load(t, s); st.Current != "2" || st.Trial != nil || st.Totals[ResultCommitted] != 1 || len(st.Bad) != 0 {
			t.Errorf("state %+v", st)
		}
	})
	t.Run("during the commit: katka.prev.tmp left over", func(t *testing.T) {
		s := prep(t)
		trial(t, s, 1)
		os.Link(s.bin, s.bin+".prev.tmp")
		runUntilStarted(t, s.dir, 2, "B")
		if exists(s.bin + ".prev.tmp") {
			t.Error("katka.prev.tmp kept")
		}
		if sum, _ := hashFile(s.bin + ".prev"); sum != s.sumA {
			t.Error("katka.prev is not A")
		}
	})
	t.Run("a bad version staged again is not tried", func(t *testing.T) {
		s := prep(t)
		writeJSON(filepath.Join(s.state, stateFile), State{Bad: map[string]string{"2": "exited"}})
		writeJSON(filepath.Join(s.state, stagedFile), Staged{Version: "2", SHA256: s.sumB, From: "1"})
		runUntilStarted(t, s.dir, 2, "A")
		if exists(s.bin + ".new") {
			t.Error("katka.new of a bad version kept")
		}
	})
}
