package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func rec(i int, size int) Record {
	v := bytes.Repeat([]byte{byte('a' + i%26)}, size)
	copy(v, fmt.Sprintf("v%08d|", i))
	return Record{Key: []byte(fmt.Sprintf("k%d", i%7)), Value: v, Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
		Headers: []Header{{Key: "h", Value: []byte{byte(i)}}, {Key: "null"}}}
}

func openT(t testing.TB, dir string, seg int) *Log {
	t.Helper()
	l, _, err := Open(dir, Options{SegmentBytes: seg})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func appendN(t testing.TB, l *Log, from, n, size int) {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = rec(from+i, size)
	}
	base, err := l.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if base != int64(from) {
		t.Fatalf("base %d want %d", base, from)
	}
	if err := l.SyncTo(base + int64(n)); err != nil {
		t.Fatal(err)
	}
}

func checkAll(t testing.TB, l *Log, from, to, size int) {
	t.Helper()
	off := int64(from)
	for off < int64(to) {
		recs, err := l.Read(off, int64(to), 64<<10)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		for _, r := range recs {
			want := rec(int(r.Offset), size)
			if r.Offset != off || !bytes.Equal(r.Value, want.Value) || !bytes.Equal(r.Key, want.Key) || !r.Timestamp.Equal(want.Timestamp) ||
				len(r.Headers) != 2 || r.Headers[1].Value != nil || !bytes.Equal(r.Headers[0].Value, want.Headers[0].Value) {
				t.Fatalf("offset %d: got %+v", off, r)
			}
			off++
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cases := []Record{
		{},
		{Key: []byte{}, Value: []byte{}},
		{Key: []byte("k"), Value: bytes.Repeat([]byte("x"), 300), Headers: []Header{{Key: "a", Value: nil}, {Key: "", Value: []byte{}}}},
		{Value: []byte("v"), Producer: &ProducerBatch{ID: 1<<40 + 7, Epoch: 3, FirstSeq: 1<<31 - 2, LastSeq: 1}},
		{Producer: &ProducerBatch{ID: 9, Epoch: 0, FirstSeq: 0, LastSeq: 0}},
	}
	for i, r := range cases {
		b := appendEntry(nil, kindRecord, int64(i), &r)
		if len(b) != encodedLen(&r) {
			t.Fatalf("case %d: encodedLen %d, actual %d", i, encodedLen(&r), len(b))
		}
		got, err := decodeEntry(b, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if (got.Key == nil) != (r.Key == nil) || (got.Value == nil) != (r.Value == nil) || !bytes.Equal(got.Value, r.Value) || len(got.Headers) != len(r.Headers) {
			t.Fatalf("case %d: got %+v want %+v", i, got, r)
		}
		if (got.Producer == nil) != (r.Producer == nil) || r.Producer != nil && *got.Producer != *r.Producer {
			t.Fatalf("case %d: producer %+v, want %+v", i, got.Producer, r.Producer)
		}
		for j := range b { // every single-byte flip is detected
			c := append([]byte(nil), b...)
			c[j] ^= 0x40
			if _, err := decodeEntry(c, int64(i)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("case %d: flip at %d not detected", i, j)
			}
		}
		if _, err := decodeEntry(b, int64(i)+1); !errors.Is(err, ErrCorrupt) {
			t.Fatal("offset mismatch not detected")
		}
	}
}

// TestProducerBatchSurvivesReopen checks that the producer fields of a
// record are in the log: read back after reopening, and a batch's count.
func TestProducerBatchSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<10)
	recs := []Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c"), Producer: &ProducerBatch{ID: 42, Epoch: 1, FirstSeq: 5, LastSeq: 7}}}
	base, err := l.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SyncTo(base + 3); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openT(t, dir, 64<<10)
	defer l.Close()
	got, err := l.Read(0, 3, 1<<20)
	if err != nil || len(got) != 3 {
		t.Fatalf("read: %d records, %v", len(got), err)
	}
	if got[0].Producer != nil || got[1].Producer != nil || got[2].Producer == nil || *got[2].Producer != *recs[2].Producer || got[2].Producer.Count() != 3 {
		t.Fatalf("producer fields: %+v %+v %+v", got[0].Producer, got[1].Producer, got[2].Producer)
	}
	if n := (&ProducerBatch{FirstSeq: 1<<31 - 2, LastSeq: 1}).Count(); n != 4 {
		t.Fatalf("wrapped count %d, want 4", n)
	}
}

func TestAppendReadReopenAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<10)
	for i := 0; i < 40; i++ {
		appendN(t, l, i*100, 100, 50+i*7)
	}
	// Mixed sizes: check our mirror of tidwall's roll rule against the directory.
	assertMirror(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, 64<<10)
	defer l.Close()
	if l.EndOffset() != 4000 || l.StartOffset() != 0 {
		t.Fatalf("offsets %d..%d", l.StartOffset(), l.EndOffset())
	}
	for i := 0; i < 40; i++ {
		off := int64(i * 100)
		recs, err := l.Read(off, off+100, 1<<30)
		if err != nil || len(recs) != 100 {
			t.Fatalf("read batch %d: %d recs, %v", i, len(recs), err)
		}
		for _, r := range recs {
			if want := rec(int(r.Offset), 50+i*7); !bytes.Equal(r.Value, want.Value) {
				t.Fatalf("offset %d value mismatch", r.Offset)
			}
		}
	}
	appendN(t, l, 4000, 10, 10)
	assertMirror(t, l)
}

