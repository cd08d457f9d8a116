package packaging

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// run runs a command and fails the test on error, returning its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The files the package owns or its scripts create, and the service's
// enablement that deb-systemd-helper records.
var (
	enabledLink = "/etc/systemd/system/multi-user.target.wants/katka.service"
	maskLink    = "/etc/systemd/system/katka.service"
)

// TestDebInstall installs the amd64 package into this machine with dpkg (the
// tests run as root), checks what it put where, runs the installed binary as
// the katka user on the packaged config until READY=1, verifies the installed
// unit, then removes and purges it: remove keeps the config and the data,
// purge leaves nothing but the katka user (Debian's rule).
func TestDebInstall(t *testing.T) {
	dpkg := requireTool(t, "dpkg", "dpkg")
	requireTool(t, "deb-systemd-helper", "init-system-helpers")
	requireTool(t, "adduser", "adduser")
	requireTool(t, "setpriv", "util-linux")
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestDebInstall installs a package into this machine and needs root (CI=true)")
		}
		t.Skip("installing a package needs root")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "katka").CombinedOutput(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a katka package is installed on this machine already (%s): remove it with dpkg -P katka first", out)
	}
	if exists(DataDir) || exists("/etc/katka") {
		t.Fatalf("%s or /etc/katka exists without the package: remove them first", DataDir)
	}
	_, userErr := user.Lookup("katka")
	userExisted := userErr == nil

	dir := t.TempDir()
	deb, err := Build(Options{Version: "v1.2.3", Arch: "amd64", Binary: buildKatka(t, dir, "amd64"), Config: shippedConfig(t), OutDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	lintian(t, deb)
	t0 := time.Now()
	t.Cleanup(func() {
		// A failed test must not leave the package behind, and the machine
		// is left as it was for the next run.
		exec.Command(dpkg, "-P", "katka").Run()
		if !userExisted {
			if out, err := exec.Command("deluser", "--system", "--quiet", "katka").CombinedOutput(); err != nil {
				t.Logf("deluser katka: %v %s", err, out)
			}
		}
	})
	run(t, dpkg, "-i", deb)
	t.Logf("dpkg -i: %v", time.Since(t0).Round(time.Millisecond))

	// Files, owners, modes.
	u, err := user.Lookup("katka")
	if err != nil {
		t.Fatalf("postinst made no katka user: %v", err)
	}
	for _, c := range []struct {
		path       string
		mode       os.FileMode
		user, grp  string
		wantTarget string
	}{
		{BinPath, 0o755, "root", "root", ""},
		{UnitPath, 0o644, "root", "root", ""},
		{ConfigPath, 0o640, "root", "katka", ""},
		{"/etc/katka", 0o750 | os.ModeDir, "root", "katka", ""},
		{DataDir, 0o750 | os.ModeDir, "katka", "katka", ""},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("after install: %v", err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		owner, _ := user.LookupId(fmt.Sprint(sys.Uid))
		grp, _ := user.LookupGroupId(fmt.Sprint(sys.Gid))
		if st.Mode() != c.mode || owner == nil || owner.Username != c.user || grp == nil || grp.Name != c.grp {
			t.Errorf("%s: mode %v uid %d gid %d, want %v %s:%s", c.path, st.Mode(), sys.Uid, sys.Gid, c.mode, c.user, c.grp)
		}
	}
	if target, err := os.Readlink(enabledLink); err != nil || !strings.HasSuffix(target, "/katka.service") {
		t.Errorf("service not enabled: %s -> %q, %v", enabledLink, target, err)
	}
	if u.HomeDir != DataDir {
		t.Errorf("katka user's home %q, want %s", u.HomeDir, DataDir)
	}

	// The installed binary, as the service runs it.
	if out := run(t, BinPath, "version"); out != "katka v0.0.0-test\n" {
		t.Errorf("katka version: %q", out)
	}
	if out := run(t, "setpriv", asKatka(BinPath, "config", "check", "--config", ConfigPath)...); out != ConfigPath+": ok (data_dir "+DataDir+")\n" {
		t.Errorf("config check: %q", out)
	}
	verifyUnit(t, UnitPath)
	serveInstalled(t)
	if !exists(filepath.Join(DataDir, "__consumer_offsets")) {
		t.Errorf("katka serve wrote nothing into %s", DataDir)
	}

	// remove: binary and unit go; config, data and the disabled state stay.
	run(t, dpkg, "-r", "katka")
	for _, p := range []string{BinPath, UnitPath} {
		if exists(p) {
			t.Errorf("after dpkg -r: %s is still there", p)
		}
	}
	for _, p := range []string{ConfigPath, DataDir} {
		if !exists(p) {
			t.Errorf("after dpkg -r: %s is gone (only purge removes it)", p)
		}
	}
	// purge: nothing of katka's is left but its user.
	run(t, dpkg, "-P", "katka")
	for _, p := range []string{BinPath, UnitPath, ConfigPath, "/etc/katka", DataDir, enabledLink, maskLink,
		"/var/lib/systemd/deb-systemd-helper-enabled/katka.service.dsh-also",
		"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/katka.service",
		"/var/lib/systemd/deb-systemd-helper-masked/katka.service"} {
		if exists(p) {
			t.Errorf("after dpkg -P: %s is still there", p)
		}
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "katka").CombinedOutput(); strings.Contains(string(out), "installed") {
		t.Errorf("dpkg still lists katka: %s", out)
	}
	if _, err := user.Lookup("katka"); err != nil {
		t.Errorf("purge removed the katka user (Debian keeps system users): %v", err)
	}
}

// lintian fails on any error or warning lintian reports for a package (the overrides in packaging/lintian-overrides say why each
// is intended).
func lintian(t *testing.T, deb string) {
	t.Helper()
	l := requireTool(t, "lintian", "lintian")
	t0 := time.Now()
	out, err := exec.Command(l, "--fail-on", "error,warning", deb).CombinedOutput()
	var bad []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "running with root privileges") {
			bad = append(bad, line)
		}
	}
	if err != nil || len(bad) > 0 {
		t.Fatalf("lintian %s: %v\n%s", filepath.Base(deb), err, strings.Join(bad, "\n"))
	}
	t.Logf("lintian: clean in %v", time.Since(t0).Round(time.Millisecond))
}

