package mirror

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// fillBacklog writes bytes of 1 KiB records (half random, half repeated text,
// so zstd has some work) into a 4-partition topic.
func fillBacklog(t testing.TB, b *broker.Broker, topic string, total int64) int64 {
	t.Helper()
	if _, err := b.CreateTopic(topic, 4, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const size, per = 1024, 1000
	n := total / size
	ctx := context.Background()
	for i := int64(0); i < n; i += per {
		recs := make([]broker.Record, 0, per)
		for j := i; j < min(i+per, n); j++ {
			v := make([]byte, size)
			for k := 0; k < size/2; k++ {
				v[k] = byte('a' + rng.IntN(26))
			}
			copy(v[size/2:], "temperature=21.5;pressure=1.013;vibration=0.002;status=ok;")
			// An outage's backlog: hours old (kgo must not time these out).
			recs = append(recs, broker.Record{Value: v, Timestamp: time.Now().Add(-3 * time.Hour)})
		}
		if _, err := b.Produce(ctx, topic, int32(i/per%4), recs, broker.AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// catchUp drains the backlog to a fresh kfake and returns records/s and bytes/s.
func catchUp(t testing.TB, total int64, capBytes config.ByteSize) (recs int64, rate float64) {
	c := central(t, nil)
	b := openBroker(t, t.TempDir())
	n := fillBacklog(t, b, "backlog", total)
	cfg := syncConfig(c.ListenAddrs())
	cfg.Uplink = []config.SyncUplink{{Topic: "backlog"}}
	cfg.MaxBytesPerSec = capBytes
	svc, err := New(b, cfg, "", nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Time from the first committed batch, so connecting is not counted.
	var t0 time.Time
	var b0 int64
	deadline := time.Now().Add(10 * time.Minute)
	for svc.up.records.Load() < n {
		if t0.IsZero() && svc.up.records.Load() > 0 {
			t0, b0 = time.Now(), svc.up.bytes.Load()
		}
		if time.Now().After(deadline) {
			t.Fatalf("catch-up: %d of %d records after 10 minutes", svc.up.records.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	el := time.Since(t0)
	return n, float64(svc.up.bytes.Load()-b0) / el.Seconds()
}

// TestCatchUpCapRespected: with sync.bandwidth capped at 5 MB/s, draining a
// backlog never runs faster than the cap (plus 10%). Only the upper bound is
// asserted: a cap is a promise about the most, and a loaded machine (or the
// race detector) may well be slower.
func TestCatchUpCapRespected(t *testing.T) {
	size := int64(10e6)
	if os.Getenv("KATKA_LONG") != "" {
		size = 100e6
	}
	n, r := catchUp(t, size, 5*config.MB)
	t.Logf("capped at 5 MB/s: %d records at %.2f MB/s (%.1f%% of the cap)", n, r/1e6, r/5e6*100)
	if r > 5.5e6 {
		t.Errorf("capped catch-up at %.2f MB/s, over the 5 MB/s cap by more than 10%%", r/1e6)
	}
}

// BenchmarkCatchUp drains a 128 MiB backlog of 1 KiB records (1 GiB with
// KATKA_LONG set) to a fresh kfake, uncapped, and reports MB/s and records/s
// (was a timed unit test; speed targets belong in benchmarks):
// go test -run '^$' -bench CatchUp -benchtime 1x ./sync/mirror/
func BenchmarkCatchUp(b *testing.B) {
	size := int64(128 << 20)
	if os.Getenv("KATKA_LONG") != "" {
		size = 1 << 30
	}
	for b.Loop() {
		_, r := catchUp(b, size, 0)
		b.ReportMetric(r/1e6, "MB/s")
		b.ReportMetric(r/1024, "records/s")
	}
}
