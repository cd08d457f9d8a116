package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheck: `katka config check` accepts every shipped config and
// refuses a bad one with the field path and exit status 1, creating no data
// directory either way.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(katkaBin, "config", "check", "--config", "../../../configs/katka.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configs/katka.yaml: ok (data_dir ./data)") {
		t.Fatalf("shipped config: %v: %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("data_dir: "+filepath.Join(dir, "data")+"\nstorage:\n  fsync: sometimes\n"), 0o644)
	cmd := exec.Command(katkaBin, "config", "check", "--config", bad)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), `storage.fsync: "sometimes" is not allowed`) {
		t.Fatalf("bad config: exit %d, %v: %s", cmd.ProcessState.ExitCode(), err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("config check touched the data dir: %v", err)
	}
}
