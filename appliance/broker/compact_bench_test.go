package broker

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkCompaction compacts a partition of 100,000 records of 100 B over
// 1,000 keys in batches of 500 (1 MiB segments), as the cleanup series of
// make bench writes them: the scan for each key's latest offset and the
// rewrite of every sealed segment. Each iteration compacts a fresh copy.
func BenchmarkCompaction(b *testing.B) {
	const records, keys, batch = 100_000, 1000, 500
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		br := openB(b, b.TempDir(), func(o *Options) { o.SegmentBytes = 1 << 20 })
		if _, err := br.CreateTopic("c", 1, TopicConfig{CleanupPolicy: "compact"}); err != nil {
			b.Fatal(err)
		}
		val := make([]byte, 90)
		for i := 0; i < records; i += batch {
			recs := make([]Record, batch)
			for j := range recs {
				recs[j] = Record{Key: fmt.Appendf(nil, "key-%04d", (i+j)%keys), Value: val}
			}
			if _, err := br.ProduceBatches(ctx, "c", 0, recs, AcksLeader); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		br.CompactTopics(time.Now())
		b.StopTimer()
		br.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
