package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// TestKatkaTailNotInMemory writes entries made with WriteParts and Write
// across several segment rolls and checks that no segment holds entry bytes
// in memory, every entry reads back (from the tail by pread, from sealed
// segments from their files), across a reopen and both truncations.
func TestKatkaTailNotInMemory(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, SegmentSize: 4096, NoCopy: true, AllowEmpty: true}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]byte{}
	var b Batch
	idx := uint64(1)
	for round := 0; round < 40; round++ {
		b.Clear()
		for i := 0; i < 5; i++ {
			head, body := fmt.Sprintf("h%d-", idx), bytes.Repeat([]byte{byte(idx)}, 50+int(idx%300))
			if i%2 == 0 {
				b.WriteParts(idx, []byte(head), body, []byte("-t"))
			} else {
				b.Write(idx, append([]byte(head), append(body, "-t"...)...))
			}
			want[idx] = append([]byte(head), append(body, "-t"...)...)
			idx++
		}
		if err := l.WriteBatch(&b); err != nil {
			t.Fatal(err)
		}
		if len(b.parts) != 0 {
			t.Fatalf("batch keeps %d part references after the write", len(b.parts))
		}
		for _, s := range l.segments {
			if s.ebuf != nil {
				t.Fatalf("segment %d holds %d bytes in memory", s.index, len(s.ebuf))
			}
		}
	}
	if len(l.segments) < 5 {
		t.Fatalf("only %d segments: the test must roll", len(l.segments))
	}
	check := func(l *Log, from, to uint64) {
		t.Helper()
		for i := from; i <= to; i++ {
			got, err := l.Read(i)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if !bytes.Equal(got, want[i]) {
				t.Fatalf("read %d: got %q, want %q", i, got, want[i])
			}
		}
	}
	last := idx - 1
	check(l, 1, last)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	if tail := l.segments[len(l.segments)-1]; tail.ebuf != nil || len(tail.tpos) == 0 {
		t.Fatalf("reopened tail: %d bytes in memory, %d positions", len(tail.ebuf), len(tail.tpos))
	}
	check(l, 1, last)
	// Truncate the back inside the tail, then inside a sealed segment, and
	// the front inside the tail; append after each.
	tail := l.segments[len(l.segments)-1]
	if err := l.TruncateBack(tail.index + 1); err != nil {
		t.Fatal(err)
	}
	check(l, 1, tail.index+1)
	if err := l.TruncateBack(l.segments[1].index + 1); err != nil {
		t.Fatal(err)
	}
	last = l.segments[1].index + 1
	check(l, 1, last)
	b.Clear()
	want[last+1] = []byte("after truncate back")
	b.WriteParts(last+1, []byte("after "), []byte("truncate back"))
	if err := l.WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
	last++
	if err := l.TruncateFront(last); err != nil {
		t.Fatal(err)
	}
	check(l, last, last)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(l, last, last)
}

