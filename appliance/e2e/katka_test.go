// Package e2e runs the real katka binary as a subprocess and checks it from the
// outside, through its HTTP API and its files on disk: crash torture, recovery
// from damaged logs, and later other end-to-end scenarios.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// katkaBin is the katka binary under test: $KATKA_BIN, or built once by TestMain.
var katkaBin string

// buildErr is set when TestMain could not build the binary; every test that
// needs the binary then fails with it (never skips).
var buildErr error

// TestMain builds the katka binary once for the whole package, unless KATKA_BIN
// names one already built.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if bin := os.Getenv("KATKA_BIN"); bin != "" {
		// go test runs in the package directory: resolve a relative path now.
		abs, err := filepath.Abs(bin)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			buildErr = fmt.Errorf("KATKA_BIN=%s: %w", bin, err)
		}
		katkaBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "katka-e2e-bin-")
	if err != nil {
		buildErr = fmt.Errorf("temp dir for the katka binary: %w", err)
		return m.Run()
	}
	defer os.RemoveAll(dir)
	katkaBin = filepath.Join(dir, "katka")
	goTool, err := exec.LookPath("go")
	if err != nil {
		buildErr = fmt.Errorf("go tool not found to build katka: %w", err)
		return m.Run()
	}
	t0 := time.Now()
	out, err := exec.Command(goTool, "build", "-o", katkaBin, "github.com/katka-io/katka/appliance/cmd/katka").CombinedOutput()
	if err != nil {
		buildErr = fmt.Errorf("go build ./appliance/cmd/katka: %v\n%s", err, out)
	} else {
		fmt.Printf("e2e: built katka in %v\n", time.Since(t0).Round(time.Millisecond))
	}
	return m.Run()
}

// requireBinary fails the test if the katka binary is not available.
func requireBinary(t testing.TB) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("katka binary unavailable: %v", buildErr)
	}
	return katkaBin
}

// testConfig is the katka config used by the e2e tests: no simulated sensor,
// small segments so that logs roll often.
const testConfig = "sensors:\n  simulated:\n    enabled: false\nstorage:\n  segment_bytes: 256KiB\n"

// startTimeout bounds how long katka may take to answer /healthz after start.
const startTimeout = 10 * time.Second

// Katka is one katka server on a fixed data directory, started and stopped (or
// killed) as a subprocess any number of times. Its stderr and stdout go to one
// log file per start.
type Katka struct {
	t       testing.TB
	bin     string
	DataDir string
	config  string
	logDir  string

	addr   string // HTTP host:port of the running process
	client *http.Client
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	logs   []string      // log file of each start, oldest first
}

