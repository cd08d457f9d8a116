// Package plugintest builds plugins for tests: it compiles a Go plugin
// package into a plugins directory and writes its manifest with the sha256.
package plugintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/katka-io/katka/plugins/host"
)

// ModuleRoot returns the repository root (the directory holding go.mod).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("plugintest: cannot find own source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the Go package pkg (e.g. "./plugins/examples/filesink",
// relative to the module root) into <dir>/<name>/<name> and writes its
// manifest. It returns the manifest.
func Build(t testing.TB, dir, pkg, name, kind string) host.Manifest {
	t.Helper()
	pdir := filepath.Join(dir, name)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pdir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	m := host.Manifest{Name: name, Kind: kind, Version: "0.1.0", Command: name, Dir: pdir}
	if err := host.WriteManifest(m); err != nil {
		t.Fatal(err)
	}
	m, err := host.LoadManifest(filepath.Join(pdir, host.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
