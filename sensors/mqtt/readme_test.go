package mqtt

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeConfigsLoad loads and validates every yaml block of README.md, so the
// documented examples keep matching the config keys.
func TestReadmeConfigsLoad(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	rest := string(data)
	for {
		_, after, ok := strings.Cut(rest, "```yaml\n")
		if !ok {
			break
		}
		block, after, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatal("README.md: a yaml block is not closed")
		}
		blocks = append(blocks, block)
		rest = after
	}
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d yaml blocks, want the configuration and the TLS examples", len(blocks))
	}
	for _, b := range blocks {
		s := loadSensors(t, b)
		if m := ConfigOf(s); !m.Enabled || len(m.Brokers) == 0 || len(m.Rules) == 0 {
			t.Errorf("README.md yaml block does not configure the MQTT input:\n%s", b)
		}
	}
}
