package storage

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// readSyscalls returns this process's read system calls so far (pread
// included), from /proc/self/io.
func readSyscalls(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "syscr: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no syscr in /proc/self/io")
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
	before := readSyscalls(t)
	parts, err := l.ReadBatchParts(0, n, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	reads := readSyscalls(t) - before
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
