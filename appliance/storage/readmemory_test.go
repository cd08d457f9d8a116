package storage

import (
	"testing"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// TestReadBatchPartsHoldsWhatItReads: what a read keeps until Release
// (BatchParts.Held, which a Kafka fetch counts against its memory pool)
// follows the bytes it returns. A consumer at the end of the tail reading a
// few small batches with a 1 MiB limit held a 1 MiB copy buffer; a 1 MiB
// read of a sealed segment held a 2 MiB buffer (1 MiB + 64 KiB rounded up to
// a size class). A read never holds more than twice what it returns (the
// factor a fetch reserves in the memory pool before it reads).
func TestReadBatchPartsHoldsWhatItReads(t *testing.T) {
	l := openT(t, t.TempDir(), 1<<20)
	defer l.Close()
	off := 0
	for l.Size() < 3<<19 { // a sealed 1 MiB segment and half a tail
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, off, 10, 100, -1, -1)}); err != nil {
			t.Fatal(err)
		}
		off += 10
	}
	end := l.EndOffset()
	if len(l.segs) < 2 {
		t.Fatalf("%d segments, want a sealed one and the tail", len(l.segs))
	}
	for _, c := range []struct {
		name          string
		from          int64
		maxBytes      int
		most          func(n int) int // the most Held may be for n bytes read
		wantBatchesAt int
	}{
		{"tail, consumer at the end", end - 30, 1 << 20, func(n int) int { return 2 * n }, 3},
		{"sealed, 1 MiB", 0, 1 << 20, func(n int) int { return n + 64<<10 }, 0},
		{"sealed, 700 KiB", 0, 700 << 10, func(n int) int { return 2 * n }, 0}, // one 1 MiB buffer class
	} {
		bp, err := l.ReadBatchParts(c.from, end, c.maxBytes)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.wantBatchesAt > 0 && len(bp.Parts) != c.wantBatchesAt {
			t.Fatalf("%s: %d batches, want %d", c.name, len(bp.Parts), c.wantBatchesAt)
		}
		if bp.Len == 0 || bp.Held < bp.Len || bp.Held > c.most(bp.Len) {
			t.Fatalf("%s: read %d bytes, holds %d (want %d..%d)", c.name, bp.Len, bp.Held, bp.Len, c.most(bp.Len))
		}
		t.Logf("%s: read %d bytes in %d batches, holds %d", c.name, bp.Len, len(bp.Parts), bp.Held)
		bp.Release()
		if bp.Held != 0 {
			t.Fatalf("%s: holds %d after Release", c.name, bp.Held)
		}
	}
}

// TestReadBatchPartsStopsAtTheLimit: a read returns the stored batches that
// fit in maxBytes (the first one whole however large) and does not read the
// batch that would not fit. It returned every batch until the limit was
// reached, so a 1 MiB Kafka fetch of 1 MiB batches read and checked two
// batches for the fetch to drop the second: twice the preads and CRC work,
// and twice the memory held until the response was written.
func TestReadBatchPartsStopsAtTheLimit(t *testing.T) {
	l := openT(t, t.TempDir(), 4<<20)
	defer l.Close()
	const per = 400 // records of 1,000 B: batches of about 400 KB
	for off := 0; len(l.segs) < 2 || off < 14*per; off += per {
		b := producedBatch(t, recordbatch.CodecNone, off, per, 1000, -1, -1)
		if _, _, err := l.AppendBatches([][]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	end := l.EndOffset()
	tail := l.segs[len(l.segs)-1].base
	if tail == 0 || end-tail < 3*per {
		t.Fatalf("tail starts at %d of %d: want a sealed segment and three batches in the tail", tail, end)
	}
	for _, c := range []struct {
		name     string
		from     int64
		maxBytes int
		want     int // batches
		more     bool
	}{
		{"sealed, 1 MiB", 0, 1 << 20, 2, true},
		{"sealed, from inside a batch", per + 7, 1 << 20, 2, true},
		{"sealed, limit below one batch", 0, 1000, 1, false}, // full: the next is not looked at
		{"tail, 1 MiB", tail, 1 << 20, 2, true},
		{"tail, limit below one batch", tail, 1, 1, false},
		{"tail, the last batch", end - 1, 1 << 20, 1, false},
	} {
		bp, err := l.ReadBatchParts(c.from, end, c.maxBytes)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(bp.Parts) != c.want || bp.More != c.more {
			t.Fatalf("%s: %d batches (%d bytes), more %v; want %d, more %v", c.name, len(bp.Parts), bp.Len, bp.More, c.want, c.more)
		}
		if c.want > 1 && bp.Len > c.maxBytes {
			t.Fatalf("%s: %d bytes returned for a limit of %d", c.name, bp.Len, c.maxBytes)
		}
		if bp.Held > max(1<<20, 2*bp.Len) {
			t.Fatalf("%s: holds %d for %d bytes returned", c.name, bp.Held, bp.Len)
		}
		// The read goes on at the batch it stopped in front of.
		first, err := ParseBatchHeader(bp.Parts[0])
		if err != nil {
			t.Fatal(err)
		}
		if first.BaseOffset > c.from || bp.Next != first.BaseOffset+int64(len(bp.Parts))*per && bp.Next != end {
			t.Fatalf("%s: batches from %d, next %d", c.name, first.BaseOffset, bp.Next)
		}
		t.Logf("%s: %d batches, %d bytes, holds %d, next %d", c.name, len(bp.Parts), bp.Len, bp.Held, bp.Next)
		bp.Release()
	}
}
