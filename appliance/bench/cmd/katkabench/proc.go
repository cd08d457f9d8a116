package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a broker process (katka or nats-server) started by the bench.
type server struct {
	name string
	cmd  *exec.Cmd
	log  string // path of the file receiving its stdout and stderr
	done chan error
}

// startProcess runs bin with args, output to logPath, and returns at once.
func startProcess(name, logPath, bin string, args ...string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); lf.Close() }()
	return s, nil
}

// pid is the process id of the server.
func (s *server) pid() int { return s.cmd.Process.Pid }

// exited reports an error if the process has already ended.
func (s *server) exited() error {
	select {
	case err := <-s.done:
		s.done <- err
		return fmt.Errorf("%s exited (%v); see %s: %s", s.name, err, s.log, tail(s.log))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to 30 s, then kills.
func (s *server) stop() {
	if s == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// statusKB reads a field of /proc/PID/status (VmRSS, VmHWM) in KiB.
func statusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// statusMB is statusKB in MB (10^6 bytes), for the tables.
func statusMB(pid int, field string) (float64, error) {
	kb, err := statusKB(pid, field)
	return float64(kb) * 1024 / 1e6, err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url every poll until it answers 200, the server exits or
// timeout passes; it returns the time of the first 200.
func waitHTTP(s *server, url string, poll, timeout time.Duration) (time.Time, error) {
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := cl.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		if err := s.exited(); err != nil {
			return time.Time{}, err
		}
		time.Sleep(poll)
	}
	return time.Time{}, fmt.Errorf("%s not ready at %s after %s; see %s", s.name, url, timeout, s.log)
}

// tail returns the last 500 bytes of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 500 {
		b = b[len(b)-500:]
	}
	return strings.TrimSpace(string(b))
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return n, nil
}
