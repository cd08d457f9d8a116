//go:build linux

package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/plugins/host"
	"github.com/katka-io/katka/plugins/sdk"
)

// copyPlugin copies the built plugin src into a fresh plugin directory as
// <dir>/<name>/<command> and returns its manifest (with the file's sha256).
func copyPlugin(t *testing.T, src, name, command string) host.Manifest {
	t.Helper()
	bin, err := os.ReadFile(manifest(t, src).Path())
	if err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Dir(filepath.Join(pdir, command)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, command), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	m := host.Manifest{Name: name, Kind: sdk.KindProcessor, Version: "0.1.0", Command: command, Dir: pdir}
	if err := host.WriteManifest(m); err != nil {
		t.Fatal(err)
	}
	m, err = host.LoadManifest(filepath.Join(pdir, host.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// processOnce starts m, sends it one record and returns the values it answers.
func processOnce(t *testing.T, m host.Manifest) []string {
	t.Helper()
	c, err := host.Dial(m, 10*time.Second, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := c.Process(context.Background(), []broker.Record{{Value: []byte("x"), Timestamp: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]string, len(out))
	for i, r := range out {
		vals[i] = string(r.Value)
	}
	return vals
}

// TestManifestCommandConfined: a manifest's command is refused, naming the
// field, when it is absolute, holds "..", or resolves through a symlink to a
// file outside the plugin's directory (even a file with the right sha256); a
// symlink that stays inside is followed.
func TestManifestCommandConfined(t *testing.T) {
	noop := manifest(t, "noop")
	write := func(t *testing.T, dir, body string) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, host.ManifestFile)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "name: x\nkind: processor\nsha256: " + noop.SHA256 + "\n"
	for _, c := range []struct{ command, want string }{
		{noop.Path(), `command: "` + noop.Path() + `" is an absolute path`},
		{"../noop/noop", `command: "../noop/noop" contains ".."`},
		{"bin/../../noop/noop", `command: "bin/../../noop/noop" contains ".."`},
		{"", "command: must not be empty"},
	} {
		_, err := host.LoadManifest(write(t, filepath.Join(t.TempDir(), "x"), base+"command: \""+c.command+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("command %q: LoadManifest = %v, want %q", c.command, err, c.want)
		}
	}
	if _, err := host.LoadManifest(write(t, filepath.Join(t.TempDir(), "x"), base+"command: x\nenv: [\"A=B\"]\n")); err == nil || !strings.Contains(err.Error(), `env[0]: "A=B" is not a variable name`) {
		t.Errorf("env A=B: LoadManifest = %v", err)
	}

	// Symlinks leading out of the directory, to the genuine noop binary.
	outside, err := filepath.Abs(noop.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"relative", "absolute"} {
		t.Run(c, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "x")
			target := outside
			if c == "relative" {
				// sub/bin -> ../../../<...>/noop/noop: out through "..".
				if target, err = filepath.Rel(filepath.Join(dir, "sub"), outside); err != nil {
					t.Fatal(err)
				}
			}
			write(t, dir, base+"command: sub/bin\n")
			os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
			if err := os.Symlink(target, filepath.Join(dir, "sub", "bin")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "sub", "bin")); err != nil {
				t.Fatalf("the symlink does not reach the noop binary: %v", err)
			}
			m, err := host.LoadManifest(filepath.Join(dir, host.ManifestFile))
			if err != nil {
				t.Fatal(err)
			}
			err = m.Verify()
			if err == nil || !strings.Contains(err.Error(), `manifest command "sub/bin"`) || !strings.Contains(err.Error(), "escapes") {
				t.Fatalf("Verify = %v, want a refusal naming the command", err)
			}
			if _, err := host.Dial(m, 5*time.Second, testLogger(t)); err == nil || !strings.Contains(err.Error(), `manifest command "sub/bin"`) {
				t.Fatalf("Dial = %v, want a refusal naming the command", err)
			}
			t.Logf("refused: %v", err)
		})
	}

	// A symlink that stays inside the directory is fine.
	m := copyPlugin(t, "envreport", "inside", "real/envreport")
	if err := os.Symlink(filepath.Join("real", "envreport"), filepath.Join(m.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	m.Command = "link"
	if err := m.Verify(); err != nil {
		t.Fatalf("Verify through an inner symlink: %v", err)
	}
	if vals := processOnce(t, m); len(vals) == 0 {
		t.Fatal("the plugin behind an inner symlink answered nothing")
	}
}

// TestVerifiedBinaryIsWhatRuns: the executable is swapped on disk right after
// katka checked its sha256 (renamed over, or rewritten in place as cp does):
// the plugin that runs is still the verified one.
func TestVerifiedBinaryIsWhatRuns(t *testing.T) {
	other, err := os.ReadFile(manifest(t, "noop").Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		swap func(path string) error
	}{
		{"rename", func(path string) error {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, other, 0o755); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		}},
		{"in place", func(path string) error { return os.WriteFile(path, other, 0o755) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := copyPlugin(t, "envreport", "swapped", "envreport")
			swapped := 0
			defer host.SetAfterVerify(func(v host.Manifest) {
				if v.Dir != m.Dir {
					return
				}
				if err := c.swap(m.Path()); err != nil {
					t.Errorf("swap: %v", err)
				}
				swapped++
			})()
			vals := processOnce(t, m)
			if swapped != 1 {
				t.Fatalf("the hook swapped %d times, want 1", swapped)
			}
			// The file on disk is now the noop (which answers nothing) ...
			if err := m.Verify(); !errors.Is(err, host.ErrChecksum) {
				t.Fatalf("Verify after the swap = %v, want a checksum mismatch", err)
			}
			// ... but what ran is the verified envreport.
			if !slices.ContainsFunc(vals, func(v string) bool { return strings.HasPrefix(v, "KATKA_PLUGIN_DIR=") }) {
				t.Fatalf("the plugin answered %q: not the verified envreport", vals)
			}
		})
	}
}

// TestPluginEnvironmentIsMinimal: katka's environment holds a secret; the
// plugin sees only the base variables, go-plugin's handshake variables,
// KATKA_PLUGIN_DIR and what its manifest's env lists.
func TestPluginEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("KATKA_TEST_SECRET", "s3cret-token")
	t.Setenv("KATKA_TEST_PASSED", "yes")
	t.Setenv("TZ", "UTC")
	m := manifest(t, "envreport")
	m.Env = []string{"KATKA_TEST_PASSED"}
	env := map[string]string{}
	for _, kv := range processOnce(t, m) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	allowed := append(slices.Clone(host.BaseEnv), "KATKA_TEST_PASSED", "KATKA_PLUGIN_DIR",
		sdk.Handshake.MagicCookieKey, "PLUGIN_PROTOCOL_VERSIONS", "PLUGIN_MIN_PORT", "PLUGIN_MAX_PORT")
	for k, v := range env {
		if !slices.Contains(allowed, k) {
			t.Errorf("the plugin sees %s=%s, which is neither base, handshake nor listed", k, v)
		}
		if strings.Contains(v, "s3cret") {
			t.Errorf("the plugin sees the secret in %s", k)
		}
	}
	for k, want := range map[string]string{
		"KATKA_TEST_PASSED":          "yes",
		"PATH":                       os.Getenv("PATH"),
		"TZ":                         "UTC",
		"KATKA_PLUGIN_DIR":           m.Dir,
		sdk.Handshake.MagicCookieKey: sdk.Handshake.MagicCookieValue,
	} {
		if env[k] != want {
			t.Errorf("the plugin sees %s=%q, want %q", k, env[k], want)
		}
	}
	if _, ok := env["KATKA_TEST_SECRET"]; ok {
		t.Error("the plugin sees KATKA_TEST_SECRET")
	}
	t.Logf("plugin environment: %d variables: %v", len(env), slices.Sorted(func(yield func(string) bool) {
		for k := range env {
			if !yield(k) {
				return
			}
		}
	}))
}
