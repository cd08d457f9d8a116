package host_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/plugins/host"
)

// BenchmarkNoopProcessorCall measures the plugin call path alone: batches of
// 1000 records of 100 bytes into the noop processor plugin process and its
// answer back, over go-plugin's gRPC connection.
func BenchmarkNoopProcessorCall(b *testing.B) {
	m := manifest(b, "noop")
	c, err := host.Dial(m, 10*time.Second, testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const batch = 1000
	recs := make([]broker.Record, batch)
	for i := range recs {
		recs[i] = broker.Record{Key: []byte(fmt.Sprintf("key-%05d", i)), Value: []byte(strings.Repeat("x", 90)), Timestamp: time.Now()}
	}
	ctx := context.Background()
	b.SetBytes(100 * batch)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Process(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkNoopProcessorPipeline measures the whole host path: records
// produced to a katka topic (fsync always), read by the host, sent to the noop
// processor in batches, and their positions committed.
func BenchmarkNoopProcessorPipeline(b *testing.B) {
	dir := plugins(b)
	bk := openBroker(b)
	if _, err := bk.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		b.Fatal(err)
	}
	const n = 200000
	val := []byte(strings.Repeat("x", 90))
	for i := 0; i < n; i += 10000 {
		recs := make([]broker.Record, 10000)
		for j := range recs {
			recs[j] = broker.Record{Key: []byte(fmt.Sprintf("key-%05d", j)), Value: val}
		}
		if _, err := bk.Produce(context.Background(), "in", 0, recs, broker.AcksAll); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		b.StopTimer()
		cfg := testConfig(dir, config.PluginInstance{Name: fmt.Sprintf("noop-%d", time.Now().UnixNano()), Plugin: "noop", Inputs: []string{"in"}, Output: "out"})
		r := startHost(b, bk, cfg)
		waitFor(b, 10*time.Second, "noop up", func() bool { return r.h.Status()[0].Up })
		b.StartTimer()
		start := time.Now()
		waitFor(b, time.Minute, "all records through", func() bool {
			return testutilValue(r, "katka_plugin_records_in_total") >= n
		})
		b.ReportMetric(n/time.Since(start).Seconds(), "records/s")
		b.StopTimer()
		r.stop()
		b.StartTimer()
	}
}

func testutilValue(r *running, name string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}
