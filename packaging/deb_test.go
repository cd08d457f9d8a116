package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/config"
	_ "github.com/katka-io/katka/sensors/all" // the shipped config names every input
	"github.com/katka-io/katka/sensors/simulated"
)

// requireTool returns a tool's path; a missing tool fails under CI=true and
// skips otherwise.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed and CI=true (apt-get install -y %s)", name, pkg)
		}
		t.Skipf("%s is not installed (apt-get install -y %s)", name, pkg)
	}
	return p
}

// buildKatka builds a static katka for GOARCH/GOARM into dir, as make does.
func buildKatka(t *testing.T, dir, debArch string) string {
	t.Helper()
	a := Arches[debArch]
	bin := filepath.Join(dir, "katka-"+debArch)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-test", "-o", bin, "github.com/katka-io/katka/appliance/cmd/katka")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a.GOARCH, "GOARM="+a.GOARM)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build katka for %s: %v\n%s", debArch, err, out)
	}
	return bin
}

func shippedConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../configs/katka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                  "1.2.3",
		"v1.2.3-4-gabcdef0":       "1.2.3+git4.abcdef0",
		"v1.2.3-4-gabcdef0-dirty": "1.2.3+git4.abcdef0+dirty",
		"5866964":                 "0.0.0~git5866964",
		"5866964-dirty":           "0.0.0~git5866964.dirty",
		"":                        "0.0.0~gitdev",
	} {
		if got := DebVersion(in); got != want {
			t.Errorf("DebVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPackagedConfig: /etc/katka/katka.yaml loads and validates, points at
// the unit's StateDirectory, has the simulated sensors off, and differs from
// configs/katka.yaml only by the listed edits; an edit that no longer matches
// fails the build.
func TestPackagedConfig(t *testing.T) {
	out, err := PackagedConfig(shippedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "katka.yaml")
	os.WriteFile(path, out, 0o644)
	cfg, err := config.Load(path)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("packaged config: %v", err)
	}
	if cfg.DataDir != DataDir || simulated.ConfigOf(cfg.Sensors).Enabled || cfg.Plugins.Dir != "/usr/local/lib/katka/plugins" {
		t.Errorf("packaged config: data_dir %q, simulated %v, plugins.dir %q", cfg.DataDir, simulated.ConfigOf(cfg.Sensors).Enabled, cfg.Plugins.Dir)
	}
	if _, err := PackagedConfig([]byte("data_dir: ./elsewhere\n")); err == nil || !strings.Contains(err.Error(), "occurs 0 times") {
		t.Errorf("a config the edits do not fit: %v", err)
	}
}

// verifyUnit runs systemd-analyze verify on a unit and fails on any message:
// systemd-analyze exits 0 on unknown keys and bad values, it only prints them.
func verifyUnit(t *testing.T, args ...string) {
	t.Helper()
	sa := requireTool(t, "systemd-analyze", "systemd")
	out, err := exec.Command(sa, append([]string{"verify"}, args...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestUnitVerify checks katka.service with systemd-analyze verify in a root
// holding systemd's own units and a katka binary at /usr/bin/katka (verify
// checks that ExecStart is executable), without installing anything; and
// scores its sandboxing with systemd-analyze security.
func TestUnitVerify(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	root := t.TempDir()
	units := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(units, os.DirFS("/usr/lib/systemd/system")); err != nil {
		t.Fatalf("copy systemd's units: %v", err)
	}
	os.Symlink("usr/lib", filepath.Join(root, "lib"))
	os.WriteFile(filepath.Join(root, "usr/bin/katka"), []byte("#!/bin/sh\n"), 0o755)
	unit, _ := assets.ReadFile("katka.service")
	os.WriteFile(filepath.Join(units, "katka.service"), unit, 0o644)
	verifyUnit(t, "--root="+root, "katka.service")

	// The check catches mistakes: systemd-analyze itself exits 0 on these.
	bad := strings.Replace(string(unit), "ProtectSystem=strict", "ProtectSystm=strict", 1)
	os.WriteFile(filepath.Join(units, "katka.service"), []byte(bad), 0o644)
	out, _ := exec.Command(sa, "verify", "--root="+root, "katka.service").CombinedOutput()
	if !strings.Contains(string(out), "Unknown key 'ProtectSystm'") {
		t.Errorf("verify of a unit with a typo printed %q", out)
	}

	// Exposure 0 (sandboxed) .. 10 (unprotected); 1.7 when written.
	path := filepath.Join(t.TempDir(), "katka.service")
	os.WriteFile(path, unit, 0o644)
	out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-1])
}

// TestBuildAllArches builds the three packages and checks what each holds,
// and that the same input gives the same bytes.
// The binary is a stand-in here (packing does not look into it): the real
// ones are packed by `make package`, installed by TestDebInstall (amd64) and
// run under qemu by `make test-arm`.
func TestBuildAllArches(t *testing.T) {
	dpkgDeb := requireTool(t, "dpkg-deb", "dpkg")
	dir := t.TempDir()
	bin := filepath.Join(dir, "katka")
	os.WriteFile(bin, []byte("#!/bin/sh\necho katka stand-in\n"), 0o755)
	for _, arch := range []string{"amd64", "arm64", "armhf"} {
		t0 := time.Now()
		deb, err := Build(Options{Version: "v1.2.3-4-gabcdef0", Arch: arch, Binary: bin, Config: shippedConfig(t), OutDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(deb)
		t.Logf("%s: %d KiB in %v", filepath.Base(deb), st.Size()/1024, time.Since(t0).Round(time.Millisecond))
		again, err := Build(Options{Version: "v1.2.3-4-gabcdef0", Arch: arch, Binary: bin, Config: shippedConfig(t), OutDir: filepath.Join(dir, "again")})
		if err != nil {
			t.Fatal(err)
		}
		if a, b := readFile(t, deb), readFile(t, again); string(a) != string(b) {
			t.Errorf("%s: two builds of the same input differ (%d and %d bytes): not reproducible", arch, len(a), len(b))
		}
		if want := "katka_1.2.3+git4.abcdef0_" + arch + ".deb"; filepath.Base(deb) != want {
			t.Errorf("package file %s, want %s", filepath.Base(deb), want)
		}
		out, err := exec.Command(dpkgDeb, "-f", deb, "Architecture", "Version", "Depends").CombinedOutput()
		if err != nil || string(out) != "Architecture: "+arch+"\nVersion: 1.2.3+git4.abcdef0\nDepends: adduser\n" {
			t.Errorf("%s control: %v %q", arch, err, out)
		}
		out, err = exec.Command(dpkgDeb, "-c", deb).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb -c: %v\n%s", err, out)
		}
		for _, want := range []string{" ./usr/bin/katka", " ./lib/systemd/system/katka.service", " ./etc/katka/katka.yaml"} {
			if !strings.Contains(string(out), want+"\n") {
				t.Errorf("%s lacks %s:\n%s", arch, want, out)
			}
		}
		ctl := filepath.Join(dir, "ctl-"+arch)
		if out, err := exec.Command(dpkgDeb, "-e", deb, ctl).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
		}
		conffiles, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
		if string(conffiles) != ConfigPath+"\n" {
			t.Errorf("conffiles: %q", conffiles)
		}
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			if st, err := os.Stat(filepath.Join(ctl, s)); err != nil || st.Mode()&0o111 == 0 {
				t.Errorf("maintainer script %s: %v", s, err)
			}
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
