package simulated

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
)

// TestTickIsOneBatch: through the real broker, one tick's readings of every
// sensor go to the partition as one record batch (they share compression
// and an fsync), not one batch per reading.
func TestTickIsOneBatch(t *testing.T) {
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, Logger: slog.New(slog.DiscardHandler),
		Defaults: broker.TopicConfig{CompressionType: "zstd"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := config.Default().Sensors
	sim := ConfigOf(cfg)
	*sim = testConfig(time.Hour) // one tick: the one at start
	sim.Enabled = true
	sim.Partitions = 1
	ins, err := sensors.Build(cfg, sensors.Env{Broker: b})
	if err != nil || len(ins) != 1 {
		t.Fatalf("build: %d inputs, %v", len(ins), err)
	}
	topic := sim.Topic
	ch, err := b.Notify(topic, 0) // before Run: the tick's write closes it
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ins[0].Run(ctx) }()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no reading written within 30s")
	}
	cancel()
	<-done
	res, err := b.FetchBatches(context.Background(), topic, 0, 0, 1<<62, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var counts []uint32
	for rest := res.Batches; len(rest) > 0; {
		l := 12 + int(binary.BigEndian.Uint32(rest[8:]))
		counts = append(counts, binary.BigEndian.Uint32(rest[57:]))
		rest = rest[l:]
	}
	if n := len(sim.Sensors); len(counts) != 1 || counts[0] != uint32(n) {
		t.Fatalf("batches with %v records, want one batch of the %d readings", counts, n)
	}
}
