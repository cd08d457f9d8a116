package storage

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppendLatencyDuringRead measures a producer's Append+SyncTo latency
// on one partition (one 100 B record per call, fsync each) with no reader, and
// with a consumer reading 50 MiB of sealed segments of the same partition in a
// loop (one Read call of 50 MiB at a time). p50/p99/max are reported per op: a
// read that held the partition mutex across its disk I/O shows up in p99/max.
// append-p99-us is Append alone (no fsync): the part a held mutex would delay.
func BenchmarkAppendLatencyDuringRead(b *testing.B) {
	const readBytes = 50 << 20
	l, _, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := make([]Record, 1000)
	for i := range batch {
		batch[i].Value = make([]byte, 1024)
	}
	for l.Size() < readBytes+4<<20 {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.SyncTo(l.EndOffset()); err != nil {
		b.Fatal(err)
	}
	sealedEnd := l.EndOffset() - 2000 // well inside the sealed segments

	for _, reader := range []bool{false, true} {
		name := "reader=none"
		if reader {
			name = "reader=50MiB"
		}
		b.Run(name, func(b *testing.B) {
			var stop atomic.Bool
			var reads atomic.Int64
			var wg sync.WaitGroup
			if reader {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						recs, err := l.Read(0, sealedEnd, readBytes)
						if err != nil {
							b.Error(err)
							return
						}
						if len(recs) == 0 {
							b.Error("empty read")
							return
						}
						reads.Add(1)
					}
				}()
			}
			one := []Record{{Value: make([]byte, 100)}}
			lat := make([]time.Duration, 0, b.N)
			alat := make([]time.Duration, 0, b.N) // Append alone: the part under the partition mutex
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				base, err := l.Append(one)
				if err != nil {
					b.Fatal(err)
				}
				alat = append(alat, time.Since(t0))
				if err := l.SyncTo(base + 1); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			slices.Sort(lat)
			slices.Sort(alat)
			q := func(d []time.Duration, p float64) float64 { return float64(d[int(float64(len(d)-1)*p)].Microseconds()) }
			b.ReportMetric(q(lat, 0.5), "p50-us")
			b.ReportMetric(q(lat, 0.99), "p99-us")
			b.ReportMetric(q(lat, 1), "max-us")
			b.ReportMetric(q(alat, 0.99), "append-p99-us")
			if reader {
				b.ReportMetric(float64(reads.Load()), "50MiB-reads")
			}
		})
	}
}
