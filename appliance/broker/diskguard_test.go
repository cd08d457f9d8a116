package broker

import (
	"context"
	"errors"
	"testing"
)

func fillRecs(n, size int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i].Value = make([]byte, size)
		recs[i].Value[0] = byte(i)
	}
	return recs
}

func TestQuotaReject(t *testing.T) {
	const quota = 2 << 20
	b := openB(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 64 << 10; o.QuotaBytes = quota })
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic("keep", 2, TopicConfig{OnFull: OnFullReject})
	acked := map[int32]int64{}
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		p := int32(i % 2)
		var base int64
		if base, err = b.Produce(ctx, "keep", p, fillRecs(10, 1000), AcksAll); err == nil {
			acked[p] = base + 10
		}
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("want ErrDiskFull at the quota, got %v", err)
	}
	var used int64
	for p := int32(0); p < 2; p++ {
		info, _ := b.PartitionInfo("keep", p)
		used += info.Bytes
		// Reads keep working and nothing acknowledged is lost.
		n := int64(0)
		for off := int64(0); off < acked[p]; {
			res, err := b.Fetch(ctx, "keep", p, off, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			n += int64(len(res.Records))
			off = res.Records[len(res.Records)-1].Offset + 1
		}
		if n != acked[p] || info.LogStartOffset != 0 {
			t.Fatalf("partition %d: read %d of %d acknowledged records, start %d", p, n, acked[p], info.LogStartOffset)
		}
	}
	if used > quota {
		t.Fatalf("%d bytes used, quota %d", used, quota)
	}
	// The quota is the data directory's, not the topic's: another topic fills
	// only what is left. (Produce counts an estimate of each write until the
	// next reading of the real sizes, at most a second later; a slow box may
	// take that reading in between, so the test fills rather than expecting the
	// very first write to fail.)
	b.CreateTopic("other", 1, TopicConfig{})
	b.refreshDisk()
	left := quota - b.disk.used.Load()
	var otherErr error
	for i := int64(0); i <= left/10_000+1 && otherErr == nil; i++ {
		_, otherErr = b.Produce(ctx, "other", 0, fillRecs(10, 1000), AcksAll)
	}
	if !errors.Is(otherErr, ErrDiskFull) {
		t.Fatalf("other topic with %d bytes left of the quota: still accepted after %d bytes (%v)", left, (left/10_000+2)*10_000, otherErr)
	}
	// Deleting data makes room again.
	b.DeleteTopic("keep")
	b.refreshDisk()
	if _, err := b.Produce(ctx, "other", 0, fillRecs(1, 100), AcksAll); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
}

func TestQuotaDropOldest(t *testing.T) {
	const quota = 2 << 20
	const seg = 64 << 10
	b := openB(t, t.TempDir(), func(o *Options) { o.SegmentBytes = seg; o.QuotaBytes = quota })
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic("ring", 2, TopicConfig{OnFull: OnFullDropOldest})
	var last [2]int64
	for i := 0; i < 1000; i++ { // 10 MB into a 2 MiB quota
		p := int32(i % 2)
		base, err := b.Produce(ctx, "ring", p, fillRecs(10, 1000), AcksAll)
		if err != nil {
			t.Fatalf("drop_oldest produce %d: %v", i, err)
		}
		last[p] = base + 10
	}
	var used int64
	for p := int32(0); p < 2; p++ {
		info, _ := b.PartitionInfo("ring", p)
		used += info.Bytes
		if info.LogStartOffset == 0 || info.HighWatermark != last[p] {
			t.Fatalf("partition %d: %+v", p, info)
		}
		// The newest data is all there and readable from the new start.
		res, err := b.Fetch(ctx, "ring", p, info.LogStartOffset, 1<<20, 0)
		if err != nil || len(res.Records) == 0 || res.Records[0].Offset != info.LogStartOffset {
			t.Fatalf("read from new start: %v", err)
		}
	}
	if used > quota {
		t.Fatalf("%d bytes used, quota %d", used, quota)
	}
	if counterValue(b.m.droppedSegC.WithLabelValues("ring")) == 0 {
		t.Fatal("no dropped segments counted")
	}
}
