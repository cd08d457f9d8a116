package storage

import (
	"testing"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// TestSealedIndexesBounded checks that a partition written across many
// segments keeps the offset index of at most keepIndexed sealed segments
// (before, every segment written or read since open kept its index: 4 MiB
// per GiB), that a read of a segment whose index was dropped finds its batch
// (the index is rebuilt from the entry heads, and then steps over at most
// indexInterval bytes), that the next roll trims again, and that reading the
// whole log after a reopen (indexes built by reads, no roll) keeps as few.
func TestSealedIndexesBounded(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<10)
	defer func() { l.Close() }()
	const per = 5
	n := 0
	write := func(batches int) {
		t.Helper()
		for range batches {
			if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, n*per, per, 20, -1, -1)}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	indexed := func() (segs, bytes int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, s := range l.segs[:len(l.segs)-1] {
			s.fmu.Lock()
			if s.idx != nil {
				segs++
				bytes += s.idx.bytes()
			}
			s.fmu.Unlock()
		}
		return segs, bytes
	}
	write(6000) // about 1.5 MB: over 20 segments
	if len(l.segs) < 20 {
		t.Fatalf("%d segments: the test must roll more", len(l.segs))
	}
	segs, bytes := indexed()
	if segs > keepIndexed {
		t.Fatalf("%d of %d sealed segments keep an index (%d bytes), want at most %d", segs, len(l.segs)-1, bytes, keepIndexed)
	}
	// Read one batch in every sealed segment: each index dropped is rebuilt.
	builds := indexBuilds.Load()
	for _, off := range []int64{0, 7, 2500, 9001, 14444, 20000, 27777} {
		s0 := steps.Load()
		data, next, err := l.ReadBatches(off, int64(n*per), 1)
		if err != nil {
			t.Fatal(err)
		}
		got := splitBatches(t, data)
		if len(got) != 1 || got[0].FirstOffset != off/per*per || next != got[0].FirstOffset+per {
			t.Fatalf("offset %d: batches %+v next %d", off, got, next)
		}
		if d := steps.Load() - s0; d > indexInterval/200 {
			t.Fatalf("offset %d: stepped over %d entries", off, d)
		}
	}
	if indexBuilds.Load() == builds {
		t.Fatal("no index was rebuilt: the dropped indexes were not dropped")
	}
	write(400) // at least one more roll
	if segs, bytes := indexed(); segs > keepIndexed {
		t.Fatalf("after reads and a roll, %d sealed segments keep an index (%d bytes), want at most %d", segs, bytes, keepIndexed)
	}
	// A consumer reading the whole log after a reopen (no roll meanwhile)
	// leaves at most keepIndexed indexes too; reading each segment from its
	// start and on from where the previous fetch stopped, it needs none.
	l.Close()
	l = openT(t, dir, 64<<10)
	builds = indexBuilds.Load()
	for off := int64(0); off < int64(n*per); {
		_, next, err := l.ReadBatches(off, int64(n*per), 16<<10)
		if err != nil {
			t.Fatal(err)
		}
		off = next
	}
	if segs, bytes := indexed(); segs > keepIndexed {
		t.Fatalf("after reading the whole log, %d sealed segments keep an index (%d bytes), want at most %d", segs, bytes, keepIndexed)
	}
	if d := indexBuilds.Load() - builds; d != 0 {
		t.Fatalf("reading the log through built %d indexes, want none", d)
	}
}
