package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

func fetchReq(topic string, offsets map[int32]int64, maxWait, minBytes, maxBytes, partMax int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWait, minBytes, maxBytes
	req.SessionEpoch = -1
	rt := kmsg.FetchRequestTopic{Topic: topic}
	for p := int32(0); p < int32(len(offsets)); p++ {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offsets[p], partMax
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.FetchRequestTopic{rt}
	return req
}

// produceN writes n records of size bytes to a partition; it fails the test,
// so call it from the test's goroutine only (others use produceNErr).
func produceN(t *testing.T, b *broker.Broker, topic string, p int32, n, size int) {
	t.Helper()
	if err := produceNErr(b, topic, p, n, size); err != nil {
		t.Fatal(err)
	}
}

// produceNErr is produceN for other goroutines: it returns the error.
func produceNErr(b *broker.Broker, topic string, p int32, n, size int) error {
	recs := make([]broker.Record, n)
	for i := range recs {
		recs[i] = broker.Record{Value: make([]byte, size)}
	}
	if _, err := b.Produce(context.Background(), topic, p, recs, broker.AcksAll); err != nil {
		return fmt.Errorf("produce %d records to %s-%d: %w", n, topic, p, err)
	}
	return nil
}

func TestFetchLongPollWakesOnProduce(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("poll", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	// Nothing there yet: the fetch waits, then wakes when partition 2 gets data.
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		errc <- produceNErr(e.b, "poll", 2, 1, 10)
	}()
	resp := r.roundTrip(fetchReq("poll", map[int32]int64{0: 0, 1: 0, 2: 0}, 10000, 1, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	took := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("long poll returned after %v", took)
	}
	if p := resp.Topics[0].Partitions[2]; len(p.RecordBatches) == 0 || p.HighWatermark != 1 || p.LastStableOffset != 1 {
		t.Fatalf("partition 2: %+v", p)
	}
	if resp.SessionID != 0 {
		t.Fatalf("session id %d, want 0 (sessions declined)", resp.SessionID)
	}
	// MaxWait elapses with nothing new.
	start = time.Now()
	resp = r.roundTrip(fetchReq("poll", map[int32]int64{0: 0, 1: 0, 2: 1}, 200, 1, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if took := time.Since(start); took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("empty fetch returned after %v", took)
	}
	// MinBytes larger than what arrives: keeps waiting past the first append.
	start = time.Now()
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := produceNErr(e.b, "poll", 0, 1, 10); err != nil {
			errc <- err
			return
		}
		time.Sleep(200 * time.Millisecond)
		errc <- produceNErr(e.b, "poll", 1, 10, 1000)
	}()
	resp = r.roundTrip(fetchReq("poll", map[int32]int64{0: 0, 1: 0, 2: 1}, 5000, 5000, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("min bytes fetch returned after %v", took)
	}
	if len(resp.Topics[0].Partitions[0].RecordBatches) == 0 || len(resp.Topics[0].Partitions[1].RecordBatches) < 10000 {
		t.Fatal("min bytes fetch is missing data")
	}
}

func TestFetchLimitsAndErrors(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("lim", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	// One record per batch: stored batches are served whole, so the limits
	// hold at batch granularity.
	for range 100 {
		produceN(t, e.b, "lim", 0, 1, 1000)
		produceN(t, e.b, "lim", 1, 1, 1000)
	}
	r := e.raw(t)
	// Per-partition limit.
	resp := r.roundTrip(fetchReq("lim", map[int32]int64{0: 0, 1: 0}, 0, 0, 1<<20, 10_000), 12).(*kmsg.FetchResponse)
	for _, p := range resp.Topics[0].Partitions {
		if n := len(p.RecordBatches); n < 5000 || n > 12_000 {
			t.Fatalf("partition %d: %d bytes for a 10000 byte partition limit", p.Partition, n)
		}
	}
	// Response limit: the first partition fills it, the second gets nothing.
	resp = r.roundTrip(fetchReq("lim", map[int32]int64{0: 0, 1: 0}, 0, 0, 20_000, 1<<20), 12).(*kmsg.FetchResponse)
	if n0, n1 := len(resp.Topics[0].Partitions[0].RecordBatches), len(resp.Topics[0].Partitions[1].RecordBatches); n0 < 15_000 || n0 > 22_000 || n1 != 0 {
		t.Fatalf("response limit 20000: partitions got %d and %d bytes", n0, n1)
	}
	if hw := resp.Topics[0].Partitions[1].HighWatermark; hw != 100 {
		t.Fatalf("skipped partition high watermark %d", hw)
	}
	// A record larger than every limit still comes back, so consumers never stall.
	resp = r.roundTrip(fetchReq("lim", map[int32]int64{0: 0}, 0, 0, 10, 10), 12).(*kmsg.FetchResponse)
	if len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
		t.Fatal("oversized first record not returned")
	}
	// A batch (16 KiB of 2 KB records) larger than the partition limit: whole for the first partition
	// with records, not at all for a later one (Kafka sends it a partial
	// batch the client drops).
	if _, err := e.b.CreateTopic("big", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "big", 0, 10, 2000)
	produceN(t, e.b, "big", 1, 10, 2000)
	resp = r.roundTrip(fetchReq("big", map[int32]int64{0: 0, 1: 0}, 0, 0, 1<<20, 10_000), 12).(*kmsg.FetchResponse)
	if n0, n1 := len(resp.Topics[0].Partitions[0].RecordBatches), len(resp.Topics[0].Partitions[1].RecordBatches); n0 <= 10_000 || n1 != 0 {
		t.Fatalf("16 KB batches under a 10000 byte partition limit: partitions got %d and %d bytes", n0, n1)
	}
	// Offset out of range, unknown partition and topic.
	resp = r.roundTrip(fetchReq("lim", map[int32]int64{0: 101, 1: 5}, 0, 0, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != errOffsetOutOfRange || p.HighWatermark != 100 || p.LogStartOffset != 0 {
		t.Fatalf("offset 101: %+v", p)
	}
	if p := resp.Topics[0].Partitions[1]; p.ErrorCode != 0 {
		t.Fatalf("offset 5 next to an error: %+v", p)
	}
	resp = r.roundTrip(fetchReq("nope", map[int32]int64{0: 0}, 1000, 1, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != errUnknownTopicOrPartition {
		t.Fatalf("unknown topic: %+v", p)
	}
	// Incremental fetch for a session we never created.
	req := fetchReq("lim", map[int32]int64{0: 0}, 0, 0, 1<<20, 1<<20)
	req.SessionID, req.SessionEpoch = 12345, 1
	if resp := r.roundTrip(req, 12).(*kmsg.FetchResponse); resp.ErrorCode != errFetchSessionIDNotFound {
		t.Fatalf("unknown session: error %d", resp.ErrorCode)
	}
	// read_committed: the last stable offset is the high watermark.
	req = fetchReq("lim", map[int32]int64{0: 90}, 0, 0, 1<<20, 1<<20)
	req.IsolationLevel = 1
	resp = r.roundTrip(req, 12).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.LastStableOffset != 100 || p.AbortedTransactions == nil {
		t.Fatalf("read_committed: %+v", p)
	}
}

func TestFetchByTopicID(t *testing.T) {
	e := newEnv(t)
	info, err := e.b.CreateTopic("byid", 1, broker.TopicConfig{})
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "byid", 0, 3, 10)
	r := e.raw(t)
	req := fetchReq("", map[int32]int64{0: 0}, 0, 0, 1<<20, 1<<20)
	req.Topics[0].TopicID = info.ID
	resp := r.roundTrip(req, 16).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || resp.Topics[0].TopicID != info.ID || len(p.RecordBatches) == 0 {
		t.Fatalf("fetch by id: %+v", resp.Topics[0])
	}
	req.Topics[0].TopicID = [16]byte{1}
	resp = r.roundTrip(req, 16).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != errUnknownTopicID {
		t.Fatalf("unknown id: error %d", p.ErrorCode)
	}
}

func TestListOffsets(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("lo", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	base := time.UnixMilli(1_700_000_000_000)
	recs := make([]broker.Record, 10)
	for i := range recs {
		recs[i] = broker.Record{Value: []byte("x"), Timestamp: base.Add(time.Duration(i) * time.Second)}
	}
	if _, err := e.b.Produce(context.Background(), "lo", 0, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	for _, c := range []struct {
		ts       int64
		off, got int64
	}{
		{listEarliest, 0, -1},
		{listLatest, 10, -1},
		{base.UnixMilli(), 0, base.UnixMilli()},
		{base.Add(3500 * time.Millisecond).UnixMilli(), 4, base.Add(4 * time.Second).UnixMilli()},
		{base.Add(time.Hour).UnixMilli(), -1, -1},
	} {
		for _, v := range []int16{1, 4, 6} {
			req := kmsg.NewPtrListOffsetsRequest()
			req.ReplicaID = -1
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = 0, c.ts
			req.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "lo", Partitions: []kmsg.ListOffsetsRequestTopicPartition{rp}}}
			resp := r.roundTrip(req, v).(*kmsg.ListOffsetsResponse)
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || p.Offset != c.off || p.Timestamp != c.got {
				t.Fatalf("v%d timestamp %d: %+v, want offset %d timestamp %d", v, c.ts, p, c.off, c.got)
			}
		}
	}
	// kgo's consume-from-time path uses the same request.
	cl := e.client(t, kgo.ConsumeTopics("lo"), kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(base.Add(7*time.Second).UnixMilli())))
	fs := cl.PollFetches(ctxT(t))
	if recs := fs.Records(); len(recs) == 0 || recs[0].Offset != 7 {
		t.Fatalf("consume from time: %v", fmt.Sprint(len(recs)))
	}
}