func assertMirror(t *testing.T, l *Log) {
	t.Helper()
	ents, _ := os.ReadDir(l.dir)
	var names []string
	var total int64
	for _, e := range ents {
		if len(e.Name()) == 20 {
			names = append(names, e.Name())
			fi, _ := e.Info()
			total += fi.Size()
		}
	}
	sort.Strings(names)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(names) != len(l.segs) {
		t.Fatalf("dir has %d segments, mirror %d", len(names), len(l.segs))
	}
	for i, n := range names {
		if filepath.Base(l.segs[i].path) != n {
			t.Fatalf("segment %d: dir %s mirror %s", i, n, l.segs[i].path)
		}
	}
	if total != l.size {
		t.Fatalf("dir bytes %d, mirror %d", total, l.size)
	}
}

func tailPath(t *testing.T, dir string) string {
	ents, _ := os.ReadDir(dir)
	var last string
	for _, e := range ents {
		if len(e.Name()) == 20 {
			last = e.Name()
		}
	}
	return filepath.Join(dir, last)
}

func TestTornTailRepaired(t *testing.T) {
	damages := map[string]func(b []byte, acked int) []byte{
		"truncate_mid_entry": func(b []byte, acked int) []byte { return b[:acked+(len(b)-acked)/2] },
		"zeros":              func(b []byte, acked int) []byte { return append(b, make([]byte, 8192)...) },
		"garbage": func(b []byte, acked int) []byte {
			g := make([]byte, 5000)
			for i := range g {
				g[i] = byte(rand.IntN(256))
			}
			return append(b, g...)
		},
		"flip_unacked": func(b []byte, acked int) []byte { b[acked+10] ^= 1; return b },
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir, 1<<20)
			appendN(t, l, 0, 500, 100)
			l.Close()
			tp := tailPath(t, dir)
			b, _ := os.ReadFile(tp)
			acked := len(b)
			// One more record that was never acknowledged: the damage hits it.
			l = openT(t, dir, 1<<20)
			if _, err := l.Append([]Record{rec(500, 100)}); err != nil {
				t.Fatal(err)
			}
			l.Close()
			b, _ = os.ReadFile(tp)
			os.WriteFile(tp, damage(b, acked), 0o640)
			l, actions, err := Open(dir, Options{SegmentBytes: 1 << 20})
			if err != nil {
				t.Fatalf("open after %s: %v", name, err)
			}
			defer l.Close()
			if len(actions) == 0 && name != "truncate_mid_entry" {
				t.Fatalf("no recovery action reported")
			}
			// The unacknowledged record survives when the damage only follows it.
			want := int64(500)
			if name == "zeros" || name == "garbage" {
				want = 501
			}
			if e := l.EndOffset(); e != want {
				t.Fatalf("end offset %d, want %d", e, want)
			}
			checkAll(t, l, 0, int(want), 100)
			appendN(t, l, int(want), 10, 100)
			checkAll(t, l, 0, int(want)+10, 100)
		})
	}
}

