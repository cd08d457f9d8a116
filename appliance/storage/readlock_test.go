package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// deadlockGuard only turns a hang into a named failure; no test here asserts a
// duration. Every wait below is on an event.
const deadlockGuard = 2 * time.Minute

// blockFirstSealedRead makes the first sealed-segment read stop inside Read,
// after the segment is pinned and before its file is opened and read. It
// returns a channel that receives the segment's path when the read is there and
// a func that lets the read go on.
func blockFirstSealedRead(t *testing.T) (entered <-chan string, release func()) {
	t.Helper()
	in := make(chan string, 1)
	gate := make(chan struct{})
	var first atomic.Bool
	sealedReadHook = func(path string) {
		if first.CompareAndSwap(false, true) {
			in <- path
			<-gate
		}
	}
	var released atomic.Bool
	release = func() {
		if released.CompareAndSwap(false, true) {
			close(gate)
		}
	}
	t.Cleanup(func() {
		release()
		sealedReadHook = nil
	})
	return in, release
}

type readResult struct {
	recs []Record
	err  error
}

// startRead runs l.Read in its own goroutine and waits until it is blocked at the
// hook inside its first sealed-segment read.
func startRead(t *testing.T, l *Log, entered <-chan string, from, to int64, maxBytes int) (string, <-chan readResult) {
	t.Helper()
	res := make(chan readResult, 1)
	go func() {
		recs, err := l.Read(from, to, maxBytes)
		res <- readResult{recs, err}
	}()
	select {
	case path := <-entered:
		return path, res
	case r := <-res:
		t.Fatalf("read finished (%d records, %v) without reading a sealed segment", len(r.recs), r.err)
	case <-time.After(deadlockGuard):
		t.Fatal("read never reached a sealed segment")
	}
	return "", nil
}

// wantRecords checks that got holds the records rec(i, size) for consecutive
// offsets from..to-1, skipping offsets skip reports true for.
func wantRecords(t *testing.T, got []Record, from, to int64, size int, skip func(off int64) bool) {
	t.Helper()
	i := 0
	for off := from; off < to; off++ {
		if skip != nil && skip(off) {
			continue
		}
		if i >= len(got) {
			t.Fatalf("got %d records, missing offset %d (want %d..%d)", len(got), off, from, to)
		}
		r, want := got[i], rec(int(off), size)
		if r.Offset != off || !bytes.Equal(r.Value, want.Value) || !bytes.Equal(r.Key, want.Key) || !r.Timestamp.Equal(want.Timestamp) {
			t.Fatalf("record %d: offset %d (want %d), value %.20q", i, r.Offset, off, r.Value)
		}
		i++
	}
	if i != len(got) {
		t.Fatalf("got %d records, want %d (offsets %d..%d)", len(got), i, from, to)
	}
}

// A consumer reading a large range of sealed segments must not stall the
// producers of its partition: while the read is stopped inside its disk read,
// a producer's Append and SyncTo on the same partition complete.
func TestReadOfSealedSegmentsDoesNotBlockProducers(t *testing.T) {
	l := openT(t, t.TempDir(), 64<<10)
	t.Cleanup(func() { l.Close() }) // after the hook's cleanup has let a blocked read go
	const n, size = 4000, 1024      // 4 MiB in about 64 sealed segments
	appendN(t, l, 0, n, size)
	entered, release := blockFirstSealedRead(t)
	_, res := startRead(t, l, entered, 0, n, 50<<20)

	done := make(chan error, 1)
	go func() {
		base, err := l.Append([]Record{rec(n, size)})
		if err == nil {
			err = l.SyncTo(base + 1)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("append during read: %v", err)
		}
	case r := <-res:
		t.Fatalf("read finished (%d records, %v) while held at the hook", len(r.recs), r.err)
	case <-time.After(deadlockGuard):
		t.Fatal("producer's Append+SyncTo blocked behind a reader stopped inside its disk read: Read holds the partition mutex across I/O")
	}
	if got := l.DurableOffset(); got != n+1 {
		t.Fatalf("durable offset %d after the append, want %d", got, n+1)
	}
	release()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantRecords(t, r.recs, 0, n, size, nil) // every entry CRC-checked, in order, none of the new one
	got, err := l.Read(n, n+1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, n, n+1, size, nil)
}

