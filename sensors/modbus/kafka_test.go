package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/kafka"
)

// TestReadBackWithKafkaClient polls a Modbus TCP server into a broker served over
// the Kafka protocol and reads the readings back with franz-go.
func TestReadBackWithKafkaClient(t *testing.T) {
	dev := uniq("kafka-1") // fresh metric series with -count
	h := &handler{holding: map[uint16]uint16{0: 0x0102}, input: map[uint16]uint16{5: 0x4049, 6: 0x0FDB}}
	addr := freeAddr(t)
	startServer(t, addr, h)
	b := openBroker(t)
	srv, err := kafka.Listen(b, kafka.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := sensorsConfig(t, 50*time.Millisecond, DeviceConfig{Name: dev, URL: "tcp://" + addr,
		Registers: []RegisterConfig{
			{Name: "word", Table: "holding", Address: 0, Type: "uint16", Scale: 0.5},
			{Name: "pi", Table: "input", Address: 5, Type: "float32", Unit: "rad"},
		}})
	start(t, b, cfg)

	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.Addr().String()), kgo.ConsumeTopics(ConfigOf(cfg).Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	want := map[string]float64{dev + "/word": 129, dev + "/pi": float64(float32(3.1415927))}
	seen := map[string]int{}
	for len(seen) < len(want) || seen[dev+"/word"] < 3 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %v before the deadline", seen)
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, kerr.UnknownTopicOrPartition) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var v Reading
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("record %q: %v", r.Value, err)
			}
			key := string(r.Key)
			if w, ok := want[key]; !ok || v.Value != w || key != v.Device+"/"+v.Register || !r.Timestamp.Equal(v.TS) {
				t.Fatalf("record key %q value %s timestamp %v", r.Key, r.Value, r.Timestamp)
			}
			seen[key]++
		})
	}
	t.Logf("read back over the Kafka protocol: %v", seen)
}