// asKatka is setpriv's arguments to exec a command as the katka user and
// group (setpriv execs, so signals and the exit status are katka's own).
func asKatka(cmd ...string) []string {
	return append([]string{"--reuid=katka", "--regid=katka", "--init-groups", "--"}, cmd...)
}

// serveInstalled runs the installed katka as the katka user on the packaged
// config and data directory, with its listeners on free loopback ports, the
// way the unit does (NOTIFY_SOCKET set), until READY=1; then SIGTERM and a
// clean exit.
func serveInstalled(t *testing.T) {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	os.Chmod(sock, 0o777) // the katka user sends to it
	cmd := exec.Command("setpriv", asKatka(BinPath, "serve", "--config", ConfigPath,
		"--kafka-addr", freeAddr(t), "--http-addr", freeAddr(t))...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	kill := func() { cmd.Process.Kill() }
	var logb strings.Builder
	cmd.Stdout, cmd.Stderr = &logb, &logb
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			kill()
			<-done
			t.Fatalf("no READY=1 from the installed katka: %v\n%s", err, logb.String())
		}
		if strings.HasPrefix(string(buf[:n]), "READY=1") {
			break
		}
	}
	t.Logf("installed katka ready in %v", time.Since(t0).Round(time.Millisecond))
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("installed katka after SIGTERM: %v\n%s", err, logb.String())
		}
	case <-time.After(60 * time.Second):
		kill()
		t.Fatalf("installed katka did not stop on SIGTERM\n%s", logb.String())
	}
}
