package storage

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestCompactKeepsOffsetsAndSkipsRemoved(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 32<<10)
	const keys, rounds = 50, 40
	var recs []Record
	for r := 0; r < rounds; r++ {
		for k := 0; k < keys; k++ {
			recs = append(recs, Record{Key: []byte(fmt.Sprintf("key-%d", k)), Value: []byte(fmt.Sprintf("round-%d-%s", r, bytes.Repeat([]byte("v"), 50)))})
		}
	}
	if _, err := l.Append(recs); err != nil {
		t.Fatal(err)
	}
	l.SyncTo(l.EndOffset())
	latest := map[string]int64{}
	for i, r := range recs {
		latest[string(r.Key)] = int64(i)
	}
	before := l.Size()
	removed, saved, err := l.Compact(func(r *Record) bool { return latest[string(r.Key)] == r.Offset })
	if err != nil {
		t.Fatal(err)
	}
	if removed < len(recs)/2 || saved <= 0 || l.Size() != before-saved {
		t.Fatalf("removed %d, saved %d, size %d -> %d", removed, saved, before, l.Size())
	}
	check := func(l *Log) {
		t.Helper()
		got, err := l.Read(0, l.EndOffset(), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int64{}
		for _, r := range got {
			if !bytes.Equal(r.Value, recs[r.Offset].Value) || !bytes.Equal(r.Key, recs[r.Offset].Key) {
				t.Fatalf("offset %d holds the wrong record", r.Offset)
			}
			seen[string(r.Key)] = r.Offset
		}
		for k, off := range latest {
			if seen[k] != off {
				t.Fatalf("key %s: latest offset %d, read %d", k, off, seen[k])
			}
		}
		if len(got) != len(recs)-removed {
			t.Fatalf("read %d records, want %d", len(got), len(recs)-removed)
		}
	}
	check(l)
	l.Close()
	l, actions, err := Open(dir, Options{SegmentBytes: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(actions) != 0 {
		t.Fatalf("compacted log needed repairs at open: %+v", actions)
	}
	check(l)
	// Compacting again changes nothing.
	if n, _, _ := l.Compact(func(r *Record) bool { return latest[string(r.Key)] == r.Offset }); n != 0 {
		t.Fatalf("second compaction removed %d", n)
	}
}

// TestCompactSyncsDirOutsideLock: compaction fsyncs the directory after a
// segment's rename without holding the log's lock, so the partition's
// appends and reads do not wait for it. The hook stands in for a slow
// directory fsync: while it runs, StartOffset, Append and a read must finish.
func TestCompactSyncsDirOutsideLock(t *testing.T) {
	l := openT(t, t.TempDir(), 32<<10)
	var recs []Record
	for r := 0; r < 40; r++ {
		for k := 0; k < 50; k++ {
			recs = append(recs, Record{Key: fmt.Appendf(nil, "key-%d", k), Value: bytes.Repeat([]byte("v"), 60)})
		}
	}
	if _, err := l.Append(recs); err != nil {
		t.Fatal(err)
	}
	latest := map[string]int64{}
	for i, r := range recs {
		latest[string(r.Key)] = int64(i)
	}
	calls := 0
	compactSyncHook = func(path string) {
		calls++
		done := make(chan error, 1)
		go func() {
			_ = l.StartOffset()
			off, err := l.Append([]Record{{Key: []byte("during"), Value: []byte("sync")}})
			if err == nil {
				_, err = l.Read(off, off+1, 1<<20)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("append or read during the directory fsync of %s: %v", path, err)
			}
		case <-time.After(10 * time.Second):
			// Blocked: the lock is held; let compaction go on so the
			// goroutine ends, and fail.
			t.Errorf("StartOffset, Append and Read waited for the directory fsync of %s (the log's lock is held across it)", path)
			compactSyncHook = nil
		}
	}
	t.Cleanup(func() { compactSyncHook = nil })
	removed, _, err := l.Compact(func(r *Record) bool { return latest[string(r.Key)] == r.Offset })
	if err != nil {
		t.Fatal(err)
	}
	if removed == 0 || calls == 0 {
		t.Fatalf("compaction removed %d records with %d directory fsyncs", removed, calls)
	}
}