// A flipped byte inside an acknowledged batch (its value) and in the length
// prefix of another: every offset of those two batches is reported corrupt,
// never served, and every other record is served unchanged.
func TestFlipInAckedDataReportedNotServed(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1<<20)
	appendN(t, l, 0, 1000, 100)
	l.Close()
	tp := tailPath(t, dir)
	b, _ := os.ReadFile(tp)
	f400, f600 := frameOf(t, b, 400), frameOf(t, b, 600)
	if f400.Last >= f600.Offset || !f400.Batch {
		t.Fatalf("frames %+v %+v", f400, f600)
	}
	b[f400.End-60] ^= 0x01
	b[f600.Pos] ^= 0x7f
	os.WriteFile(tp, b, 0o640)
	l, _, err := Open(dir, Options{SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.EndOffset() != 1000 {
		t.Fatalf("end %d", l.EndOffset())
	}
	for _, f := range []Frame{f400, f600} {
		for bad := f.Offset; bad <= f.Last; bad++ {
			if _, err := l.Read(bad, bad+1, 1<<20); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("offset %d: want corruption error, got %v", bad, err)
			}
			if _, _, err := l.ReadBatches(bad, 1000, 1<<20); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("batches at %d: want corruption error, got %v", bad, err)
			}
		}
		recs, err := l.Read(f.Offset-5, 1000, 1<<20)
		if err != nil || len(recs) != 5 {
			t.Fatalf("read before %d: %d records, %v", f.Offset, len(recs), err)
		}
	}
	checkAll(t, l, 0, int(f400.Offset), 100)
	checkAll(t, l, int(f400.Last+1), int(f600.Offset), 100)
	checkAll(t, l, int(f600.Last+1), 1000, 100)
}

// framePos finds the byte position of the frame holding offset off in a segment.
func framePos(b []byte, off int64) int {
	frames, _ := Frames(b)
	for _, f := range frames {
		if f.Offset <= off && off <= f.Last {
			return f.Pos
		}
	}
	panic("no frame holds the offset")
}

// frameOf returns the frame holding offset off in a segment.
func frameOf(t testing.TB, b []byte, off int64) Frame {
	t.Helper()
	frames, _ := Frames(b)
	for _, f := range frames {
		if f.Offset <= off && off <= f.Last {
			return f
		}
	}
	t.Fatalf("no frame holds offset %d", off)
	return Frame{}
}

