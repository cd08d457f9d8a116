package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTopicCompressionType: topics.create[].compression_type takes Kafka's
// compression.type values and refuses others; the factory and vehicle configs
// create their telemetry topics with zstd.
func TestTopicCompressionType(t *testing.T) {
	for _, name := range []string{"factory.yaml", "vehicle.yaml"} {
		c, err := Load(filepath.Join("../../configs", name))
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(c.Topics.Create) == 0 {
			t.Fatalf("%s creates no topics", name)
		}
		for _, spec := range c.Topics.Create {
			if spec.CompressionType != "zstd" {
				t.Errorf("%s: topic %s compression_type %q, want zstd", name, spec.Name, spec.CompressionType)
			}
		}
	}
	dir := t.TempDir()
	load := func(p string) (Config, error) {
		c, err := Load(p)
		if err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	write := func(v string) string {
		p := filepath.Join(dir, v+".yaml")
		body := "topics:\n  create:\n    - name: a\n      partitions: 1\n      compression_type: " + v + "\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, ok := range []string{"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"} {
		if c, err := load(write(ok)); err != nil || c.Topics.Create[0].CompressionType != ok {
			t.Errorf("compression_type %s: %v", ok, err)
		}
	}
	if _, err := load(write("brotli")); err == nil || !strings.Contains(err.Error(), "topics.create[0].compression_type") {
		t.Errorf("compression_type brotli: %v, want refused", err)
	}
}
