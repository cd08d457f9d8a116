package mirror

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// TestUplinkFallsBackToAtLeastOnce runs against a central cluster without the
// transaction APIs: the uplink still mirrors everything, says at_least_once in
// its status and metrics, and resumes from its (non-transactional) checkpoints.
func TestUplinkFallsBackToAtLeastOnce(t *testing.T) {
	v := kversion.Stable()
	v.SetMaxKeyVersion(24, -1) // AddPartitionsToTxn
	v.SetMaxKeyVersion(26, -1) // EndTxn
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.MaxVersions(v))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := openBroker(t, t.TempDir())
	if _, err := b.CreateTopic("alarms", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceLocal(t, b, "alarms", 2, 4000, 50)
	cfg := syncConfig(c.ListenAddrs())
	cfg.Uplink = []config.SyncUplink{{Topic: "alarms"}}
	for round := 0; round < 2; round++ {
		svc, err := New(b, cfg, "", nil, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { svc.Run(ctx); close(done) }()
		total := 4000 * (round + 1)
		recs := waitMirrored(t, c.ListenAddrs(), "site-a.alarms", total, 30*time.Second)
		st := svc.Status()
		cancel()
		<-done
		if st.Links[0].Delivery != "at_least_once" {
			t.Fatalf("delivery %q, want at_least_once", st.Links[0].Delivery)
		}
		miss, dup, ooo, err := mirrortest.CheckUplink(recs, "site-a", "alarms", ends(t, b, "alarms"))
		if err != nil || miss+dup+ooo != 0 {
			// A clean stop commits its checkpoints, so not even duplicates here.
			t.Fatalf("round %d: missing %d duplicated %d out of order %d err %v", round, miss, dup, ooo, err)
		}
		produceLocal(t, b, "alarms", 2, 4000, 50)
	}
}

// TestUplinkPriority fills two topics and checks that, under a bandwidth cap,
// the higher-priority topic's backlog drains first.
func TestUplinkPriority(t *testing.T) {
	c := central(t, nil)
	b := openBroker(t, t.TempDir())
	for _, tn := range []string{"telemetry", "alarms"} {
		if _, err := b.CreateTopic(tn, 1, broker.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
		produceLocal(t, b, tn, 1, 2000, 1000)
	}
	cfg := syncConfig(c.ListenAddrs())
	cfg.Uplink = []config.SyncUplink{{Regex: "tele.*"}, {Topic: "alarms", Priority: 10}}
	cfg.MaxBytesPerSec = 2 * config.MB
	svc, err := New(b, cfg, "", nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitMirrored(t, c.ListenAddrs(), "site-a.alarms", 2000, 30*time.Second)
	svc.up.refreshStatus(ctx)
	for _, p := range svc.Status().Links[0].Partitions {
		if p.Topic == "telemetry" && p.Lag < 1000 {
			t.Fatalf("telemetry lag %d when alarms were done: priority not respected", p.Lag)
		}
	}
}

// TestSyncConfigValidation checks the sync section's error messages.
func TestSyncConfigValidation(t *testing.T) {
	c := config.Default()
	c.Sync.Enabled = true
	c.Sync.Uplink = []config.SyncUplink{{Topic: "a", Regex: "b"}, {Regex: "("}}
	c.Sync.Compression = "brotli"
	c.Sync.Brokers = []string{"nohost"}
	c.Sync.DownlinkMaxBytesPerSec = 100
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid sync config accepted")
	}
	for _, want := range []string{
		"sync.site: must not be empty",
		"sync.brokers[0]: \"nohost\" is not a host:port",
		"sync.compression: \"brotli\" is not allowed (allowed: zstd, lz4, snappy, gzip, none)",
		"sync.uplink[0]: has both topic and regex",
		"sync.uplink[1].regex:",
		"sync.downlink_max_bytes_per_sec: 100 is not allowed (allowed: 0 for no cap, or at least 1KiB)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