// NewKatka prepares a katka server on dataDir with the given YAML config (no
// process is started yet). The process, if still running, is killed when the
// test ends; if the test failed, the tail of the last run's log is printed.
func NewKatka(t testing.TB, dataDir, config string) *Katka {
	t.Helper()
	bin := requireBinary(t)
	work := t.TempDir()
	k := &Katka{t: t, bin: bin, DataDir: dataDir, config: filepath.Join(work, "katka.yaml"), logDir: work}
	if err := os.WriteFile(k.config, []byte(config), 0o644); err != nil {
		t.Fatalf("write katka config: %v", err)
	}
	t.Cleanup(func() {
		if k.Running() {
			k.Kill()
		}
		if t.Failed() && len(k.logs) > 0 {
			t.Logf("katka log %s (last lines):\n%s", k.logs[len(k.logs)-1], k.LogTail(40))
		}
	})
	return k
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// Start starts katka and waits until /healthz answers 200, for at most
// startTimeout. It retries once with another port if the chosen one was taken
// in between.
func (k *Katka) Start() error {
	if k.Running() {
		return errors.New("katka is already running")
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = k.startOnce()
		if err == nil || !errors.Is(err, errPortTaken) && !strings.Contains(k.LogTail(20), "address already in use") {
			return err
		}
	}
	return err
}

// errPortTaken is a start whose /healthz was answered by another process:
// the port freePort chose was taken before katka bound it.
var errPortTaken = errors.New("another process answered on the chosen port")

// ownHealthy reports whether a /healthz 200 came from the katka that writes
// logPath: katka logs "katka started" before /healthz turns 200, so a 200
// without that line is another process's, holding the port freePort chose
// (the e2e packages run side by side, each picking ports). Only the log from
// byte from on counts (a log appended to by earlier starts).
func ownHealthy(logPath string, from int64) bool {
	b, _ := os.ReadFile(logPath)
	return int64(len(b)) > from && strings.Contains(string(b[from:]), "katka started")
}

func (k *Katka) startOnce() error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("pick a free port: %w", err)
	}
	k.addr = "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(k.logDir, fmt.Sprintf("katka-%03d.log", len(k.logs)+1))
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create katka log: %w", err)
	}
	k.logs = append(k.logs, logPath)
	cmd := exec.Command(k.bin, "serve", "--config", k.config, "--data-dir", k.DataDir,
		"--http-addr", k.addr, "--kafka-addr", "")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start katka: %w", err)
	}
	k.cmd = cmd
	k.done = make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		logFile.Close()
		close(done)
	}(k.done)
	k.client = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	}

	deadline := time.Now().Add(startTimeout)
	probe := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-k.done:
			return fmt.Errorf("katka exited during start (%s):\n%s", cmd.ProcessState, k.LogTail(30))
		default:
		}
		resp, err := probe.Get(k.URL("/healthz"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				if !ownHealthy(logPath, 0) {
					k.Kill()
					return errPortTaken
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			k.Kill()
			return fmt.Errorf("katka not healthy within %v (last probe: %v):\n%s", startTimeout, err, k.LogTail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Running reports whether the katka process is alive.
func (k *Katka) Running() bool {
	if k.cmd == nil {
		return false
	}
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (k *Katka) Kill() {
	if !k.Running() {
		return
	}
	k.cmd.Process.Signal(syscall.SIGKILL)
	<-k.done
	k.client.CloseIdleConnections()
}

// Stop sends SIGTERM and waits up to 15 s; katka must exit with status 0.
func (k *Katka) Stop() error {
	if !k.Running() {
		return errors.New("katka is not running")
	}
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(15 * time.Second):
		k.Kill()
		return fmt.Errorf("katka did not exit within 15s of SIGTERM:\n%s", k.LogTail(30))
	}
	k.client.CloseIdleConnections()
	if code := k.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("katka exited with %s after SIGTERM:\n%s", k.cmd.ProcessState, k.LogTail(30))
	}
	return nil
}

// LogTail returns the last n lines of the log of the latest start.
func (k *Katka) LogTail(n int) string {
	if len(k.logs) == 0 {
		return "(no log)"
	}
	b, err := os.ReadFile(k.logs[len(k.logs)-1])
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogContains reports whether the log of the latest start contains s.
func (k *Katka) LogContains(s string) bool {
	if len(k.logs) == 0 {
		return false
	}
	b, _ := os.ReadFile(k.logs[len(k.logs)-1])
	return bytes.Contains(b, []byte(s))
}

// URL returns the URL of path on the running server.
func (k *Katka) URL(path string) string { return "http://" + k.addr + path }

// Header is a record header on the HTTP API; a nil Value is null.
type Header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// ProduceRecord is one record of a produce request; nil Key or Value is null.
type ProduceRecord struct {
	Key         []byte   `json:"key"`
	Value       []byte   `json:"value"`
	Headers     []Header `json:"headers,omitempty"`
	TimestampMs int64    `json:"timestamp_ms,omitempty"`
}

// FetchedRecord is one record of a fetch response.
type FetchedRecord struct {
	Offset      int64    `json:"offset"`
	TimestampMs int64    `json:"timestamp_ms"`
	Key         []byte   `json:"key"`
	Value       []byte   `json:"value"`
	Headers     []Header `json:"headers"`
}

// FetchResponse is the body of a successful fetch.
type FetchResponse struct {
	Records        []FetchedRecord `json:"records"`
	HighWatermark  int64           `json:"high_watermark"`
	LogStartOffset int64           `json:"log_start_offset"`
}

// APIError is a non-2xx answer of the HTTP API.
type APIError struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Code    string `json:"code"`
	Offset  *int64 `json:"offset"`
}

func (e *APIError) Error() string {
	off := ""
	if e.Offset != nil {
		off = fmt.Sprintf(" offset=%d", *e.Offset)
	}
	return fmt.Sprintf("HTTP %d code=%s%s: %s", e.Status, e.Code, off, e.Message)
}

// errorCode returns the API error code of err, or "".
func errorCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// do sends a JSON request and decodes a JSON answer with the wanted status into
// out; any other status becomes an *APIError.
func (k *Katka) do(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.URL(path), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode != want {
		ae := &APIError{Status: resp.StatusCode}
		if jerr := json.Unmarshal(raw, ae); jerr != nil || ae.Code == "" {
			ae.Message = strings.TrimSpace(string(raw))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// CreateTopic creates a topic (HTTP 201 expected).
func (k *Katka) CreateTopic(ctx context.Context, name string, partitions int) error {
	return k.do(ctx, http.MethodPost, "/v1/topics", map[string]any{"name": name, "partitions": partitions}, nil, http.StatusCreated)
}

// Produce posts records to one partition with acks "all", "1" or "0" and
// returns the base offset the server reported.
func (k *Katka) Produce(ctx context.Context, topic string, partition int, acks string, recs []ProduceRecord) (int64, error) {
	var out struct {
		BaseOffset *int64 `json:"base_offset"`
	}
	path := fmt.Sprintf("/v1/topics/%s/partitions/%d/records?acks=%s", url.PathEscape(topic), partition, acks)
	if err := k.do(ctx, http.MethodPost, path, map[string]any{"records": recs}, &out, http.StatusOK); err != nil {
		return 0, err
	}
	if out.BaseOffset == nil {
		return 0, errors.New("produce answer has no base_offset")
	}
	return *out.BaseOffset, nil
}

// Fetch reads records from offset (max_wait_ms 0 unless maxWait is set).
func (k *Katka) Fetch(ctx context.Context, topic string, partition int, offset int64, maxBytes int, maxWait time.Duration) (*FetchResponse, error) {
	path := fmt.Sprintf("/v1/topics/%s/partitions/%d/records?offset=%d&max_bytes=%d&max_wait_ms=%d",
		url.PathEscape(topic), partition, offset, maxBytes, maxWait.Milliseconds())
	var out FetchResponse
	if err := k.do(ctx, http.MethodGet, path, nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return &out, nil
}

// ScanPartition reads a partition from offset from up to the high watermark
// seen by the first fetch. It calls rec for every record and corrupt for every
// offset reported as "corrupt_record" (then continues at the next offset). It
// checks that offsets are contiguous and the high watermark does not move, and
// returns the log start offset and high watermark.
func (k *Katka) ScanPartition(ctx context.Context, topic string, partition int, from int64,
	rec func(FetchedRecord), corrupt func(offset int64)) (start, hw int64, err error) {
	const maxBytes = 1 << 20
	hw = -1
	for off := from; hw < 0 || off < hw; {
		resp, err := k.Fetch(ctx, topic, partition, off, maxBytes, 0)
		if errorCode(err) == "corrupt_record" {
			var ae *APIError
			errors.As(err, &ae)
			if ae.Offset == nil || *ae.Offset != off {
				return start, hw, fmt.Errorf("fetch at %d: corrupt_record names another offset: %v", off, err)
			}
			if hw >= 0 && off >= hw {
				return start, hw, fmt.Errorf("corrupt_record at %d, beyond the high watermark %d", off, hw)
			}
			corrupt(off)
			off++
			continue
		}
		if err != nil {
			return start, hw, fmt.Errorf("fetch %s-%d at %d: %w", topic, partition, off, err)
		}
		if hw < 0 {
			start, hw = resp.LogStartOffset, resp.HighWatermark
			if off >= hw {
				if off > hw {
					return start, hw, fmt.Errorf("fetch at %d beyond high watermark %d answered 200", off, hw)
				}
				return start, hw, nil
			}
		} else if resp.HighWatermark != hw || resp.LogStartOffset != start {
			return start, hw, fmt.Errorf("fetch at %d: log moved during the scan: start/hw %d/%d, was %d/%d",
				off, resp.LogStartOffset, resp.HighWatermark, start, hw)
		}
		if len(resp.Records) == 0 {
			return start, hw, fmt.Errorf("fetch at %d below the high watermark %d returned no records", off, hw)
		}
		for _, r := range resp.Records {
			if r.Offset != off {
				return start, hw, fmt.Errorf("offsets not contiguous: expected %d, got record at %d", off, r.Offset)
			}
			rec(r)
			off++
		}
		if off > hw {
			return start, hw, fmt.Errorf("fetch returned records up to %d, beyond the high watermark %d", off-1, hw)
		}
	}
	return start, hw, nil
}

// Segment is one WAL segment file of a partition.
type Segment struct {
	Path string
	// Base is the first offset the segment holds (its WAL index minus one).
	Base int64
	Size int64
}

// Segments lists the segment files of a partition, oldest first; the last one
// is the tail being written.
func Segments(dataDir, topic string, partition int) ([]Segment, error) {
	dir := filepath.Join(dataDir, topic, strconv.Itoa(partition))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []Segment
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) != 20 {
			continue
		}
		idx, err := strconv.ParseInt(name, 10, 64)
		if err != nil || idx < 1 {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		segs = append(segs, Segment{Path: filepath.Join(dir, name), Base: idx - 1, Size: info.Size()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Base < segs[j].Base })
	return segs, nil
}
