package broker

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckTopicConfig: every Kafka topic config name is accepted with a value
// of its type and range, refused (ErrInvalidConfig, naming config, value and
// rule) otherwise; unknown names are refused as Kafka refuses them.
func TestCheckTopicConfig(t *testing.T) {
	for _, c := range []struct {
		name, value, want, err string
	}{
		{"segment.bytes", "20000", "20000", ""},
		{"segment.bytes", "13", "", "Value must be at least 14"},
		{"segment.bytes", "4294967296", "", "Not a number of type INT"},
		{"compression.type", "lz4", "lz4", ""},
		{"compression.type", "brotli", "", "String must be one of"},
		{"cleanup.policy", "delete, compact", "compact,delete", ""},
		{"cleanup.policy", "shred", "", "allowed values are [compact, delete]"},
		{"retention.ms", "-1", "-1", ""},
		{"retention.ms", "-2", "", "Value must be at least -1"},
		{"retention.ms", "soon", "", "Not a number of type LONG"},
		{"retention.bytes", "-7", "-7", ""},
		{"max.message.bytes", " 2000 ", "2000", ""},
		{"min.insync.replicas", "0", "", "Value must be at least 1"},
		{"min.cleanable.dirty.ratio", "1.5", "", "between 0 and 1"},
		{"min.cleanable.dirty.ratio", "0.25", "0.25", ""},
		{"preallocate", "TRUE", "true", ""},
		{"preallocate", "yes", "", "either true or false"},
		{"message.format.version", "0.10.0.0", "0.10.0.0", ""},
		{"message.format.version", "3.0-IV1", "3.0-IV1", ""},
		{"message.format.version", "latest", "", "Kafka version"},
		{"message.timestamp.type", "LogAppendTime", "LogAppendTime", ""},
		{"leader.replication.throttled.replicas", "0:0,1:0", "0:0,1:0", ""},
		{"leader.replication.throttled.replicas", "0-0", "", "[partitionId]:[brokerId]"},
		{"compression.zstd.level", "23", "", "no more than 22"},
		{"compression.gzip.level", "-1", "-1", ""},
		{"remote.storage.enable", "true", "", "Tiered Storage functionality is disabled"},
		{"remote.storage.enable", "false", "false", ""},
		{"segment.ms", "0", "", "Value must be at least 1"},
		{"flush.messages", "9223372036854775807", "9223372036854775807", ""},
		{"foo.bar", "1", "", "Unknown topic config name: foo.bar"},
	} {
		got, err := CheckTopicConfig(c.name, c.value)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("%s=%q: got %q, %v; want %q", c.name, c.value, got, err, c.want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s=%q: err %v, want one containing %q", c.name, c.value, err, c.err)
		}
	}
	// Every described default passes its own check: a client may send back
	// what DescribeConfigs gave it (librdkafka's AlterConfigs tests do).
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	for _, v := range b.TopicConfigValues(TopicConfig{}) {
		if _, err := v.Def.Check(v.Value); err != nil {
			t.Errorf("default of %s: %v", v.Def.Name, err)
		}
	}
	if err := CheckTopicOverrides(map[string]string{"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("min > max compaction lag: %v", err)
	}
}

// TestTopicOverridesPersistAndApply: configs set on a topic are applied
// (retention, segment.bytes as the partitions' segment size), replaced as a
// whole by SetTopicOverrides (unset ones revert to the default), and survive
// a restart; a config not set follows the broker default of the next run.
func TestTopicOverridesPersistAndApply(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
	info, err := b.CreateTopic("t", 1, TopicConfig{Overrides: map[string]string{
		"segment.bytes": "65536", "compression.type": "lz4", "retention.ms": "60000", "segment.ms": "5000",
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.SegmentBytes != 65536 || c.CompressionType != "lz4" || c.RetentionMs != 60000 || c.RetentionBytes != -1 || c.CleanupPolicy != "delete" {
		t.Fatalf("resolved config %+v", c)
	}
	// segment.bytes is the partition's segment size: 300 KiB make several
	// segments (random values: the topic's lz4 would shrink zeros to nothing).
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		val := make([]byte, 1000)
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		if _, err := b.Produce(context.Background(), "t", 0, []Record{{Value: val}}, AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	_, p, _ := b.partition("t", 0)
	if n := len(p.log.Segments()); n < 4 {
		t.Fatalf("segment.bytes 65536: %d segments after 300 KB, want at least 4", n)
	}
	got := values(b, c)
	if got["segment.ms"] != "5000 set" || got["retention.bytes"] != "-1 default" || got["segment.bytes"] != "65536 set" || got["flush.ms"] != "9223372036854775807 default" {
		t.Fatalf("values %v", got)
	}

	// Replace: only retention.ms stays set.
	if err := b.SetTopicOverrides("t", map[string]string{"retention.ms": "120000"}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTopicOverrides("missing", nil); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("alter of a missing topic: %v", err)
	}
	info, _ = b.Topic("t")
	if info.Config.CompressionType != "producer" || info.Config.RetentionMs != 120000 || info.Config.SegmentBytes != 1<<20 || len(info.Config.Overrides) != 1 {
		t.Fatalf("after replace %+v", info.Config)
	}
	b.Close()

	// Restart with another default retention.bytes: the set retention.ms
	// stays, the unset retention.bytes follows the new default.
	b = openB(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20; o.Defaults.RetentionBytes = 1 << 30 })
	defer b.Close()
	info, _ = b.Topic("t")
	if info.Config.RetentionMs != 120000 || info.Config.RetentionBytes != 1<<30 {
		t.Fatalf("after restart %+v", info.Config)
	}
	if got := values(b, info.Config); got["retention.ms"] != "120000 set" || got["retention.bytes"] != "1073741824 default" || got["segment.ms"] != "604800000 default" {
		t.Fatalf("values after restart %v", got)
	}
}

// TestTopicConfigFromOlderMetadata: a topic.json written before overrides
// were kept (resolved fields only) keeps every value it had, whatever the
// defaults of the new run.
func TestTopicConfigFromOlderMetadata(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	if _, err := b.CreateTopic("old", 1, TopicConfig{RetentionMs: 5000}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	path := filepath.Join(dir, "old", topicMetaFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "has_overrides")
	cfg := m["config"].(map[string]any)
	delete(cfg, "overrides")
	delete(cfg, "compression_type")
	delete(cfg, "segment_bytes")
	raw, _ = json.Marshal(m)
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	b = openB(t, dir, func(o *Options) { o.Defaults.RetentionBytes = 1 << 30; o.Defaults.RetentionMs = 1 })
	defer b.Close()
	info, _ := b.Topic("old")
	if info.Config.RetentionMs != 5000 || info.Config.RetentionBytes != -1 || info.Config.CompressionType != "producer" {
		t.Fatalf("older metadata: %+v", info.Config)
	}
}

func values(b *Broker, c TopicConfig) map[string]string {
	out := map[string]string{}
	for _, v := range b.TopicConfigValues(c) {
		s := "default"
		if v.Set {
			s = "set"
		}
		out[v.Def.Name] = v.Value + " " + s
	}
	return out
}
