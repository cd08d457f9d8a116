package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// openInterval opens a broker with fsync: interval (the mode whose power cut
// loses the tail) and an interval long enough that only Close fsyncs.
func openInterval(t testing.TB, dir string) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: dir, Logger: quiet, SegmentBytes: 16 << 20,
		Fsync: broker.FsyncInterval, FsyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fileSizes returns the size of every file under dir.
func fileSizes(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			out[path] = fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cutTail puts dir back to the sizes of an earlier fsync: files written since
// are cut to their old size, files created since are removed. That is what a
// power cut leaves of an append-only log whose page cache was not yet flushed.
func cutTail(t testing.TB, dir string, synced map[string]int64) {
	t.Helper()
	for path, size := range fileSizes(t, dir) {
		old, ok := synced[path]
		switch {
		case !ok:
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		case size > old:
			if err := os.Truncate(path, old); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// produceValues writes one record per value to a local partition.
func produceValues(t testing.TB, b *broker.Broker, topic string, part int32, prefix string, from, n int) {
	t.Helper()
	recs := make([]broker.Record, 0, n)
	for i := from; i < from+n; i++ {
		recs = append(recs, broker.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	if _, err := b.Produce(context.Background(), topic, part, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
}

// TestUplinkRebasesWhenCheckpointIsAheadAfterPowerCut: with fsync: interval the
// uplink mirrors records a power cut then takes from the local log, so the
// central checkpoint ends up beyond the local end and the edge writes new
// records at the offsets the central cluster already holds. The uplink used to
// wait silently until the local log passed the checkpoint and then skip every
// record written at the lost offsets. Now it detects the checkpoint ahead at
// session start (log, katka_sync_checkpoint_ahead_total), re-bases the
// partition into epoch 1 at the local end, and mirrors every record written
// after the restart, those written before the first session included.
func TestUplinkRebasesWhenCheckpointIsAheadAfterPowerCut(t *testing.T) {
	c := central(t, nil)
	dir := t.TempDir()
	cfg := syncConfig(c.ListenAddrs())
	cfg.Uplink = []config.SyncUplink{{Topic: "events"}}
	// start runs the uplink on b; the returned func stops it.
	start := func(b *broker.Broker) (*Service, func()) {
		svc, err := New(b, cfg, "", nil, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { svc.Run(ctx); close(done) }()
		return svc, func() { cancel(); <-done }
	}

	// Run 1: 1,000 records per partition, then a clean stop: fsynced.
	b := openInterval(t, dir)
	if _, err := b.CreateTopic("events", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceValues(t, b, "events", 0, "before", 0, 1000)
	produceValues(t, b, "events", 1, "before", 0, 1000)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	synced := fileSizes(t, filepath.Join(dir, "events", "0"))

	// Run 2: 500 more per partition, mirrored, then the power cut takes the
	// 500 of partition 0 (written after the last fsync) from the local disk.
	b = openInterval(t, dir)
	produceValues(t, b, "events", 0, "lost", 1000, 500)
	produceValues(t, b, "events", 1, "before", 1000, 500)
	_, stop := start(b)
	waitMirrored(t, c.ListenAddrs(), "site-a.events", 3000, 30*time.Second)
	stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	cutTail(t, filepath.Join(dir, "events", "0"), synced)

	// Run 3: the local log of partition 0 ends at 1,000, the central
	// checkpoint says 1,500. 200 records arrive before the uplink connects
	// (central unreachable at first, or simply faster), 800 after: the log
	// passes the checkpoint, which used to hide the loss.
	b = openInterval(t, dir)
	t.Cleanup(func() { b.Close() })
	if info, _ := b.PartitionInfo("events", 0); info.HighWatermark != 1000 {
		t.Fatalf("partition 0 ends at %d after the cut, want 1000", info.HighWatermark)
	}
	svc, err := New(b, cfg, "", nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	produceValues(t, b, "events", 0, "after", 1000, 200)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	ahead := svc.up.m.cpAhead.WithLabelValues("uplink", "events")
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(ahead) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("checkpoint ahead never detected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	produceValues(t, b, "events", 0, "after", 1200, 800)
	produceValues(t, b, "events", 1, "before", 1500, 100)
	recs := waitMirrored(t, c.ListenAddrs(), "site-a.events", 3000+1000+100, 30*time.Second)
	cancel()
	<-done

	// Central: epoch 0 holds partition 0's offsets 0-1,499 (the 500 lost
	// locally included) and partition 1's 0-1,599; epoch 1 holds partition 0's
	// offsets 1,000-1,999, the records written after the power cut, each once.
	type key struct {
		part, epoch, off int64
	}
	seen := map[key]string{}
	for _, r := range recs {
		p, _ := strconv.ParseInt(mirrortest.Header(r, HeaderOriginPartition), 10, 32)
		off, _ := strconv.ParseInt(mirrortest.Header(r, HeaderOriginOffset), 10, 64)
		var ep int64
		if h := mirrortest.Header(r, HeaderOriginEpoch); h != "" {
			ep, _ = strconv.ParseInt(h, 10, 64)
		}
		k := key{p, ep, off}
		if _, dup := seen[k]; dup {
			t.Fatalf("duplicate central record %+v", k)
		}
		seen[k] = string(r.Value)
	}
	check := func(part, epoch, from, to int64, prefix func(off int64) string) {
		t.Helper()
		for off := from; off < to; off++ {
			v, ok := seen[key{part, epoch, off}]
			if want := fmt.Sprintf("%s-%d", prefix(off), off); !ok || v != want {
				t.Fatalf("partition %d epoch %d offset %d: central %q (present %v), want %q", part, epoch, off, v, ok, want)
			}
		}
	}
	check(0, 0, 0, 1500, func(off int64) string { return map[bool]string{true: "before", false: "lost"}[off < 1000] })
	check(0, 1, 1000, 2000, func(int64) string { return "after" })
	check(1, 0, 0, 1600, func(int64) string { return "before" })
	if len(seen) != 1500+1000+1600 {
		t.Fatalf("central holds %d records, want %d", len(seen), 1500+1000+1600)
	}
	if n := testutil.ToFloat64(ahead); n != 1 {
		t.Fatalf("katka_sync_checkpoint_ahead_total{topic=events} = %v, want 1", n)
	}

	// The checkpoint records the re-base.
	cps := readSiteCheckpoints(t, c.ListenAddrs(), cfg.CheckpointTopic)
	cp := cps["site-a/events/0"]
	if cp.NextOffset != 2000 || cp.Epoch != 1 || cp.Rebase == nil || cp.Rebase.CentralNext != 1500 || cp.Rebase.LocalNext != 1000 {
		t.Fatalf("checkpoint of partition 0: %+v (rebase %+v)", cp, cp.Rebase)
	}
	if cp1 := cps["site-a/events/1"]; cp1.NextOffset != 1600 || cp1.Epoch != 0 || cp1.Rebase != nil {
		t.Fatalf("checkpoint of partition 1: %+v", cp1)
	}

	// Run 4 (same data, a restart): no second re-base, epoch 1 goes on.
	produceValues(t, b, "events", 0, "after", 2000, 10)
	svc, stop = start(b)
	recs = waitMirrored(t, c.ListenAddrs(), "site-a.events", 3000+1000+100+10, 30*time.Second)
	stop()
	if n := testutil.ToFloat64(svc.up.m.cpAhead.WithLabelValues("uplink", "events")); n != 0 {
		t.Fatalf("restart re-based again (%v)", n)
	}
	last := recs[len(recs)-1]
	for _, r := range recs {
		if mirrortest.Header(r, HeaderOriginOffset) == "2009" {
			last = r
		}
	}
	if string(last.Value) != "after-2009" || mirrortest.Header(last, HeaderOriginEpoch) != "1" {
		t.Fatalf("record after the restart: %q epoch %q", last.Value, mirrortest.Header(last, HeaderOriginEpoch))
	}
}

// readSiteCheckpoints returns the latest committed checkpoint per key.
func readSiteCheckpoints(t testing.TB, brokers []string, topic string) map[string]checkpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := mirrortest.ReadAll(ctx, brokers, topic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]checkpoint{}
	for _, r := range recs {
		var cp checkpoint
		if err := json.Unmarshal(r.Value, &cp); err != nil || !strings.HasPrefix(string(r.Key), "site-a/") {
			continue
		}
		out[string(r.Key)] = cp
	}
	return out
}
