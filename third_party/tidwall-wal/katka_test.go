package wal

import (
	"bytes"
	"fmt"
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
