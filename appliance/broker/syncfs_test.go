package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestIntervalFlushSharesSyncfs: with fsync: interval, the periodic flush of
// many partitions is a few syncfs rounds, not one fdatasync after another
// (4,096 partitions flushed in turn took longer than the interval), and
// leaves every partition durable.
func TestIntervalFlushSharesSyncfs(t *testing.T) {
	b := openB(t, t.TempDir(), func(o *Options) { o.Fsync = FsyncInterval; o.FsyncInterval = time.Hour })
	defer b.Close()
	if b.syncer == nil {
		t.Skip("kernel before 5.8: no syncfs")
	}
	const n = 512
	if _, err := b.CreateTopic("t", n, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(n) {
		if _, err := b.Produce(context.Background(), "t", p, []Record{{Value: []byte("v")}}, AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	before := b.syncer.Stats()
	b.syncPartitions()
	st := b.syncer.Stats()
	rounds, fs := st.Rounds-before.Rounds, st.SyncfsRounds-before.SyncfsRounds
	t.Logf("flush of %d partitions: %d rounds, %d of them syncfs", n, rounds, fs)
	if fs == 0 || rounds > n/4 {
		t.Errorf("flush of %d partitions took %d rounds (%d syncfs): not shared", n, rounds, fs)
	}
	for _, p := range b.allPartitions() {
		if got := p.log.DurableOffset(); got != 1 {
			t.Errorf("partition %d durable to %d after the flush, want 1", p.id, got)
		}
	}
}

// TestAcksAllManyPartitionsShareSyncfs: acks=all writes to many partitions
// at once (one produce request's partitions) are acknowledged after shared
// syncfs rounds, and every record is there after a reopen.
func TestAcksAllManyPartitionsShareSyncfs(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	if b.syncer == nil {
		b.Close()
		t.Skip("kernel before 5.8: no syncfs")
	}
	const n, per = 64, 10
	if _, err := b.CreateTopic("t", n, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := range int32(n) {
		wg.Go(func() {
			for i := range per {
				if _, err := b.Produce(context.Background(), "t", p, []Record{{Value: fmt.Appendf(nil, "%d-%d", p, i)}}, AcksAll); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st := b.syncer.Stats()
	t.Logf("%d acks=all writes: %d flushes in %d rounds, %d syncfs rounds serving %d", n*per, st.Flushes, st.Rounds, st.SyncfsRounds, st.SyncfsFlushes)
	if st.SyncfsRounds == 0 {
		t.Error("no syncfs round for 64 partitions written at once")
	}
	b.Close()
	b = openB(t, dir, nil)
	defer b.Close()
	for p := range int32(n) {
		res, err := b.Fetch(context.Background(), "t", p, 0, 1<<20, 0)
		if err != nil || len(res.Records) != per {
			t.Fatalf("partition %d after reopen: %d records, %v", p, len(res.Records), err)
		}
	}
}
