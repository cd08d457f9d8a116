package system

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
)

// TestWritesReadings runs the registered input on a real broker and reads the
// records back: keyed by host name, JSON with every group collected.
func TestWritesReadings(t *testing.T) {
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := config.Default().Sensors
	ConfigOf(cfg).Enabled = true // only this input is registered here
	ConfigOf(cfg).Interval = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var res broker.FetchResult
	for len(res.Records) < 2 && time.Now().Before(deadline) {
		res, err = b.Fetch(ctx, "sensors.system", 0, 0, 1<<20, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if len(res.Records) < 2 {
		t.Fatalf("%d readings after 10s, want 2", len(res.Records))
	}
	host, _ := os.Hostname()
	for _, rec := range res.Records {
		if string(rec.Key) != host {
			t.Errorf("key %q, want host name %q", rec.Key, host)
		}
		var r Reading
		if err := json.Unmarshal(rec.Value, &r); err != nil {
			t.Fatalf("value %s: %v", rec.Value, err)
		}
		if r.Host != host || r.CPU == nil || r.CPU.Cores < 1 || r.Memory == nil || r.Memory.Total == 0 || len(r.Disks) == 0 || len(r.Network) == 0 {
			t.Errorf("reading is missing a group: %s", rec.Value)
		}
		if !rec.Timestamp.Equal(r.TS) {
			t.Errorf("record timestamp %v, reading ts %v", rec.Timestamp, r.TS)
		}
	}
	t.Logf("reading: %.400s", res.Records[0].Value)
}
