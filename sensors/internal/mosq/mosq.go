// Package mosq starts a real Mosquitto broker for tests, on a free loopback port.
//
// If the mosquitto binary is missing the test is skipped, unless CI=true, where it
// fails: `make test` installs the Debian package mosquitto when run as root.
package mosq

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Broker is a running Mosquitto.
type Broker struct {
	// Addr is host:port of its listener; URL is tcp://Addr, or ssl://Addr for a
	// TLS listener.
	Addr, URL string

	bin, conf string
	out       *syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Binary returns the path of mosquitto, skipping (or with CI=true failing) t if it
// is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("mosquitto is not installed and CI=true (apt-get install -y mosquitto)")
	}
	t.Skip("mosquitto is not installed (apt-get install -y mosquitto); skipping")
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Options configure a Mosquitto started with StartWith.
type Options struct {
	// TLS, when set, makes the listener TLS only; the Broker's URL is then ssl://.
	TLS *TLS
	// Users maps user names to passwords. When not empty, they are written to a
	// password_file with mosquitto_passwd -b -c and anonymous clients are refused.
	Users map[string]string
	// Extra is appended to the configuration.
	Extra string
}

// TLS is the TLS setup of the listener: paths of PEM files.
type TLS struct {
	// CAFile holds the CAs that client certificates must be signed by.
	CAFile string
	// CertFile and KeyFile are the broker's certificate and key.
	CertFile, KeyFile string
	// RequireCertificate makes a client certificate signed by CAFile mandatory.
	RequireCertificate bool
}

// Start runs Mosquitto with persistence off, unlimited queues for offline persistent
// sessions and extra appended to its config; it is stopped when the test ends.
func Start(t testing.TB, extra string) *Broker {
	t.Helper()
	return StartWith(t, Options{Extra: extra})
}

// StartWith runs Mosquitto like Start with the listener, users and extra
// configuration of o; it is stopped when the test ends.
func StartWith(t testing.TB, o Options) *Broker {
	t.Helper()
	bin := Binary(t)
	port := FreePort(t)
	dir := t.TempDir()
	conf := fmt.Sprintf("listener %d 127.0.0.1\n", port)
	scheme := "tcp"
	if o.TLS != nil {
		scheme = "ssl"
		if o.TLS.CertFile == "" || o.TLS.KeyFile == "" {
			t.Fatal("mosq: TLS needs CertFile and KeyFile")
		}
		if o.TLS.CAFile != "" {
			conf += "cafile " + o.TLS.CAFile + "\n"
		}
		conf += fmt.Sprintf("certfile %s\nkeyfile %s\nrequire_certificate %t\n", o.TLS.CertFile, o.TLS.KeyFile, o.TLS.RequireCertificate)
	}
	if len(o.Users) > 0 {
		conf += "allow_anonymous false\npassword_file " + passwordFile(t, dir, o.Users) + "\n"
	} else {
		conf += "allow_anonymous true\n"
	}
	conf += `persistence false
max_queued_messages 0
max_queued_bytes 0
log_dest stderr
log_type error
log_type warning
`
	if os.Geteuid() == 0 {
		conf += "user root\n" // else mosquitto drops to the mosquitto user
	}
	conf += o.Extra + "\n"
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &Broker{Addr: fmt.Sprintf("127.0.0.1:%d", port), out: &syncBuffer{}, bin: bin, conf: path}
	b.URL = scheme + "://" + b.Addr
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", b.out.String())
		}
	})
	b.launch(t)
	return b
}

// Kill stops the broker with SIGKILL (clients see their connections reset)
// and waits until it has exited; Restart starts it again.
func (b *Broker) Kill() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Restart starts the broker again on the same address and configuration
// after Kill, and waits until it listens.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.launch(t)
}

// launch starts mosquitto and waits until it listens.
func (b *Broker) launch(t testing.TB) {
	t.Helper()
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("mosquitto exited at start:\n%s", b.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s within 10s:\n%s", b.Addr, b.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// passwordFile writes users to a Mosquitto password file in dir with
// mosquitto_passwd -b (-c for the first) and returns its path.
func passwordFile(t testing.TB, dir string, users map[string]string) string {
	t.Helper()
	bin := ""
	for _, p := range []string{"mosquitto_passwd", "/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"} {
		if path, err := exec.LookPath(p); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_passwd is not installed and CI=true (apt-get install -y mosquitto)")
		}
		t.Skip("mosquitto_passwd is not installed (apt-get install -y mosquitto); skipping")
	}
	path := filepath.Join(dir, "passwd")
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		args := []string{"-b", path, name, users[name]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %s for user %s: %v\n%s", path, name, err, out)
		}
	}
	return path
}

// Output returns what Mosquitto has logged so far.
func (b *Broker) Output() string { return strings.TrimSpace(b.out.String()) }

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
