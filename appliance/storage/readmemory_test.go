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
