package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var katkaBin string

// TestMain builds the real katka binary once; these tests run it as a subprocess.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "katka-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	katkaBin = filepath.Join(dir, "katka")
	out, err := exec.Command("go", "build", "-o", katkaBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build katka: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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

// runFail runs katka expecting a non-zero exit and returns its stderr lines.
func runFail(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command(katkaBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("katka %v exited 0; stderr:\n%s", args, stderr.String())
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() <= 0 {
			t.Fatalf("katka %v: %v", args, err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("katka %v did not exit; stderr:\n%s", args, stderr.String())
	}
	return strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "katka.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadConfigOneLineNonZeroNoDataTouched(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "storage:\n  fsyncc: always\n", []string{"storage.fsyncc", "unknown key", "allowed", "fsync_interval"}},
		{"unknown top-level key", "data_dirr: /tmp/x\n", []string{"data_dirr", "unknown key"}},
		{"bad value", "storage:\n  fsync: sometimes\n", []string{"storage.fsync", "sometimes", "always, interval"}},
		{"bad size", "storage:\n  segment_bytes: huge\n", []string{"storage.segment_bytes", "huge"}},
		{"bad topic name", "topics:\n  create:\n    - name: \"bad/name\"\n      partitions: 1\n", []string{"topics.create[0].name"}},
		{"bad yaml", "storage: [\n", []string{"katka.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			lines := runFail(t, "serve", "--config", writeConfig(t, c.yaml), "--data-dir", data, "--http-addr", freeAddr(t), "--kafka-addr", "")
			if len(lines) != 1 {
				t.Fatalf("want one line, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			for _, w := range c.want {
				if !strings.Contains(lines[0], w) {
					t.Fatalf("error line %q lacks %q", lines[0], w)
				}
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Fatalf("data dir was touched before the config was accepted: %v", err)
			}
		})
	}
}

// katka is a running katka subprocess.
type katka struct {
	cmd    *exec.Cmd
	http   string
	stderr *bytes.Buffer
	done   chan error
}

func start(t *testing.T, args ...string) *katka {
	t.Helper()
	k := &katka{http: freeAddr(t), stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	k.cmd = exec.Command(katkaBin, append([]string{"serve", "--http-addr", k.http, "--kafka-addr", ""}, args...)...)
	k.cmd.Stderr = k.stderr
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.done <- k.cmd.Wait() }()
	t.Cleanup(func() { k.cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + k.http + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return k
			}
		}
		select {
		case err := <-k.done:
			t.Fatalf("katka exited during start: %v\n%s", err, k.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("katka not healthy after 10s:\n%s", k.stderr)
	return nil
}

// stop sends sig and returns the exit code.
func (k *katka) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	k.cmd.Process.Signal(sig)
	select {
	case <-k.done:
		return k.cmd.ProcessState.ExitCode()
	case <-time.After(10 * time.Second):
		t.Fatalf("katka did not stop on %v:\n%s", sig, k.stderr)
		return -1
	}
}

func TestLockedDataDir(t *testing.T) {
	data := t.TempDir()
	a := start(t, "--data-dir", data)
	lines := runFail(t, "serve", "--data-dir", data, "--http-addr", freeAddr(t), "--kafka-addr", "")
	if len(lines) != 1 || !strings.Contains(lines[0], "locked by another katka") || !strings.Contains(lines[0], fmt.Sprintf("pid %d", a.cmd.Process.Pid)) {
		t.Fatalf("second katka on the same dir said:\n%s", strings.Join(lines, "\n"))
	}
	if code := a.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("first katka exit %d", code)
	}
}

func TestUnwritableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plainfile")
	os.WriteFile(file, nil, 0o644)
	dirs := map[string]string{"under a file": filepath.Join(file, "data")}
	if os.Geteuid() == 0 {
		ro := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro", "tmpfs", ro).CombinedOutput(); err == nil {
			t.Cleanup(func() { exec.Command("umount", ro).Run() })
			dirs["read-only mount"] = ro
		} else if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a read-only tmpfs as root: %v %s", err, out)
		} else {
			t.Logf("no read-only mount case: %v %s", err, out)
		}
	} else {
		ro := t.TempDir()
		os.Chmod(ro, 0o500)
		dirs["no write permission"] = ro
	}
	for name, d := range dirs {
		t.Run(name, func(t *testing.T) {
			lines := runFail(t, "serve", "--data-dir", d, "--http-addr", freeAddr(t), "--kafka-addr", "")
			if len(lines) != 1 || !strings.Contains(lines[0], d) {
				t.Fatalf("unwritable data dir said:\n%s", strings.Join(lines, "\n"))
			}
		})
	}
}

