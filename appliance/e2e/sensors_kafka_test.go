package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startKafkaKatkaWith is startKafkaKatka with a config of the test's own.
func startKafkaKatkaWith(t testing.TB, config string) *kafkaKatka {
	t.Helper()
	k := &kafkaKatka{t: t, bin: requireBinary(t), dataDir: t.TempDir(), logDir: t.TempDir()}
	k.config = filepath.Join(k.logDir, "katka.yaml")
	if err := os.WriteFile(k.config, []byte(config), 0o644); err != nil {
		t.Fatalf("write katka config: %v", err)
	}
	t.Cleanup(func() {
		k.kill()
		if t.Failed() {
			t.Logf("katka log (last lines):\n%s", k.logTail(40))
		}
	})
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	return k
}

// consumeN reads n records of topic from the beginning with a Kafka client.
func consumeN(t *testing.T, k *kafkaKatka, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := kafkaCtx(t, 20*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: got %d of %d records before the deadline", topic, len(out), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			// A topic the input has not created yet is unknown for a moment.
			if !errors.Is(err, kerr.UnknownTopicOrPartition) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// TestSensorsReadBackWithKafkaClient runs the real binary with the simulated
// and system inputs and reads their records back with franz-go.
func TestSensorsReadBackWithKafkaClient(t *testing.T) {
	k := startKafkaKatkaWith(t, `
storage:
  segment_bytes: 256KiB
sensors:
  simulated:
    enabled: true
    interval: 100ms
  system:
    enabled: true
    interval: 200ms
`)
	host, _ := os.Hostname()

	sim := consumeN(t, k, "sensors.simulated", 15)
	ids := map[string]int{}
	for _, r := range sim {
		var v struct {
			Sensor string   `json:"sensor"`
			Value  *float64 `json:"value"`
			Unit   string   `json:"unit"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil || v.Value == nil || v.Sensor != string(r.Key) {
			t.Fatalf("simulated record %q (key %q): %v", r.Value, r.Key, err)
		}
		ids[v.Sensor]++
	}
	for _, id := range []string{"temp-1", "pressure-1", "counter-1"} {
		if ids[id] == 0 {
			t.Fatalf("no readings of %s in %v", id, ids)
		}
	}

	sys := consumeN(t, k, "sensors.system", 3)
	for _, r := range sys {
		var v struct {
			Host   string `json:"host"`
			Memory *struct {
				Total uint64 `json:"total"`
			} `json:"memory"`
			CPU *struct {
				Cores int `json:"cores"`
			} `json:"cpu"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("system record %q: %v", r.Value, err)
		}
		if string(r.Key) != host || v.Host != host || v.Memory == nil || v.Memory.Total == 0 || v.CPU == nil || v.CPU.Cores < 1 {
			t.Fatalf("system record key %q value %s", r.Key, r.Value)
		}
	}
	t.Logf("read %d simulated and %d system records back over the Kafka protocol", len(sim), len(sys))
}
