package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifyListener is the service manager's end of systemd's notify protocol: a
// unixgram socket whose path goes to katka in $NOTIFY_SOCKET. Every datagram
// read arrives on msgs.
type notifyListener struct {
	path string
	msgs chan string
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	// A short path: sun_path holds 108 bytes, t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifyListener{path: path, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			m, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:m])
		}
	}()
	return n
}

// await returns the first datagram containing line (one "KEY=value" line),
// with every datagram read before it, or fails after timeout.
func (n *notifyListener) await(t *testing.T, line string, timeout time.Duration) (msg string, before []string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q (got %q)", line, before)
			}
			for _, l := range strings.Split(m, "\n") {
				if l == line {
					return m, before
				}
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("no %q from katka within %v (got %q)", line, timeout, before)
		}
	}
}

// startNotifyKatka starts `katka serve` with a Kafka and an HTTP listener and
// $NOTIFY_SOCKET set, plus the extra environment.
func startNotifyKatka(t *testing.T, n *notifyListener, env ...string) (cmd *exec.Cmd, kafkaAddr, httpAddr string, logPath string) {
	t.Helper()
	bin := requireBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "katka.yaml")
	if err := os.WriteFile(cfg, []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ports := make([]string, 2)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	logPath = filepath.Join(dir, "katka.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd = exec.Command(bin, "serve", "--config", cfg, "--data-dir", filepath.Join(dir, "data"),
		"--kafka-addr", ports[0], "--http-addr", ports[1])
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+n.path), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start katka: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("katka log:\n%s", b)
		}
	})
	return cmd, ports[0], ports[1], logPath
}

// TestSystemdNotify runs the real binary the way a Type=notify unit with
// WatchdogSec does: READY=1 must come only once both listeners accept, then
// WATCHDOG=1 pings at half the interval, and SIGTERM sends STOPPING=1 before a
// clean exit.
func TestSystemdNotify(t *testing.T) {
	n := newNotifyListener(t)
	// WatchdogSec=1s: systemd passes WATCHDOG_USEC; katka pings every 500 ms.
	cmd, kafkaAddr, httpAddr, _ := startNotifyKatka(t, n, "WATCHDOG_USEC=1000000")

	ready, before := n.await(t, "READY=1", 60*time.Second)
	// READY=1 means serving: both listeners answer right away.
	c, err := net.DialTimeout("tcp", kafkaAddr, time.Second)
	if err != nil {
		t.Fatalf("READY=1 sent but the Kafka listener refuses: %v", err)
	}
	c.Close()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("READY=1 sent but the HTTP listener fails: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz after READY=1: %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(ready, "STATUS=serving") {
		t.Errorf("READY=1 datagram has no STATUS=serving line: %q", ready)
	}
	for _, m := range before {
		if strings.Contains(m, "WATCHDOG=1") {
			continue // the first ping may come just before READY
		}
		t.Errorf("datagram before READY=1: %q", m)
	}

	t0 := time.Now()
	n.await(t, "WATCHDOG=1", 30*time.Second)
	n.await(t, "WATCHDOG=1", 30*time.Second)
	t.Logf("two watchdog pings within %v of READY", time.Since(t0).Round(time.Millisecond))

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.await(t, "STOPPING=1", 60*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("katka after SIGTERM: %v", err)
	}
}

// TestSystemdNotifyNoWatchdog checks that without WatchdogSec katka sends no
// WATCHDOG=1. katka logs "systemd watchdog on" before READY=1 when it starts
// the pinger, so at READY=1 the log already tells; and nothing may arrive
// between READY=1 and the STOPPING=1 marker.
func TestSystemdNotifyNoWatchdog(t *testing.T) {
	n := newNotifyListener(t)
	cmd, _, _, logPath := startNotifyKatka(t, n)
	n.await(t, "READY=1", 60*time.Second)
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "katka started") {
		t.Fatalf("READY=1 before the \"katka started\" log line:\n%s", b)
	}
	if strings.Contains(string(b), "systemd watchdog on") {
		t.Errorf("watchdog started without WATCHDOG_USEC")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, between := n.await(t, "STOPPING=1", 60*time.Second)
	if len(between) != 0 {
		t.Errorf("datagrams between READY=1 and STOPPING=1 without WatchdogSec: %q", between)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("katka after SIGTERM: %v", err)
	}
}
