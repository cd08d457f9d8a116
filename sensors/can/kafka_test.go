package can

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

// messageRecord is a key: message record.
type messageRecord struct {
	Message   string    `json:"message"`
	ID        uint32    `json:"id"`
	Interface string    `json:"interface"`
	TS        time.Time `json:"ts"`
	Signals   map[string]struct {
		Value *float64 `json:"value"`
		Unit  string   `json:"unit"`
		Label string   `json:"label"`
	} `json:"signals"`
}

// units are the DBC units of the test signals.
var units = map[string]string{"EngineSpeed": "rpm", "CoolantTemp": "C", "Throttle": "%", "Speed": "km/h", "Accel": "g",
	"Odometer": "km", "WheelSpeed": "km/h", "CellVoltage": "V", "CellTemp": "C", "Soc": "%", "YawRate": "deg/s"}

// TestReplay100kFramesReadBackWithKafkaClient replays a candump log of
// 100,000 generated frames (little- and big-endian, signed, scaled with
// offsets, an extended id, multiplexed signals, float32, a value table) and
// reads the topic back with franz-go over the Kafka protocol: every frame
// arrives once, with exactly the physical values its raw values were built from.
func TestReplay100kFramesReadBackWithKafkaClient(t *testing.T) {
	const n = 100_000
	path := logPath(t, "drive.log")
	base := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	want := writeLog(t, path, n, base)

	b := openBroker(t)
	srv, err := kafka.Listen(b, kafka.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := testConfig(path)
	ConfigOf(cfg).Key = "message"
	start := time.Now()
	runInputs(t, b, cfg)() // the replay ends after the file
	elapsed := time.Since(start)
	t.Logf("replayed %d frames into katka in %v: %.0f frames/s (decode, JSON, write with fsync)", n, elapsed.Round(time.Millisecond), n/elapsed.Seconds())

	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.Addr().String()), kgo.ConsumeTopics(ConfigOf(cfg).Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seen := make(map[int64]bool, n)
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records before the deadline", len(seen), n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, kerr.UnknownTopicOrPartition) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var m messageRecord
			if err := json.Unmarshal(r.Value, &m); err != nil {
				t.Fatalf("record %q: %v", r.Value, err)
			}
			ns := m.TS.UnixNano()
			e, ok := want[ns]
			switch {
			case !ok || seen[ns]:
				t.Fatalf("record at %v: unknown or seen twice: %s", m.TS, r.Value)
			case !r.Timestamp.Equal(m.TS) || string(r.Key) != e.message || m.Message != e.message || m.Interface != "vcan0":
				t.Fatalf("record key %q timestamp %v, want %s at %v: %s", r.Key, r.Timestamp, e.message, m.TS, r.Value)
			case len(m.Signals) != len(e.values):
				t.Fatalf("record %s has %d signals, want %v", r.Value, len(m.Signals), e.values)
			}
			for name, v := range e.values {
				got := m.Signals[name]
				if got.Value == nil || *got.Value != v || got.Label != e.labels[name] || got.Unit != units[name] {
					t.Fatalf("%s.%s = %v (label %q), want %v (label %q): %s", e.message, name, got.Value, got.Label, v, e.labels[name], r.Value)
				}
			}
			seen[ns] = true
		})
	}
	t.Logf("read back %d records with franz-go, every signal value exact", len(seen))
}