// TestKatkaTailPositionsSparse checks that the tail keeps one entry position
// per tailStride entries, not one per entry (a partition written with small
// batches kept 4 bytes per entry: 22 KB for a 1 MiB tail of 190-byte
// entries), and that every entry still reads back whatever the order: in
// sequence (the cursor), backwards and at random (stepping over heads from
// a kept position), entries longer than a speculative read included, across
// a reopen and truncations inside the tail.
func TestKatkaTailPositionsSparse(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, SegmentSize: 4 << 20, NoCopy: true, AllowEmpty: true}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	const entries = 2000
	want := map[uint64][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	var b Batch
	for idx := uint64(1); idx <= entries; {
		b.Clear()
		for range 1 + rng.IntN(7) {
			size := 1 + rng.IntN(300)
			if rng.IntN(10) == 0 {
				size = tailChunk - 300 + rng.IntN(2000) // around and past one chunk of heads
			}
			data := bytes.Repeat([]byte{byte(idx), byte(idx >> 8)}, size)[:size]
			want[idx] = data
			b.Write(idx, data)
			idx++
		}
		if err := l.WriteBatch(&b); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := l.LastIndex()
	if len(l.segments) != 1 {
		t.Fatalf("%d segments: the entries must stay in the tail", len(l.segments))
	}
	positions := func() int {
		tail := l.segments[len(l.segments)-1]
		if tail.tcount != int(last-tail.index+1) {
			t.Fatalf("tail counts %d entries, the log %d", tail.tcount, last-tail.index+1)
		}
		return len(tail.tpos)
	}
	if n, max := positions(), (int(last)+tailStride-1)/tailStride; n > max {
		t.Fatalf("the tail keeps %d positions for %d entries, want at most %d", n, last, max)
	}
	read := func(i uint64) {
		t.Helper()
		got, err := l.Read(i)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(got, want[i]) {
			t.Fatalf("read %d: got %d bytes, want %d", i, len(got), len(want[i]))
		}
	}
	checkAll := func() {
		t.Helper()
		first, _ := l.FirstIndex()
		last, _ := l.LastIndex()
		for i := first; i <= last; i++ {
			read(i)
		}
		for i := last; i >= first; i-- {
			read(i)
		}
		for range 3000 {
			read(first + uint64(rng.IntN(int(last-first+1))))
		}
	}
	checkAll()
	l.Close()
	if l, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	if n, max := positions(), (int(last)+tailStride-1)/tailStride; n > max {
		t.Fatalf("reopened: %d positions for %d entries, want at most %d", n, last, max)
	}
	checkAll()
	read(last - 5) // a cursor inside what TruncateBack removes
	if err := l.TruncateBack(last - 37); err != nil {
		t.Fatal(err)
	}
	last -= 37
	checkAll()
	b.Clear()
	want[last+1] = []byte("after truncate back")
	b.Write(last+1, want[last+1])
	if err := l.WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
	last++
	if err := l.TruncateFront(700); err != nil {
		t.Fatal(err)
	}
	checkAll()
	positions()
}

// TestKatkaReadTail reads the tail with ReadTail from every entry on, with
// limits from one byte to the whole file, and checks that each run is the
// entries in order, the first whole, none beyond the limit but the first,
// none cut; that a run moves the read cursor (the next Read and ReadTail
// agree with it); and that an index outside the tail is refused.
func TestKatkaReadTail(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, SegmentSize: 64 << 10, NoCopy: true, AllowEmpty: true}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[uint64][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	var b Batch
	for idx := uint64(1); idx <= 600; idx++ {
		b.Clear()
		want[idx] = bytes.Repeat([]byte{byte(idx)}, 1+rng.IntN(300))
		b.Write(idx, want[idx])
		if err := l.WriteBatch(&b); err != nil {
			t.Fatal(err)
		}
	}
	tail := l.segments[len(l.segments)-1]
	if len(l.segments) < 2 || tail.tcount < 3*tailStride {
		t.Fatalf("%d segments, %d tail entries: the test needs a roll and a long tail", len(l.segments), tail.tcount)
	}
	last := tail.index + uint64(tail.tcount) - 1
	frame := func(i uint64) int { return len(want[i]) + uvarintLen(uint64(len(want[i]))) }
	for _, limit := range []int{1, 300, 2000, 20000, 1 << 20} {
		for from := tail.index; from <= last; from++ {
			got, size, err := l.ReadTail(from, limit)
			if err != nil {
				t.Fatalf("ReadTail(%d, %d): %v", from, limit, err)
			}
			if len(got) == 0 || size < frame(from) {
				t.Fatalf("ReadTail(%d, %d): %d entries in %d bytes", from, limit, len(got), size)
			}
			used := 0
			for k, e := range got {
				i := from + uint64(k)
				if !bytes.Equal(e, want[i]) {
					t.Fatalf("ReadTail(%d, %d): entry %d differs", from, limit, i)
				}
				used += frame(i)
			}
			if used > max(limit, frame(from)) || used > size {
				t.Fatalf("ReadTail(%d, %d): %d bytes of entries in a read of %d", from, limit, used, size)
			}
			next := from + uint64(len(got))
			if next <= last && used+frame(next) <= min(size, limit) {
				t.Fatalf("ReadTail(%d, %d): stopped before entry %d, which fits", from, limit, next)
			}
			if next <= last {
				if e, err := l.Read(next); err != nil || !bytes.Equal(e, want[next]) {
					t.Fatalf("Read(%d) after ReadTail(%d, %d): %v", next, from, limit, err)
				}
			}
		}
	}
	if _, _, err := l.ReadTail(tail.index-1, 1<<20); err != ErrNotFound {
		t.Fatalf("ReadTail of a sealed entry: %v, want ErrNotFound", err)
	}
	if _, _, err := l.ReadTail(last+1, 1<<20); err != ErrNotFound {
		t.Fatalf("ReadTail past the end: %v, want ErrNotFound", err)
	}
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// TestKatkaTruncateFrontAtSegmentStart: truncating the front at a segment's
// first entry removes the segments before it and leaves that segment's file
// as it is (upstream copied it into a START file and renamed that over it);
// the entries from there on read back, also after reopening, and a power cut
// between the removals (files of a prefix gone) opens as the suffix.
func TestKatkaTruncateFrontAtSegmentStart(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, SegmentSize: 16 << 10, NoCopy: true}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := func(idx uint64) []byte { return bytes.Repeat([]byte{byte(idx)}, 100+int(idx%50)) }
	const last = 1000
	for idx := uint64(1); idx <= last; idx++ {
		if err := l.Write(idx, want(idx)); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.segments) < 5 {
		t.Fatalf("%d segments", len(l.segments))
	}
	for step := range 2 { // a sealed segment, then the tail
		s := l.segments[2]
		if step == 1 {
			s = l.segments[len(l.segments)-1]
		}
		before, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.TruncateFront(s.index); err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(s.path)
		if err != nil || !os.SameFile(before, after) {
			t.Fatalf("segment %s was replaced (%v)", s.path, err)
		}
		files, _ := os.ReadDir(dir)
		if first, _ := l.FirstIndex(); first != s.index || len(files) != len(l.segments) {
			t.Fatalf("first index %d, want %d; %d files for %d segments", first, s.index, len(files), len(l.segments))
		}
		for idx := s.index; idx <= last; idx++ {
			if got, err := l.Read(idx); err != nil || !bytes.Equal(got, want(idx)) {
				t.Fatalf("entry %d after truncating the front at %d: %v", idx, s.index, err)
			}
		}
	}
	end := uint64(last)
	for len(l.segments) < 3 {
		end++
		if err := l.Write(end, want(end)); err != nil {
			t.Fatal(err)
		}
	}
	// A power cut after the first removal of the next truncation.
	next := l.segments[1].index
	if err := os.Remove(l.segments[0].path); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if l, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, _ := l.FirstIndex()
	if first != next {
		t.Fatalf("reopened with the first segment gone: first index %d, want %d", first, next)
	}
	for idx := first; idx <= end; idx++ {
		if got, err := l.Read(idx); err != nil || !bytes.Equal(got, want(idx)) {
			t.Fatalf("reopened: entry %d: %v", idx, err)
		}
	}
}