func TestMissingMiddleSegment(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<10)
	appendN(t, l, 0, 3000, 100)
	segs := l.Segments()
	l.Close()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if len(e.Name()) == 20 {
			names = append(names, e.Name())
		}
	}
	if len(names) < 4 || len(segs) != len(names) {
		t.Fatalf("only %d segments", len(names))
	}
	os.Remove(filepath.Join(dir, names[1]))
	l, actions, err := Open(dir, Options{SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, end := segs[1].BaseOffset, segs[2].BaseOffset
	if len(actions) == 0 || actions[0].Kind != "segment_gap_filled" || actions[0].Lost != end-first {
		t.Fatalf("actions %+v, want %d offsets lost", actions, end-first)
	}
	for _, off := range []int64{first, (first + end) / 2, end - 1} {
		if _, err := l.Read(off, off+1, 100); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of lost offset %d: %v", off, err)
		}
	}
	checkAll(t, l, 0, int(first), 100)
	checkAll(t, l, int(end), 3000, 100)
	// Offsets after the gap are still found at reopen.
	l.Close()
	l2, actions, err := Open(dir, Options{SegmentBytes: 64 << 10})
	if err != nil || len(actions) != 0 {
		t.Fatalf("second open: %v, actions %+v", err, actions)
	}
	defer l2.Close()
	checkAll(t, l2, int(end), 3000, 100)
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	l := openT(t, t.TempDir(), 64<<10)
	defer l.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				mu.Lock()
				n := next
				next++
				base, err := l.Append([]Record{rec(n, 64)})
				mu.Unlock()
				if err != nil || base != int64(n) {
					t.Errorf("append %d: %d %v", n, base, err)
					return
				}
				if err := l.SyncTo(base + 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				end := l.DurableOffset()
				if end <= 0 {
					continue
				}
				if _, err := l.Read(int64(rand.IntN(int(end))), end, 4096); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkAll(t, l, 0, 800, 64)
}

func TestTruncateFrontRetention(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 32<<10)
	appendN(t, l, 0, 2000, 100)
	segs := l.Segments()
	if len(segs) < 3 || !segs[0].Sealed || segs[len(segs)-1].Sealed {
		t.Fatalf("segments %+v", segs)
	}
	if !segs[0].LastTimestamp.Equal(time.UnixMilli(1_700_000_000_000 + segs[1].BaseOffset - 1)) {
		t.Fatalf("last timestamp %v", segs[0].LastTimestamp)
	}
	cut := segs[2].BaseOffset
	before := l.Size()
	if err := l.TruncateFront(cut); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != cut || l.Size() >= before {
		t.Fatalf("start %d size %d", l.StartOffset(), l.Size())
	}
	if _, err := l.Read(cut-1, cut, 100); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	assertMirror(t, l)
	l.Close()
	l = openT(t, dir, 32<<10)
	defer l.Close()
	if l.StartOffset() != cut || l.EndOffset() != 2000 {
		t.Fatalf("after reopen %d..%d", l.StartOffset(), l.EndOffset())
	}
	checkAll(t, l, int(cut), 2000, 100)
}

func TestDirLock(t *testing.T) {
	dir := t.TempDir()
	a, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	a.Unlock()
	b, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b.Unlock()
}

// TestOpenNewLogDefersFsync checks that opening a log with no byte in its
// segments (a partition being created) fsyncs nothing, so a topic of
// thousands of partitions is created without two journal commits each, and
// that the directory fsync it skipped comes with the first records: the
// first SyncTo fsyncs the tail and the directory, and a reopen after it reads
// them back. A log with records is still fsynced at open.
func TestOpenNewLogDefersFsync(t *testing.T) {
	dir := t.TempDir()
	var fsyncs atomic.Int64
	opts := Options{SegmentBytes: 64 << 10, OnFsync: func(time.Duration) { fsyncs.Add(1) }}
	l, _, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := fsyncs.Load(); n != 0 {
		t.Fatalf("opening a new log fsynced %d times, want none", n)
	}
	if !l.dirDirty {
		t.Fatal("the directory fsync skipped at open is not owed to the first records")
	}
	appendN(t, l, 0, 3, 10)
	if err := l.SyncTo(3); err != nil {
		t.Fatal(err)
	}
	if n := fsyncs.Load(); n != 1 || l.dirDirty {
		t.Fatalf("first SyncTo: %d fsyncs, directory still owed %v; want 1 and the directory fsynced", n, l.dirDirty)
	}
	l.Close()
	fsyncs.Store(0)
	if l, _, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n := fsyncs.Load(); n != 1 {
		t.Fatalf("opening a log with records fsynced %d times, want 1", n)
	}
	if recs, err := l.Read(0, 3, 1<<20); err != nil || len(recs) != 3 {
		t.Fatalf("read after reopen: %d records, %v", len(recs), err)
	}
}
