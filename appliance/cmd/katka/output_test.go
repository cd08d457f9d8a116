package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
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

// TestPluginListOutput: `katka plugin list -o json` lists a plugin of the
// plugins directory with its checksum verdict as JSON.
func TestPluginListOutput(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "echo")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := []byte("#!/bin/sh\n")
	if err := os.WriteFile(filepath.Join(pdir, "echo"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	manifest := "name: echo\nkind: processor\nversion: 1.0.0\ncommand: echo\nsha256: " + hex.EncodeToString(sum[:]) + "\n"
	if err := os.WriteFile(filepath.Join(pdir, "manifest.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newPluginCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"list", "--dir", dir, "-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var rows []pluginRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if len(rows) != 1 || rows[0].Name != "echo" || rows[0].Kind != "processor" || rows[0].Checksum != "ok" || len(rows[0].Instances) != 0 {
		t.Errorf("rows = %+v", rows)
	}
}
