package broker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkProduce measures Produce with acks=all on one partition: producers
// concurrent callers, each call carrying batch records. With fsync always,
// concurrent producers share fsyncs (group commit); the fsyncs/op metric shows
// how many records one fsync covered.
func BenchmarkProduce(b *testing.B) {
	for _, mode := range []FsyncMode{FsyncAlways, FsyncInterval} {
		for _, size := range []int{100, 1024} {
			for _, producers := range []int{1, 4, 16} {
				for _, batch := range []int{1, 16, 100} {
					name := fmt.Sprintf("fsync=%s/size=%d/producers=%d/batch=%d", mode, size, producers, batch)
					b.Run(name, func(b *testing.B) { benchProduce(b, mode, size, producers, batch) })
				}
			}
		}
	}
}

func benchProduce(b *testing.B, mode FsyncMode, size, producers, batch int) {
	m := NewMetrics(nil)
	var fsyncs atomic.Int64
	br, err := Open(Options{DataDir: b.TempDir(), Fsync: mode, FsyncInterval: 100 * time.Millisecond, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	if _, err := br.CreateTopic("bench", 1, TopicConfig{}); err != nil {
		b.Fatal(err)
	}
	before := fsyncCount(m)
	var next atomic.Int64
	b.SetBytes(int64(size))
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < producers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]Record, batch)
			for i := range recs {
				recs[i].Value = make([]byte, size)
			}
			for next.Add(int64(batch)) <= int64(b.N)+int64(batch)-1 {
				if _, err := br.Produce(context.Background(), "bench", 0, recs, AcksAll); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	fsyncs.Store(fsyncCount(m) - before)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if f := fsyncs.Load(); f > 0 {
		b.ReportMetric(float64(b.N)/float64(f), "records/fsync")
	}
}

func fsyncCount(m *Metrics) int64 { return int64(histCount(m.fsyncH)) }

// BenchmarkFetch reads one partition of 1 KiB records from start to end with
// 1 MiB fetches, as a catching-up consumer does.
func BenchmarkFetch(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			br, err := Open(Options{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			br.CreateTopic("bench", 1, TopicConfig{})
			recs := make([]Record, 1000)
			for i := range recs {
				recs[i].Value = make([]byte, size)
			}
			n := (64 << 20) / size
			for i := 0; i < n; i += len(recs) {
				if _, err := br.Produce(context.Background(), "bench", 0, recs, AcksLeader); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			off := int64(0)
			for i := 0; i < b.N; {
				res, err := br.Fetch(context.Background(), "bench", 0, off, 1<<20, 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Records) == 0 {
					off = 0
					continue
				}
				off += int64(len(res.Records))
				i += len(res.Records)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkIdlePartitionMemory opens topics with 100 partitions holding a few
// records each and reports the heap they keep per partition once idle.
func BenchmarkIdlePartitionMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		br, err := Open(Options{DataDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		br.CreateTopic("idle", 100, TopicConfig{})
		for p := int32(0); p < 100; p++ {
			br.Produce(context.Background(), "idle", p, []Record{{Value: make([]byte, 100)}, {Value: make([]byte, 100)}}, AcksLeader)
		}
		br.Close()
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		br, err = Open(Options{DataDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/100, "heap-bytes/partition")
		br.Close()
	}
}
