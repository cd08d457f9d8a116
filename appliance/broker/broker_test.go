package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/storage"
)

func openB(t testing.TB, dir string, mod func(*Options)) *Broker {
	t.Helper()
	o := Options{DataDir: dir, SegmentBytes: 64 << 10}
	if mod != nil {
		mod(&o)
	}
	b, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTopicsPersistAndDelete(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	info, err := b.CreateTopic("orders", 3, TopicConfig{RetentionMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("orders", 1, TopicConfig{}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "sp ace", string(make([]byte, 250))} {
		if _, err := b.CreateTopic(bad, 1, TopicConfig{}); !errors.Is(err, ErrInvalidTopic) {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	if _, err := b.CreateTopic("zero", 0, TopicConfig{}); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("0 partitions: %v", err)
	}
	b.CreateTopic("gone", 1, TopicConfig{})
	if _, err := b.Produce(context.Background(), "orders", 2, []Record{{Value: []byte("x")}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreatePartitions("orders", 5); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b = openB(t, dir, nil)
	defer b.Close()
	ts := b.Topics()
	if len(ts) != 1 || ts[0].Name != "orders" || ts[0].Partitions != 5 || ts[0].ID != info.ID || ts[0].Config.RetentionMs != 1000 {
		t.Fatalf("after reopen: %+v", ts)
	}
	parts, _ := b.Partitions("orders")
	if parts[2].HighWatermark != 1 || parts[4].HighWatermark != 0 {
		t.Fatalf("partitions %+v", parts)
	}
	if _, err := b.Produce(context.Background(), "gone", 0, []Record{{}}, AcksAll); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("produce to deleted topic: %v", err)
	}
	if _, err := b.Produce(context.Background(), "orders", 9, []Record{{}}, AcksAll); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("produce to bad partition: %v", err)
	}
}

func TestSecondBrokerOnSameDirRefused(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	defer b.Close()
	if _, err := Open(Options{DataDir: dir}); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestProduceFetchAndLongPoll(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic("t", 1, TopicConfig{})
	// A fetch at the end waits and is woken by a produce, not by its timeout.
	parked := make(chan struct{}, 1)
	b.onFetchWait = func() {
		select {
		case parked <- struct{}{}:
		default:
		}
	}
	done := make(chan FetchResult)
	go func() {
		res, err := b.Fetch(ctx, "t", 0, 0, 1<<20, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-parked // the fetch waits for records: the produce below must wake it
	t0 := time.Now()
	base, err := b.Produce(ctx, "t", 0, []Record{{Key: []byte("k"), Value: []byte("v1")}, {Value: []byte("v2"), Headers: []Header{{Key: "h", Value: []byte("x")}}}}, AcksAll)
	if err != nil || base != 0 {
		t.Fatal(base, err)
	}
	res := <-done
	if time.Since(t0) > 2*time.Second || len(res.Records) != 2 || res.HighWatermark != 2 || string(res.Records[1].Value) != "v2" || res.Records[0].Key == nil || res.Records[1].Key != nil {
		t.Fatalf("long poll result %+v after %v", res, time.Since(t0))
	}
	// An empty fetch with a wait returns after about the wait.
	t0 = time.Now()
	res, err = b.Fetch(ctx, "t", 0, 2, 1<<20, 100*time.Millisecond)
	if err != nil || len(res.Records) != 0 || time.Since(t0) < 90*time.Millisecond {
		t.Fatalf("empty fetch %+v %v after %v", res, err, time.Since(t0))
	}
	if _, err := b.Fetch(ctx, "t", 0, 3, 1<<20, 0); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("fetch past end: %v", err)
	}
	// acks=0 still becomes visible.
	b.Produce(ctx, "t", 0, []Record{{Value: []byte("v3")}}, AcksNone)
	res, err = b.Fetch(ctx, "t", 0, 2, 1<<20, 2*time.Second)
	if err != nil || len(res.Records) != 1 {
		t.Fatalf("acks=0 record: %+v %v", res, err)
	}
}

func TestFsyncIntervalMode(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, func(o *Options) { o.Fsync = FsyncInterval; o.FsyncInterval = 20 * time.Millisecond })
	b.CreateTopic("t", 1, TopicConfig{})
	for i := 0; i < 100; i++ {
		if _, err := b.Produce(context.Background(), "t", 0, []Record{{Value: []byte(fmt.Sprint(i))}}, AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	res, _ := b.Fetch(context.Background(), "t", 0, 0, 1<<20, 0)
	if res.HighWatermark != 100 {
		t.Fatalf("hw %d", res.HighWatermark)
	}
	b.Close()
	b = openB(t, dir, nil)
	defer b.Close()
	res, _ = b.Fetch(context.Background(), "t", 0, 0, 1<<20, 0)
	if len(res.Records) != 100 {
		t.Fatalf("after reopen %d records", len(res.Records))
	}
}

func TestConcurrentProducersGetDistinctOffsets(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	b.CreateTopic("t", 1, TopicConfig{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]string{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				v := fmt.Sprintf("%d-%d", w, i)
				off, err := b.Produce(context.Background(), "t", 0, []Record{{Value: []byte(v)}}, AcksAll)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[off] = v
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	res, _ := b.Fetch(context.Background(), "t", 0, 0, 1<<30, 0)
	if len(res.Records) != 400 || len(seen) != 400 {
		t.Fatalf("%d records, %d offsets", len(res.Records), len(seen))
	}
	for _, r := range res.Records {
		if !bytes.Equal(r.Value, []byte(seen[r.Offset])) {
			t.Fatalf("offset %d holds %q, producer was told %q", r.Offset, r.Value, seen[r.Offset])
		}
	}
}

func TestRetentionBytesAndAge(t *testing.T) {
	b := openB(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 64 << 10 })
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic("small", 1, TopicConfig{RetentionBytes: 256 << 10})
	b.CreateTopic("old", 1, TopicConfig{RetentionMs: 60_000})
	val := bytes.Repeat([]byte("x"), 1000)
	for i := 0; i < 2000; i++ { // ~2 MB
		b.Produce(ctx, "small", 0, []Record{{Value: val}}, AcksLeader)
		b.Produce(ctx, "old", 0, []Record{{Value: val, Timestamp: time.Now().Add(-time.Hour)}}, AcksLeader)
	}
	b.ApplyRetention(time.Now())
	p, _ := b.Partitions("small")
	if p[0].Bytes > 256<<10+64<<10+2048 || p[0].Bytes < 256<<10 || p[0].LogStartOffset == 0 {
		t.Fatalf("retention.bytes: %+v", p[0])
	}
	res, err := b.Fetch(ctx, "small", 0, p[0].LogStartOffset, 100, 0)
	if err != nil || len(res.Records) == 0 {
		t.Fatalf("fetch at new start: %v", err)
	}
	if _, err := b.Fetch(ctx, "small", 0, 0, 100, 0); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("fetch below start: %v", err)
	}
	q, _ := b.Partitions("old")
	segs := q[0]
	if segs.Bytes > 64<<10+2048 {
		t.Fatalf("retention.ms left %d bytes", segs.Bytes)
	}
}

func TestOffsetForTime(t *testing.T) {
	b := openB(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 64 << 10 })
	defer b.Close()
	b.CreateTopic("t", 1, TopicConfig{})
	base := time.UnixMilli(1_700_000_000_000)
	for i := 0; i < 3000; i++ {
		b.Produce(context.Background(), "t", 0, []Record{{Value: make([]byte, 100), Timestamp: base.Add(time.Duration(i) * time.Second)}}, AcksLeader)
	}
	for _, want := range []int64{0, 1, 1500, 2999} {
		off, ts, err := b.OffsetForTime(context.Background(), "t", 0, base.Add(time.Duration(want)*time.Second-500*time.Millisecond))
		if err != nil || off != want || !ts.Equal(base.Add(time.Duration(want)*time.Second)) {
			t.Fatalf("want %d got %d %v %v", want, off, ts, err)
		}
	}
	off, _, _ := b.OffsetForTime(context.Background(), "t", 0, base.Add(time.Hour*10))
	if off != 3000 {
		t.Fatalf("future: %d", off)
	}
}

func TestDeleteRecordsMovesStartDurably(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, func(o *Options) { o.SegmentBytes = 64 << 10 })
	b.CreateTopic("t", 1, TopicConfig{})
	for i := 0; i < 2000; i++ {
		b.Produce(context.Background(), "t", 0, []Record{{Value: make([]byte, 100)}}, AcksLeader)
	}
	before, _ := b.Partitions("t")
	low, err := b.DeleteRecords("t", 0, 1234)
	if err != nil || low != 1234 {
		t.Fatalf("delete records: %d %v", low, err)
	}
	if _, err := b.DeleteRecords("t", 0, 5000); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past hw: %v", err)
	}
	after, _ := b.Partitions("t")
	if after[0].Bytes >= before[0].Bytes || after[0].LogStartOffset != 1234 {
		t.Fatalf("before %+v after %+v", before[0], after[0])
	}
	if _, err := b.Fetch(context.Background(), "t", 0, 1233, 100, 0); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("fetch below new start: %v", err)
	}
	b.Close()
	b = openB(t, dir, nil)
	defer b.Close()
	res, err := b.Fetch(context.Background(), "t", 0, 1234, 100, 0)
	if err != nil || res.LogStartOffset != 1234 || res.Records[0].Offset != 1234 {
		t.Fatalf("after reopen: %+v %v", res.LogStartOffset, err)
	}
	if low, _ := b.DeleteRecords("t", 0, -1); low != 2000 {
		t.Fatalf("delete all: %d", low)
	}
}

func TestClusterIDStable(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, nil)
	id := b.ClusterID()
	b.Close()
	b = openB(t, dir, nil)
	defer b.Close()
	if len(id) != 22 || b.ClusterID() != id {
		t.Fatalf("cluster id %q then %q", id, b.ClusterID())
	}
}

// TestCompactedTopicKeepsLatestPerKey: 1,000 keys written 100 times each; after
// compaction every key's latest value is there at its original offset, and
// almost everything else is gone.
func TestCompactedTopicKeepsLatestPerKey(t *testing.T) {
	dir := t.TempDir()
	b := openB(t, dir, func(o *Options) { o.SegmentBytes = 256 << 10 })
	ctx := context.Background()
	b.CreateTopic("state", 1, TopicConfig{CleanupPolicy: "compact"})
	latest := map[string]int64{}
	value := func(k, round int) []byte {
		return []byte(fmt.Sprintf("device-%d round-%d %s", k, round, bytes.Repeat([]byte("x"), 40)))
	}
	for round := 0; round < 100; round++ {
		recs := make([]Record, 1000)
		for k := range recs {
			recs[k] = Record{Key: []byte(fmt.Sprintf("device-%d", k)), Value: value(k, round)}
		}
		base, err := b.Produce(ctx, "state", 0, recs, AcksLeader)
		if err != nil {
			t.Fatal(err)
		}
		for k := range recs {
			latest[fmt.Sprintf("device-%d", k)] = base + int64(k)
		}
	}
	// One key deleted with a tombstone.
	tomb, _ := b.Produce(ctx, "state", 0, []Record{{Key: []byte("device-7")}}, AcksLeader)
	latest["device-7"] = tomb
	before, _ := b.PartitionInfo("state", 0)
	b.CompactTopics(time.Now())
	after, _ := b.PartitionInfo("state", 0)
	if after.Bytes > before.Bytes/4 {
		t.Fatalf("compaction kept %d of %d bytes", after.Bytes, before.Bytes)
	}
	b.Close()
	b = openB(t, dir, nil)
	defer b.Close()
	seen := map[string]Record{}
	total := 0
	for off := int64(0); off < after.HighWatermark; {
		res, err := b.Fetch(ctx, "state", 0, off, 1<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			break
		}
		for _, r := range res.Records {
			seen[string(r.Key)] = r
			total++
		}
		off = res.Records[len(res.Records)-1].Offset + 1
	}
	for k, off := range latest {
		r, ok := seen[k]
		if !ok || r.Offset != off {
			t.Fatalf("key %s: latest offset %d, read %+v", k, off, r.Offset)
		}
		if k == "device-7" {
			if r.Value != nil {
				t.Fatal("tombstone lost its null value")
			}
			continue
		}
		var kn int
		fmt.Sscanf(k, "device-%d", &kn)
		if !bytes.Equal(r.Value, value(kn, 99)) {
			t.Fatalf("key %s: value %q", k, r.Value)
		}
	}
	// Kept: the latest per key, plus the last entry of each sealed segment and
	// the segment still being written.
	if total > 1000+200+2000 {
		t.Fatalf("%d records left after compaction", total)
	}
	t.Logf("100,000 records + 1 tombstone: %d bytes before, %d after, %d records left", before.Bytes, after.Bytes, total)
}

// TestRetentionBytesWhileWriting100MiB: retention.bytes 10 MiB holds while
// 100 MiB is written (retention run after every MiB, as the background loop does).
func TestRetentionBytesWhileWriting100MiB(t *testing.T) {
	const seg = 1 << 20
	b := openB(t, t.TempDir(), func(o *Options) { o.SegmentBytes = seg })
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic("telemetry", 1, TopicConfig{RetentionBytes: 10 << 20})
	recs := make([]Record, 1024)
	for i := range recs {
		recs[i].Value = make([]byte, 1000)
	}
	maxSeen := int64(0)
	for written := 0; written < 100<<20; written += 1024 * 1024 {
		if _, err := b.Produce(ctx, "telemetry", 0, recs, AcksLeader); err != nil {
			t.Fatal(err)
		}
		b.ApplyRetention(time.Now())
		info, _ := b.PartitionInfo("telemetry", 0)
		maxSeen = max(maxSeen, info.Bytes)
	}
	info, _ := b.PartitionInfo("telemetry", 0)
	if maxSeen > 10<<20+seg+64<<10 || info.Bytes < 9<<20 || info.LogStartOffset == 0 {
		t.Fatalf("max size %d, final %+v", maxSeen, info)
	}
	t.Logf("100 MiB written: partition at most %d bytes (limit 10 MiB + one 1 MiB segment), log start offset %d", maxSeen, info.LogStartOffset)
}

func TestRecordTooLarge(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	b.CreateTopic("t", 1, TopicConfig{MaxMessageBytes: 1000})
	if _, err := b.Produce(context.Background(), "t", 0, []Record{{Value: make([]byte, 1001)}}, AcksAll); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("want ErrRecordTooLarge, got %v", err)
	}
	if _, err := b.Produce(context.Background(), "t", 0, []Record{{Value: make([]byte, 1000)}}, AcksAll); err != nil {
		t.Fatal(err)
	}
}

// TestCompactionWaitsForDirtyRatio: after a compaction, a compacted partition
// is compacted again only once min.cleanable.dirty.ratio of its sealed log is
// new, as in Kafka, not for every newly sealed segment.
func TestCompactionWaitsForDirtyRatio(t *testing.T) {
	b := openB(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 256 << 10 })
	defer b.Close()
	ctx := context.Background()
	if _, err := b.CreateTopic("state", 1, TopicConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	produce := func(keys, from int) {
		recs := make([]Record, keys)
		for k := range recs {
			recs[k] = Record{Key: fmt.Appendf(nil, "device-%d", from+k), Value: bytes.Repeat([]byte("v"), 60)}
		}
		if _, err := b.Produce(ctx, "state", 0, recs, AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	// A large clean part: 20,000 distinct keys, then a first compaction.
	for i := 0; i < 20; i++ {
		produce(1000, i*1000)
	}
	b.CompactTopics(time.Now())
	sealedOf := func() (n int) {
		_, p, err := b.partition("state", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.log.Segments() {
			if s.Sealed {
				n++
			}
		}
		return n
	}
	// Rewrite the first 1,000 keys until at least one new segment is sealed:
	// far less than half of the sealed log is new.
	before := sealedOf()
	for sealedOf() == before {
		produce(1000, 0)
	}
	info0, _ := b.PartitionInfo("state", 0)
	b.CompactTopics(time.Now())
	info1, _ := b.PartitionInfo("state", 0)
	if info1.Bytes != info0.Bytes {
		t.Fatalf("compacted with little new data: %d bytes became %d", info0.Bytes, info1.Bytes)
	}
	// A lower ratio set on the topic lets the same data be compacted.
	if err := b.SetTopicOverrides("state", map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}); err != nil {
		t.Fatal(err)
	}
	b.CompactTopics(time.Now())
	info2, _ := b.PartitionInfo("state", 0)
	if info2.Bytes >= info1.Bytes {
		t.Fatalf("min.cleanable.dirty.ratio 0.01: not compacted (%d bytes, %d before)", info2.Bytes, info1.Bytes)
	}
}
