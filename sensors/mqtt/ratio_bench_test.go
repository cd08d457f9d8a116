package mqtt

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// telemetry returns n JSON readings like a factory line's and the MQTT topic
// each is published to: the generator of appliance/e2e's compression tests
// (factoryTelemetry, same seed, so the same 12.8 MB for 100,000).
func telemetry(n int) (payloads [][]byte, topics []string) {
	rng := rand.New(rand.NewPCG(13, 13))
	ts := int64(1_767_225_600_000)
	states := []string{"running", "running", "running", "idle", "setup", "alarm"}
	for range n {
		ts += int64(5 + rng.IntN(10))
		line, machine := 1+rng.IntN(4), 1+rng.IntN(12)
		p := fmt.Appendf(nil, `{"ts":%d,"plant":"bremen","line":%d,"machine":"press-%02d","temp_c":%.2f,"p_bar":%.3f,"rpm":%d,"state":"%s"}`,
			ts, line, machine, 55+rng.Float64()*30, 180+rng.Float64()*20, 1400+rng.IntN(200), states[rng.IntN(len(states))])
		payloads = append(payloads, p)
		topics = append(topics, fmt.Sprintf("factory/bremen/line/%d/press-%02d", line, machine))
	}
	return payloads, topics
}

// BenchmarkZstdByBatchSize measures what the MQTT input's batch size does to
// the disk: 100,000 telemetry readings as the input maps them (no key, the
// mqtt.topic/qos/retained headers) written to a compression.type zstd topic
// with `records` records per call, as a batch of that many MQTT messages
// would be: by Produce (16 KiB batches) and by ProduceBatches (what the
// sensors' Writer uses: one batch up to 256 KiB). "%raw" is the partition directory's size over the payload bytes.
func BenchmarkZstdByBatchSize(b *testing.B) {
	payloads, topics := telemetry(100_000)
	raw := 0
	for _, p := range payloads {
		raw += len(p)
	}
	for _, per := range []int{1, 5, 10, 20, 35, 50, 100, 200, 1000} {
		for _, how := range []string{"Produce", "ProduceBatches"} {
			b.Run(how+"/records="+strconv.Itoa(per), func(b *testing.B) {
				var pct float64
				for range b.N {
					dir := b.TempDir()
					br, err := broker.Open(broker.Options{DataDir: dir, Logger: slog.New(slog.DiscardHandler), Fsync: broker.FsyncInterval, Defaults: broker.TopicConfig{CompressionType: "zstd"}})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := br.CreateTopic("t", 1, broker.TopicConfig{}); err != nil {
						b.Fatal(err)
					}
					now := time.Now()
					for i := 0; i < len(payloads); i += per {
						recs := make([]broker.Record, 0, per)
						for j := i; j < min(i+per, len(payloads)); j++ {
							recs = append(recs, broker.Record{Value: payloads[j], Timestamp: now, Headers: []broker.Header{
								{Key: "mqtt.topic", Value: []byte(topics[j])}, {Key: "mqtt.qos", Value: []byte("1")}, {Key: "mqtt.retained", Value: []byte("false")}}})
						}
						write := br.Produce
						if how == "ProduceBatches" {
							write = br.ProduceBatches
						}
						if _, err := write(context.Background(), "t", 0, recs, broker.AcksAll); err != nil {
							b.Fatal(err)
						}
					}
					if err := br.Close(); err != nil {
						b.Fatal(err)
					}
					pct = 100 * float64(dirBytes(b, filepath.Join(dir, "t", "0"))) / float64(raw)
				}
				b.ReportMetric(pct, "%raw")
			})
		}
	}
}

// dirBytes is the total size of the files under dir.
func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
