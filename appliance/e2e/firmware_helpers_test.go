package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// byteCounter wraps a kfake listener and counts the bytes the central cluster
// sends on each connection, by the Kafka client id of the connection's first
// request (the sync link's client id is katka-sync-<site>): what each edge
// downloads.
type byteCounter struct {
	listen func(network, addr string) (net.Listener, error)
	mu     sync.Mutex
	sent   map[string]int64
}

func newByteCounter(listen func(network, addr string) (net.Listener, error)) *byteCounter {
	return &byteCounter{listen: listen, sent: map[string]int64{}}
}

// Listen is a kfake.ListenFn.
func (b *byteCounter) Listen(network, addr string) (net.Listener, error) {
	l, err := b.listen(network, addr)
	if err != nil {
		return nil, err
	}
	return &countingListener{Listener: l, b: b}, nil
}

func (b *byteCounter) get(client string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[client]
}

type countingListener struct {
	net.Listener
	b *byteCounter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, b: l.b}, nil
}

type countingConn struct {
	net.Conn
	b      *byteCounter
	mu     sync.Mutex
	head   []byte
	client string
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.client == "" && n > 0 {
		c.head = append(c.head, p[:n]...)
		// size(4) api key(2) version(2) correlation id(4) client id length(2) client id
		if len(c.head) >= 14 {
			l := int(int16(binary.BigEndian.Uint16(c.head[12:14])))
			if l < 0 {
				c.client = "-"
			} else if len(c.head) >= 14+l {
				c.client = string(c.head[14 : 14+l])
			}
		}
		if c.client != "" {
			c.head = nil
		}
	}
	c.mu.Unlock()
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	client := c.client
	c.mu.Unlock()
	c.b.mu.Lock()
	c.b.sent[client] += int64(n)
	c.b.mu.Unlock()
	return n, err
}

// startFirmwareMosquitto starts a mosquitto broker on a free port for the test and returns
// its port.
func startFirmwareMosquitto(t *testing.T) int {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("mosquitto is not installed and CI=true (apt-get install -y mosquitto)")
			}
			t.Skip("mosquitto is not installed")
		}
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port), 0o644)
	cmd := exec.Command(bin, "-c", conf)
	out, _ := os.Create(filepath.Join(dir, "mosquitto.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); out.Close() })
	waitUntil(t, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port
}

// requireTool returns the path of a command-line tool, failing under CI=true
// and skipping otherwise when it is missing.
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

// fwArtefact is one artefact of GET /v1/status/firmware.
type fwArtefact struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	State         string `json:"state"`
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"`
	ChunksPresent int    `json:"chunks_present"`
	ChunksTotal   int    `json:"chunks_total"`
	Reason        string `json:"reason"`
}

type fwStatus struct {
	RootVersion int          `json:"root_version"`
	UsedBytes   int64        `json:"used_bytes"`
	Artefacts   []fwArtefact `json:"artefacts"`
	Rejected    []struct {
		Kind    string `json:"kind"`
		Name    string `json:"name"`
		Version string `json:"version"`
		Reason  string `json:"reason"`
		Detail  string `json:"detail"`
	} `json:"rejected"`
}

// firmwareStatus reads a katka's firmware status; ok is false while it does
// not answer (e.g. killed).
func firmwareStatus(httpAddr string) (fwStatus, bool) {
	var st fwStatus
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/v1/status/firmware")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil {
		return st, false
	}
	return st, true
}

func (s fwStatus) artefact(name, version string) (fwArtefact, bool) {
	for _, a := range s.Artefacts {
		if a.Name == name && a.Version == version {
			return a, true
		}
	}
	return fwArtefact{}, false
}

// firmwareEdgeConfig is an edge katka config whose sync downlink brings the
// firmware topics down from brokers and whose firmware store uses root.
func firmwareEdgeConfig(site string, brokers []string, root string, mqttPort int, extra string) string {
	return fmt.Sprintf(`sensors:
  simulated:
    enabled: false
storage:
  segment_bytes: 8MiB
sync:
  enabled: true
  site: %s
  brokers: [%s]
  backoff_min: 50ms
  backoff_max: 1s
  downlink:
    - central_topic: firmware.manifests
    - central_topic: firmware.chunks
firmware:
  enabled: true
  root_file: %s
  quota: 512MiB
%s%s`, site, strings.Join(brokers, ", "), root, mqttBlock(site, mqttPort), extra)
}

func mqttBlock(site string, port int) string {
	if port == 0 {
		return ""
	}
	return fmt.Sprintf("  mqtt:\n    broker: tcp://127.0.0.1:%d\n    client_id: katka-firmware-%s\n    announce_topic: %s/firmware/{hardware}/{name}\n", port, site, site)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
