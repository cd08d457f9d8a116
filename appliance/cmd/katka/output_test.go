package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/auth"
)

// TestUserListOutput: `katka user list` prints a table by default and a JSON
// array with -o json; -o yaml is refused before any work.
func TestUserListOutput(t *testing.T) {
	dir := t.TempDir()
	s, err := auth.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", "pw-alice-123", 4096, auth.ScramSHA256); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := newUserCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"list", "--data-dir", dir}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	table, err := run()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "USER") || !strings.Contains(table, "alice  SCRAM-SHA-256(4096)") {
		t.Errorf("table output:\n%s", table)
	}
	js, err := run("-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []userRow
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, js)
	}
	if len(rows) != 1 || rows[0].User != "alice" || len(rows[0].Mechanisms) != 1 || rows[0].Mechanisms[0] != (mechanismJSON{"SCRAM-SHA-256", 4096}) {
		t.Errorf("-o json rows = %+v", rows)
	}
	if out, err := run("--output", "yaml"); err == nil || !strings.Contains(err.Error(), "allowed: table, json") {
		t.Errorf("-o yaml: err %v, out %s", err, out)
	}
}
