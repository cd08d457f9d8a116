package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// runDoctor runs `katka doctor` with a config and returns its stdout and
// exit code. asNobody runs it as uid 65534 (root ignores file modes).
func runDoctor(t *testing.T, cfgYAML string, cfgMode os.FileMode, dataDir string, asNobody bool) (string, int) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "katka.yaml")
	if err := os.WriteFile(cfg, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg, cfgMode); err != nil { // umask-free
		t.Fatal(err)
	}
	// --min-fsync-rate 1: the box running the tests is shared; the rate is
	// measured, its threshold is not what these tests are about.
	cmd := exec.Command(katkaBin, "doctor", "--config", cfg, "--data-dir", dataDir, "--min-fsync-rate", "1")
	if asNobody {
		for _, p := range []string{filepath.Dir(katkaBin), filepath.Dir(cfg), filepath.Dir(filepath.Dir(cfg))} {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &ee):
		if !strings.Contains(stderr.String(), "doctor:") {
			t.Fatalf("katka doctor failed without a report: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		return stdout.String(), ee.ExitCode()
	default:
		t.Fatalf("run katka doctor: %v", err)
		return "", 0
	}
}

// doctorConfig is a config on free loopback ports.
func doctorConfig(t *testing.T, extra string) string {
	return "http:\n  addr: " + freeAddr(t) + "\nkafka:\n  addr: " + freeAddr(t) + "\n" + extra
}

// wantLine fails unless out has a line holding every part, in order.
func wantLine(t *testing.T, out string, parts ...string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		rest, ok := l, true
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return
		}
	}
	t.Errorf("no line with %q in:\n%s", parts, out)
}

// TestDoctorHealthyHost: a writable data dir, free ports and a private
// config give no problem, exit 0, a measured fsync rate and a skipped
// multicast check (no cell).
func TestDoctorHealthyHost(t *testing.T) {
	out, code := runDoctor(t, doctorConfig(t, ""), 0o600, t.TempDir(), false)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantLine(t, out, "ok", "fsync rate", "fsyncs/s (")
	wantLine(t, out, "ok", "port kafka.addr", "is free")
	wantLine(t, out, "skipped", "multicast", "no cell: section")
	wantLine(t, out, "no problems found")
}

// TestDoctorSlowFsync: a disk slower than --min-fsync-rate is a problem
// with its advice (an impossible rate makes any disk slow).
func TestDoctorSlowFsync(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "katka.yaml")
	if err := os.WriteFile(cfg, []byte(doctorConfig(t, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(katkaBin, "doctor", "--config", cfg, "--data-dir", t.TempDir(), "--min-fsync-rate", "1e12").CombinedOutput()
	wantLine(t, string(out), "PROBLEM", "fsync rate", "fsyncs/s")
	wantLine(t, string(out), "advice: below 1e+12/s: acks=all produces will be slow")
}

// TestDoctorReadOnlyDataDir: a data dir katka's user cannot write gives its
// advice line, skips the fsync probe and exits 1.
func TestDoctorReadOnlyDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	out, code := runDoctor(t, doctorConfig(t, ""), 0o644, dir, os.Geteuid() == 0)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	wantLine(t, out, "PROBLEM", "data dir", "is not writable (mode 0555)")
	wantLine(t, out, "advice: make it writable for katka's user: chown katka:katka "+dir)
	wantLine(t, out, "skipped", "fsync rate", "not writable")
}

// TestDoctorProblems: a port held by another program, a world-writable
// config and a free-space watermark the disk cannot meet each give a
// PROBLEM line with one line of advice.
func TestDoctorProblems(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := "http:\n  addr: " + freeAddr(t) + "\nkafka:\n  addr: " + ln.Addr().String() + "\nstorage:\n  min_free: 1000000GiB\n"
	out, code := runDoctor(t, cfg, 0o666, t.TempDir(), false)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	wantLine(t, out, "PROBLEM", "port kafka.addr", ln.Addr().String()+" is in use by another program")
	wantLine(t, out, "advice: find it with ss -ltnp")
	wantLine(t, out, "PROBLEM", "config", "writable by group or others (mode 0666)")
	wantLine(t, out, "advice: chmod go-w")
	wantLine(t, out, "PROBLEM", "free space", "storage.min_free")
	wantLine(t, out, "advice: below storage.min_free")
	if n := strings.Count(out, "PROBLEM"); n != strings.Count(out, "advice:") {
		t.Errorf("%d problems but %d advice lines:\n%s", n, strings.Count(out, "advice:"), out)
	}
}

// TestDoctorMulticastWithoutInterface: with a cell and mDNS configured, a
// network namespace with no multicast-capable interface gives the multicast
// problem and its advice (the check runs only when a cell is configured:
// TestDoctorHealthyHost sees it skipped).
func TestDoctorMulticastWithoutInterface(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a network namespace of its own needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux): %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "katka.yaml")
	yaml := "cell:\n  name: demo\n  mdns: true\n  peer_addr: 127.0.0.1:19193\n  credential_dir: " + t.TempDir() + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(unshare, "-n", katkaBin, "doctor", "--config", cfg, "--data-dir", t.TempDir(), "--min-fsync-rate", "1").CombinedOutput()
	if err == nil {
		t.Fatalf("doctor in an empty network namespace exited 0:\n%s", out)
	}
	wantLine(t, string(out), "PROBLEM", "multicast", "join 239.255.75.75")
	wantLine(t, string(out), "advice: no multicast-capable interface is up")
}
