package storage

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkActivePartitionMemory writes to 256 partition logs the way a
// producer spread over many partitions does (record batches of 100 B
// records as a Kafka client sends them: one record per batch, as a keyed
// producer over many partitions or a writer of one message per call makes
// them, up to 1 MiB; half a segment each, so every tail segment is half
// full; not fsynced, which changes nothing in memory) and reports the heap
// each log keeps afterwards: memory per active partition (README.md,
// "Memory per partition").
func BenchmarkActivePartitionMemory(b *testing.B) {
	const logs = 256
	for _, batchBytes := range []int{120, 1 << 10, 16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("batch=%dB", batchBytes), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				batch := testProducedBatch(b, batchBytes)
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				ls := make([]*Log, logs)
				for p := range ls {
					l, _, err := Open(fmt.Sprintf("%s/%d", dir, p), Options{})
					if err != nil {
						b.Fatal(err)
					}
					ls[p] = l
					for written := 0; written < DefaultSegmentBytes/2; written += len(batch) {
						if _, _, err := l.AppendBatches([][]byte{batch}); err != nil {
							b.Fatal(err)
						}
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/logs, "heap-bytes/partition")
				for _, l := range ls {
					l.Close()
				}
			}
		})
	}
}

// testProducedBatch returns an uncompressed record batch of 100 B records
// about size bytes long, as a Kafka producer would send it.
func testProducedBatch(tb testing.TB, size int) []byte {
	tb.Helper()
	recs := make([]Record, max(1, size/120))
	for i := range recs {
		recs[i].Value = make([]byte, 100)
		recs[i].Offset = int64(i)
	}
	return encodeBatch(nil, recs, nil, BatchFormat{})
}
