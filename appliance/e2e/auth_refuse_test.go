package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuthRefusesUnauthenticatedBeyondLoopback: katka will not start with a
// Kafka or HTTP listener beyond loopback that has no authentication; it
// exits with one line naming the key that allows it, before touching the
// data directory. With that key set it starts.
func TestAuthRefusesUnauthenticatedBeyondLoopback(t *testing.T) {
	bin := requireBinary(t)
	cases := []struct {
		name, config, kafkaAddr, httpAddr, key string
	}{
		{"kafka.addr", "", "0.0.0.0:0", "127.0.0.1:0", "set kafka.allow_unauthenticated: true"},
		{"http.addr", "", "127.0.0.1:0", "0.0.0.0:0", "set http.allow_unauthenticated: true"},
		{"plaintext listener", "kafka:\n  listeners:\n    - {name: EXT, addr: \"0.0.0.0:0\", security: plaintext}\n", "127.0.0.1:0", "127.0.0.1:0",
			"set kafka.listeners[0].allow_unauthenticated: true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "katka.yaml")
			if err := os.WriteFile(cfg, []byte(testConfig+c.config), 0o644); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "data")
			out, err := exec.Command(bin, "serve", "--config", cfg, "--data-dir", data, "--kafka-addr", c.kafkaAddr, "--http-addr", c.httpAddr).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Fatalf("katka started or failed oddly (%v):\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.key) {
				t.Fatalf("want one line naming %q, got:\n%s", c.key, out)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Fatalf("data directory touched: %v", err)
			}
		})
	}
	t.Run("allowed", func(t *testing.T) {
		k := startKafkaKatkaWith(t, testConfig+"kafka:\n  allow_unauthenticated: true\n  listeners:\n    - {name: EXT, addr: \"0.0.0.0:0\", security: plaintext, allow_unauthenticated: true}\n")
		// The listener binds before its log line is written: wait for the line.
		deadline := time.Now().Add(10 * time.Second)
		for k.logCount("listener=EXT security=plaintext addr=") != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("EXT listener not started:\n%s", k.logTail(20))
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
