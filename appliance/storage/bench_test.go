package storage

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/wal"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// The raw limits: what the disk and tidwall/wal can do with no katka on top, so
// every katka figure can be read as a ratio to its limit (see README.md).

// BenchmarkRawFileAppendFdatasync appends batch records of size bytes to a
// plain file and fdatasyncs after each batch.
func BenchmarkRawFileAppendFdatasync(b *testing.B) {
	for _, size := range []int{100, 1024} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				buf := make([]byte, size*batch)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i += batch {
					if _, err := f.Write(buf); err != nil {
						b.Fatal(err)
					}
					if err := fdatasync(f); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkRawWALBatch writes batch entries to tidwall/wal with WriteBatch and
// one Sync per batch, with no checksums or framing of ours.
func BenchmarkRawWALBatch(b *testing.B) {
	for _, size := range []int{100, 1024} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				w, err := wal.Open(b.TempDir(), &wal.Options{NoSync: true, SegmentSize: DefaultSegmentBytes, NoCopy: true, AllowEmpty: true})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				data := make([]byte, size)
				var wb wal.Batch
				idx := uint64(1)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i += batch {
					wb.Clear()
					for j := 0; j < batch; j++ {
						wb.Write(idx, data)
						idx++
					}
					if err := w.WriteBatch(&wb); err != nil {
						b.Fatal(err)
					}
					if err := w.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkLogAppendSync is katka's log doing the same work: CRC-32C, offsets,
// framing, roll tracking, and a group-commit fsync per batch.
func BenchmarkLogAppendSync(b *testing.B) {
	for _, size := range []int{100, 1024} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				l, _, err := Open(b.TempDir(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				recs := make([]Record, batch)
				for i := range recs {
					recs[i].Value = make([]byte, size)
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i += batch {
					base, err := l.Append(recs)
					if err != nil {
						b.Fatal(err)
					}
					if err := l.SyncTo(base + int64(batch)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkLogRead reads a log of 1 KiB records sequentially in 1 MiB reads.
func BenchmarkLogRead(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			l, _, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			recs := make([]Record, 1000)
			for i := range recs {
				recs[i].Value = make([]byte, size)
			}
			n := (64 << 20) / size
			for l.EndOffset() < int64(n) {
				if _, err := l.Append(recs); err != nil {
					b.Fatal(err)
				}
			}
			l.SyncTo(l.EndOffset())
			end := l.EndOffset()
			b.SetBytes(int64(size))
			b.ResetTimer()
			off := int64(0)
			for i := 0; i < b.N; {
				if off >= end {
					off = 0
				}
				got, err := l.Read(off, end, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				off += int64(len(got))
				i += len(got)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkReadBatchesVsRead reads the same 64 MiB log (records appended in
// batches of 16 KiB, the way producers send them) sequentially in 1 MiB
// fetches: Read decodes every record into a copy, ReadBatches hands the
// stored batch bytes over as they are (what Fetch serves). Records/s.
func BenchmarkReadBatchesVsRead(b *testing.B) {
	for _, size := range []int{100, 1024} {
		dir := b.TempDir()
		l, _, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		n := (64 << 20) / size
		per := (16 << 10) / size
		for off := 0; off < n; off += per {
			if _, _, err := l.AppendBatches([][]byte{producedBatch(b, recordbatch.CodecNone, off, per, size, -1, -1)}); err != nil {
				b.Fatal(err)
			}
		}
		l.SyncTo(l.EndOffset())
		end := l.EndOffset()
		for _, mode := range []string{"Read", "ReadBatches"} {
			b.Run(fmt.Sprintf("size=%d/%s", size, mode), func(b *testing.B) {
				b.SetBytes(int64(size))
				off := int64(0)
				for i := 0; i < b.N; {
					if off >= end {
						off = 0
					}
					if mode == "Read" {
						got, err := l.Read(off, end, 1<<20)
						if err != nil {
							b.Fatal(err)
						}
						off += int64(len(got))
						i += len(got)
					} else {
						_, next, err := l.ReadBatches(off, end, 1<<20)
						if err != nil {
							b.Fatal(err)
						}
						i += int(next - off)
						off = next
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
		l.Close()
	}
}

// BenchmarkTailRead fetches from the tail segment the way consumers do:
// "follow" reads the newest 16 batches (a consumer at the end of the log),
// "random" reads 64 KiB from a random offset of the tail (a consumer a
// little behind, after a seek). The tail holds half a segment of one-record
// batches of 100 B (about 2,700 entries), which tidwall/wal reads back from
// the file: it keeps one entry position per 16 entries, not one per entry,
// so a read may step over entry heads first (README.md, "Memory per
// partition"). Fetches/s.
func BenchmarkTailRead(b *testing.B) {
	l, _, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := testProducedBatch(b, 120)
	for written := 0; written < DefaultSegmentBytes/2; written += len(batch) {
		if _, _, err := l.AppendBatches([][]byte{batch}); err != nil {
			b.Fatal(err)
		}
	}
	end := l.EndOffset()
	b.Run("follow", func(b *testing.B) {
		for b.Loop() {
			bp, err := l.ReadBatchParts(end-16, end, 1<<20)
			if err != nil || len(bp.Parts) != 16 {
				b.Fatalf("%d batches, %v", len(bp.Parts), err)
			}
			bp.Release()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fetches/s")
	})
	b.Run("random", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			bp, err := l.ReadBatchParts(rng.Int64N(end), end, 64<<10)
			if err != nil || len(bp.Parts) == 0 {
				b.Fatalf("%d batches, %v", len(bp.Parts), err)
			}
			bp.Release()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fetches/s")
	})
}