// Retention that removes the segment a reader has pinned, before the reader
// opened its file, must not break the read: the segment's records come back
// whole, and the read stops at the new log start instead of failing.
func TestRetentionDuringSealedReadKeepsReaderWhole(t *testing.T) {
	l := openT(t, t.TempDir(), 64<<10)
	t.Cleanup(func() { l.Close() }) // after the hook's cleanup has let a blocked read go
	const n, size = 1000, 1024
	appendN(t, l, 0, n, size)
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("only %d segments", len(segs))
	}
	entered, release := blockFirstSealedRead(t)
	path, res := startRead(t, l, entered, 0, n, 50<<20)

	if err := l.TruncateFront(segs[3].BaseOffset); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("retention left the pinned segment %s on disk (%v): the test would prove nothing", path, err)
	}
	release()
	r := <-res
	if r.err != nil {
		t.Fatalf("read across retention: %v", r.err)
	}
	wantRecords(t, r.recs, 0, segs[1].BaseOffset, size, nil)
	if _, err := l.Read(0, n, 1<<20); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read below the new start: %v, want ErrOutOfRange", err)
	}
	checkAll(t, l, int(segs[3].BaseOffset), n, size)
}

// Compaction rewrites a sealed segment by rename while a reader has it pinned,
// and after a read left a position hint in it: every read still returns exactly
// the right records.
func TestCompactionDuringSealedReadAndStaleHint(t *testing.T) {
	l := openT(t, t.TempDir(), 64<<10)
	t.Cleanup(func() { l.Close() }) // after the hook's cleanup has let a blocked read go
	const n, size = 1000, 1024
	appendN(t, l, 0, n, size)
	segs := l.Segments()
	seg1End := segs[1].BaseOffset

	// A small read stops inside segment 0 and leaves a hint there.
	part, err := l.Read(0, n, 10*size)
	if err != nil {
		t.Fatal(err)
	}
	mid := int64(len(part))
	if mid == 0 || mid >= seg1End {
		t.Fatalf("first read returned %d records, segment 0 ends at %d", mid, seg1End)
	}

	entered, release := blockFirstSealedRead(t)
	_, res := startRead(t, l, entered, mid, n, 50<<20)
	// Keep even offsets (batches are rewritten in place with their kept records).
	removed, _, err := l.Compact(func(r *Record) bool { return r.Offset%2 == 0 })
	if err != nil || removed == 0 {
		t.Fatalf("compact: removed %d, %v", removed, err)
	}
	release()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	sealedEnd := segs[len(segs)-1].BaseOffset
	gone := func(off int64) bool { return off < sealedEnd && off%2 == 1 }
	// The blocked reader opened its file after the rename: it sees compacted data.
	wantRecords(t, r.recs, mid, n, size, gone)
	// The hint was taken on the file before compaction: it must not be used on the new one.
	misses0 := hintMisses.Load()
	got, err := l.Read(mid, seg1End, 1<<20)
	if m := hintMisses.Load() - misses0; m != 0 {
		t.Fatalf("a hint from the file before compaction was tried on the new file (%d misses)", m)
	}
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, mid, seg1End, size, gone)
}

// Sequential small reads use the position hint and return the same records as
// one large read.
func TestSequentialSmallReadsOfSealedSegments(t *testing.T) {
	l := openT(t, t.TempDir(), 64<<10)
	t.Cleanup(func() { l.Close() }) // after the hook's cleanup has let a blocked read go
	const n, size = 600, 1024
	appendN(t, l, 0, n, size)
	hits0, misses0 := hintHits.Load(), hintMisses.Load()
	var all []Record
	reads := 0
	for off := int64(0); off < n; reads++ {
		got, err := l.Read(off, n, 3*size)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
		off += int64(len(got))
	}
	wantRecords(t, all, 0, n, size, nil)
	// Every read but the first of each segment (and those in the tail) starts at a hint.
	segs := l.Segments()
	if hits, misses := hintHits.Load()-hits0, hintMisses.Load()-misses0; misses != 0 || hits < int64(reads/2) {
		t.Fatalf("%d reads over %d segments: %d started at a hint, %d hints failed", reads, len(segs), hits, misses)
	}
}

// A flipped byte inside a sealed segment is reported as corruption by the
// read outside the mutex, never served.
func TestFlipInSealedSegmentReportedNotServed(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 16<<10)
	const n, size = 600, 100
	for i := 0; i < n; i += 20 {
		appendN(t, l, i, 20, size) // batches of 20 records
	}
	segs := l.Segments()
	l.Close()
	if len(segs) < 3 || segs[1].BaseOffset < 20 {
		t.Fatalf("segments %+v", segs)
	}
	p := filepath.Join(dir, segmentName(1))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f := frameOf(t, b, 40)
	if f.Offset < 5 {
		t.Fatalf("frame of offset 40 starts at %d", f.Offset)
	}
	b[f.End-60] ^= 0x01
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, 16<<10)
	defer l.Close()
	for off := f.Offset; off <= f.Last; off++ {
		if _, err := l.Read(off, n, 1<<20); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of the flipped batch at %d: %v, want corruption", off, err)
		}
	}
	got, err := l.Read(f.Offset-5, n, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, f.Offset-5, f.Offset, size, nil)
	checkAll(t, l, int(f.Last+1), n, size)
}
