package mirror

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("KATKA_SYNC_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quiet
}

func openBroker(t testing.TB, dir string) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: dir, Logger: quiet, SegmentBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func central(t testing.TB, g *mirrortest.Gate) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if g != nil {
		opts = append(opts, kfake.ListenFn(g.Listen))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func syncConfig(brokers []string) config.Sync {
	c := config.Default().Sync
	c.Enabled = true
	c.Site = "site-a"
	c.Brokers = brokers
	c.BackoffMin = 50 * time.Millisecond
	c.BackoffMax = 500 * time.Millisecond
	return c
}

func produceLocal(t testing.TB, b *broker.Broker, topic string, parts int32, n, size int) {
	t.Helper()
	ctx := context.Background()
	val := make([]byte, size)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	const per = 500
	for p := int32(0); p < parts; p++ {
		for i := 0; i < n/int(parts); i += per {
			recs := make([]broker.Record, 0, per)
			for j := i; j < min(i+per, n/int(parts)); j++ {
				recs = append(recs, broker.Record{Key: fmt.Appendf(nil, "k%d", j), Value: val, Timestamp: time.Now().Add(-2 * time.Hour)})
			}
			if _, err := b.Produce(ctx, topic, p, recs, broker.AcksAll); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func ends(t testing.TB, b *broker.Broker, topic string) map[int32]int64 {
	ps, err := b.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range ps {
		out[p.Partition] = p.HighWatermark
	}
	return out
}

// waitMirrored reads the central topic until it holds total records (or d
// passes); opts are the reader's extra client options (TLS, SASL).
func waitMirrored(t testing.TB, brokers []string, topic string, total int, d time.Duration, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		recs, err := mirrortest.ReadAll(ctx, brokers, topic, opts...)
		cancel()
		if err == nil && len(recs) >= total {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("central %s: %d of %d records after %v (err %v)", topic, len(recs), total, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestUplinkExactlyOnceAcrossRestartsAndOutage stops the uplink mid-transfer
// twice (once while the central side is down) and checks every record is
// mirrored once, in order, with its origin headers.
func TestUplinkExactlyOnceAcrossRestartsAndOutage(t *testing.T) {
	g := mirrortest.NewGate()
	c := central(t, g)
	b := openBroker(t, t.TempDir())
	if _, err := b.CreateTopic("telemetry", 4, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	cfg := syncConfig(c.ListenAddrs())
	cfg.Uplink = []config.SyncUplink{{Topic: "telemetry"}}
	cfg.BatchBytes = 256 << 10
	run := func(d time.Duration) {
		svc, err := New(b, cfg, "", nil, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		svc.Run(ctx)
		cancel()
	}
	produceLocal(t, b, "telemetry", 4, 40000, 100)
	run(300 * time.Millisecond)
	g.Down()
	produceLocal(t, b, "telemetry", 4, 40000, 100)
	run(500 * time.Millisecond)
	g.Up()
	run(200 * time.Millisecond)
	produceLocal(t, b, "telemetry", 4, 20000, 100)
	svc, err := New(b, cfg, "", nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	recs := waitMirrored(t, c.ListenAddrs(), "site-a.telemetry", 100000, 60*time.Second)
	miss, dup, ooo, err := mirrortest.CheckUplink(recs, "site-a", "telemetry", ends(t, b, "telemetry"))
	if err != nil || miss+dup+ooo != 0 || len(recs) != 100000 {
		t.Fatalf("central has %d records: missing %d, duplicated %d, out of order %d, err %v", len(recs), miss, dup, ooo, err)
	}
	st := svc.Status()
	if len(st.Links) != 1 || st.Links[0].Delivery != "exactly_once" {
		t.Fatalf("status %+v", st)
	}
}
