package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// BenchmarkForwardedProduce: writers on node 1 of an in-process 3-node cell
// (127.0.0.1, mutual TLS) produce 100-byte records with acks=all to a
// partition node 2 leads, through node 1's broker API: the forward stream's
// cost over a local write (fsync always on both).
func BenchmarkForwardedProduce(b *testing.B) {
	for _, writers := range []int{1, 8} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("writers=%d/batch=%d", writers, batch), func(b *testing.B) {
				tc := startTestCell(b, 3, nil)
				ctx := context.Background()
				if err := tc.nodes[0].CreateTopic(ctx, "bench", 3, 1); err != nil {
					b.Fatal(err)
				}
				var p int32 = -1
				waitFor(b, 10*time.Second, "the topic on node 1 and 2", func() bool {
					md := tc.nodes[0].Metadata()
					for i, pi := range md.Topics["bench"].Partitions {
						if pi.Leader == 2 {
							p = int32(i)
						}
					}
					_, e1 := tc.brokers[0].Topic("bench")
					_, e2 := tc.brokers[1].Topic("bench")
					return p >= 0 && e1 == nil && e2 == nil
				})
				var next atomic.Int64
				b.SetBytes(100)
				b.ResetTimer()
				var wg sync.WaitGroup
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						recs := make([]broker.Record, batch)
						for i := range recs {
							recs[i].Value = make([]byte, 100)
						}
						for next.Add(int64(batch)) <= int64(b.N)+int64(batch)-1 {
							if _, err := tc.brokers[0].ProduceBatches(ctx, "bench", p, recs, broker.AcksAll); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
