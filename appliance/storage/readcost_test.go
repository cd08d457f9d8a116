package storage

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// procIO returns a counter of this process's I/O from /proc/self/io: syscr
// (read system calls, pread included) or rchar (bytes read by them, page
// cache included).
func procIO(t *testing.T, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/io", field)
	return 0
}

// A read of many small entries of the tail segment reads the file once per
// run of entries, not once per entry, and returns every entry in order, from
// any offset and for any limit.
func TestTailReadOneReadPerRun(t *testing.T) {
	l := openT(t, t.TempDir(), 64<<20)
	defer l.Close()
	const n = 600
	for i := range n {
		if _, err := l.Append([]Record{rec(i, 40+i%50)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SyncTo(n); err != nil {
		t.Fatal(err)
	}
	if segs := l.Segments(); len(segs) != 1 {
		t.Fatalf("%d segments, want the tail alone", len(segs))
	}
	before := procIO(t, "syscr")
	parts, err := l.ReadBatchParts(0, n, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	reads := procIO(t, "syscr") - before
	if got := parts.Next; got != n {
		t.Fatalf("read up to offset %d, want %d", got, n)
	}
	parts.Release()
	if reads > 10 {
		t.Fatalf("reading %d tail entries took %d read system calls, want a few", n, reads)
	}
	for _, from := range []int64{0, 1, 17, 299, 598, 599} {
		for _, max := range []int{1, 500, 4000, 1 << 20} {
			got, err := l.Read(from, n, max)
			if err != nil {
				t.Fatalf("Read(%d, max %d): %v", from, max, err)
			}
			if len(got) == 0 {
				t.Fatalf("Read(%d, max %d): nothing", from, max)
			}
			for i, r := range got {
				want := rec(int(from)+i, 40+(int(from)+i)%50)
				if r.Offset != from+int64(i) || !bytes.Equal(r.Value, want.Value) {
					t.Fatalf("Read(%d, max %d): record %d has offset %d, value %.20q", from, max, i, r.Offset, r.Value)
				}
			}
			if max >= 1<<20 && len(got) != n-int(from) {
				t.Fatalf("Read(%d, max %d): %d records, want %d", from, max, len(got), n-int(from))
			}
		}
	}
}

// BenchmarkTailReadSmallEntries: a consumer catching up through a 1 MiB tail
// segment of one-record entries (a producer sending each 100 B record alone),
// 1 MiB per read.
func BenchmarkTailReadSmallEntries(b *testing.B) {
	l, _, err := Open(b.TempDir(), Options{SegmentBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const n = 7000
	for i := range n {
		if _, err := l.Append([]Record{rec(i, 100)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.SyncTo(n); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for off := int64(0); off < n; {
			parts, err := l.ReadBatchParts(off, n, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			off = parts.Next
			parts.Release()
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// Indexing a segment of ~1 MiB entries steps over each entry by position
// instead of reading it (it read the whole file), and finds the same points
// as indexing its bytes in memory.
func TestIndexFileSkipsLargeEntries(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<20)
	for i := range 16 { // 16 batches of 1,000 records of 1,000 B, as a producer sends them
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, i*1000, 1000, 1000, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SyncTo(16000); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segmentName(1))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := indexBytes(raw, 0)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := procIO(t, "rchar")
	got := indexFile(bufio.NewReaderSize(nil, 256<<10), f, int64(len(raw)), 0)
	read := procIO(t, "rchar") - before
	if !reflect.DeepEqual(got.pts, want.pts) {
		t.Fatalf("index points %v, want %v", got.pts, want.pts)
	}
	if len(got.pts) != 16 {
		t.Fatalf("%d index points, want 16 (one per entry)", len(got.pts))
	}
	t.Logf("indexing %d bytes of 1 MiB entries read %d bytes", len(raw), read)
	if read > int64(len(raw))/3 {
		t.Fatalf("indexing %d bytes of 1 MiB entries read %d bytes", len(raw), read)
	}
}