// partitionHWs returns each partition's high watermark (nil while the topic does not exist).
func partitionHWs(t *testing.T, addr, topic string) []int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/topics/" + topic)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var tj struct {
		Partitions []struct {
			Partition     int32 `json:"partition"`
			HighWatermark int64 `json:"high_watermark"`
		} `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tj); err != nil {
		t.Fatalf("GET /v1/topics/%s: %d: %v", topic, resp.StatusCode, err)
	}
	hws := make([]int64, len(tj.Partitions))
	for _, p := range tj.Partitions {
		if int(p.Partition) >= len(hws) {
			t.Fatalf("partition %d of %d", p.Partition, len(hws))
		}
		hws[p.Partition] = p.HighWatermark
	}
	return hws
}

// waitGrowth waits until topic holds at least want records in all: each round
// long-polls every partition from its high watermark and goes on as soon as
// one returns a new record. It returns the total seen last.
func waitGrowth(t *testing.T, addr, topic string, want int64, within time.Duration) int64 {
	t.Helper()
	guard := time.NewTimer(within)
	defer guard.Stop()
	for {
		hws := partitionHWs(t, addr, topic)
		var total int64
		for _, hw := range hws {
			total += hw
		}
		if total >= want {
			return total
		}
		if len(hws) == 0 {
			t.Fatalf("topic %s does not exist although katka is healthy (sensors create their topics at start)", topic)
		}
		woke := make(chan error, len(hws))
		for p, hw := range hws {
			go func() {
				url := fmt.Sprintf("http://%s/v1/topics/%s/partitions/%d/records?offset=%d&max_wait_ms=5000", addr, topic, p, hw)
				resp, err := http.Get(url)
				if err != nil {
					woke <- err
					return
				}
				resp.Body.Close()
				woke <- nil
			}()
		}
		select {
		case err := <-woke:
			if err != nil {
				t.Fatalf("long-poll fetch of %s: %v", topic, err)
			}
		case <-guard.C:
			t.Fatalf("topic %s holds %d records after %s, want %d", topic, total, within, want)
			return total
		}
	}
}

func partitionsHW(t *testing.T, addr, topic string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/topics/" + topic)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tj struct {
		Partitions []struct {
			HighWatermark int64 `json:"high_watermark"`
		} `json:"partitions"`
	}
	json.NewDecoder(resp.Body).Decode(&tj)
	var n int64
	for _, p := range tj.Partitions {
		n += p.HighWatermark
	}
	return n
}

// TestDefaultConfigRunsSimulatedSensors is `make run` in small: the default
// config starts with no other service, the simulated topic grows, SIGINT exits 0
// and the data is still there on the next start.
func TestDefaultConfigRunsSimulatedSensors(t *testing.T) {
	data := t.TempDir()
	k := start(t, "--config", "../../../configs/katka.yaml", "--data-dir", data)
	// The sensor creates its topic with its first reading; creating it first, as
	// configured (3 partitions), gives the wait below partitions to long-poll.
	resp, err := http.Post("http://"+k.http+"/v1/topics", "application/json", strings.NewReader(`{"name":"sensors.simulated","partitions":3}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
		t.Fatalf("create sensors.simulated: HTTP %d", resp.StatusCode)
	}
	n1 := partitionsHW(t, k.http, "sensors.simulated")
	// The topic must grow: wait for new readings with long-polling fetches (the
	// event), not for a time at an assumed rate; 30 s only turns a hang into a failure.
	n2 := waitGrowth(t, k.http, "sensors.simulated", n1+6, 30*time.Second)
	metrics, _ := http.Get("http://" + k.http + "/metrics")
	var mb bytes.Buffer
	mb.ReadFrom(metrics.Body)
	metrics.Body.Close()
	ms := []string{`katka_records_in_total{topic="sensors.simulated"}`, "katka_fsync_duration_seconds_bucket", `katka_partition_bytes{partition="0",topic="sensors.simulated"}`}
	if os.Getenv("GOMEMLIMIT") == "" {
		// memory_limit: 0 gives the runtime the limit derived from the
		// budgets: 64 MiB of Kafka requests + 32 MiB of HTTP bodies + 64 MiB.
		ms = append(ms, "go_gc_gomemlimit_bytes 1.6777216e+08")
	}
	for _, m := range ms {
		if !strings.Contains(mb.String(), m) {
			t.Fatalf("/metrics lacks %s", m)
		}
	}
	if code := k.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("SIGINT exit code %d\n%s", code, k.stderr)
	}
	k = start(t, "--config", "../../../configs/katka.yaml", "--data-dir", data)
	if n3 := partitionsHW(t, k.http, "sensors.simulated"); n3 < n2 {
		t.Fatalf("after restart %d records, before %d", n3, n2)
	}
	if code := k.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM exit code %d", code)
	}
}
