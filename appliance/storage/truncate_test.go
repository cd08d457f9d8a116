package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// appendGroups appends records rec(from..to) in batches of per records each
// (one Append per batch) and syncs them.
func appendGroups(t testing.TB, l *Log, from, to, per, size int) {
	t.Helper()
	for i := from; i < to; i += per {
		n := min(per, to-i)
		recs := make([]Record, n)
		for j := range recs {
			recs[j] = rec(i+j, size)
		}
		base, err := l.Append(recs)
		if err != nil {
			t.Fatal(err)
		}
		if base != int64(i) {
			t.Fatalf("append: base %d, want %d", base, i)
		}
	}
	if err := l.SyncTo(int64(to)); err != nil {
		t.Fatal(err)
	}
}

// wantLog checks that l holds exactly rec(start..end) and reads nothing past end.
func wantLog(t testing.TB, l *Log, start, end, size int) {
	t.Helper()
	if s, e := l.StartOffset(), l.EndOffset(); s != int64(start) || e != int64(end) {
		t.Fatalf("log holds %d..%d, want %d..%d", s, e, start, end)
	}
	if d := l.DurableOffset(); d < int64(end) {
		t.Fatalf("durable offset %d below end %d", d, end)
	}
	checkAll(t, l, start, end, size)
	if recs, err := l.Read(int64(end), int64(end)+100, 1<<20); err != nil || len(recs) != 0 {
		t.Fatalf("read at end %d: %d records, %v", end, len(recs), err)
	}
	if _, err := l.Read(int64(end)+1, int64(end)+100, 1<<20); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read past end: %v, want ErrOutOfRange", err)
	}
}

func TestTruncateBackThenAppendThenReopen(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1<<20)
	appendGroups(t, l, 0, 100, 10, 50)
	// Inside a batch: the batch goes.
	end, err := l.TruncateBack(45)
	if err != nil || end != 40 {
		t.Fatalf("TruncateBack(45) = %d, %v; want 40", end, err)
	}
	wantLog(t, l, 0, 40, 50)
	// At a boundary: exactly there.
	if end, err = l.TruncateBack(30); err != nil || end != 30 {
		t.Fatalf("TruncateBack(30) = %d, %v", end, err)
	}
	// At or past the end: nothing.
	if end, err = l.TruncateBack(30); err != nil || end != 30 {
		t.Fatalf("TruncateBack(end) = %d, %v", end, err)
	}
	if end, err = l.TruncateBack(1000); err != nil || end != 30 {
		t.Fatalf("TruncateBack(past end) = %d, %v", end, err)
	}
	appendGroups(t, l, 30, 70, 7, 50)
	wantLog(t, l, 0, 70, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, 1<<20)
	defer l.Close()
	wantLog(t, l, 0, 70, 50)
	if _, err := os.Stat(filepath.Join(dir, truncateFile)); !os.IsNotExist(err) {
		t.Fatalf("intent file left behind: %v", err)
	}
}

func TestTruncateBackInsideCompressedBatch(t *testing.T) {
	for _, codec := range []int{recordbatch.CodecZstd, recordbatch.CodecGzip} {
		dir := t.TempDir()
		l := openT(t, dir, 1<<20)
		recs := make([]Record, 50)
		for i := range recs {
			recs[i] = rec(i, 100)
		}
		if _, err := l.AppendFormat(recs[:20], BatchFormat{Codec: codec}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AppendFormat(recs[20:], BatchFormat{Codec: codec}); err != nil {
			t.Fatal(err)
		}
		data, _, err := l.ReadBatches(20, 50, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if bs := splitBatches(t, data); len(bs) != 1 || bs[0].Attributes&7 != int16(codec) {
			t.Fatalf("codec %d: want one compressed batch at 20, got %+v", codec, bs)
		}
		end, err := l.TruncateBack(33)
		if err != nil || end != 20 {
			t.Fatalf("codec %d: TruncateBack(33) = %d, %v; want 20", codec, end, err)
		}
		wantLog(t, l, 0, 20, 100)
		appendGroups(t, l, 20, 30, 3, 100)
		l.Close()
		l = openT(t, dir, 1<<20)
		wantLog(t, l, 0, 30, 100)
		l.Close()
	}
}

// Random truncations and appends across many small segments, each checked
// against a model, with reopens in between.
func TestTruncateBackAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	const seg, size = 2048, 60
	l := openT(t, dir, seg)
	defer func() { l.Close() }()
	rng := rand.New(rand.NewPCG(7, 16))
	// bounds are the batch boundaries, as appended.
	bounds := []int{0}
	end := 0
	grow := func(n int) {
		for i := 0; i < n; i++ {
			per := 1 + rng.IntN(6)
			appendGroups(t, l, end, end+per, per, size)
			end += per
			bounds = append(bounds, end)
		}
	}
	grow(150)
	if len(l.Segments()) < 8 {
		t.Fatalf("want many segments, got %d", len(l.Segments()))
	}
	for round := 0; round < 25; round++ {
		off := rng.IntN(end + 3)
		want := end
		if off < end {
			k := 0
			for k+1 < len(bounds) && bounds[k+1] <= off {
				k++
			}
			want = bounds[k]
			bounds = bounds[:k+1]
		}
		got, err := l.TruncateBack(int64(off))
		if err != nil || got != int64(want) {
			t.Fatalf("round %d: TruncateBack(%d) = %d, %v; want %d", round, off, got, err, want)
		}
		end = want
		wantLog(t, l, 0, end, size)
		if round%4 == 0 {
			l.Close()
			l = openT(t, dir, seg)
			wantLog(t, l, 0, end, size)
		}
		grow(1 + rng.IntN(30))
		wantLog(t, l, 0, end, size)
	}
	// Size accounting matches the files.
	var files int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if len(e.Name()) == 20 {
			info, _ := e.Info()
			files += info.Size()
		}
	}
	if l.Size() != files {
		t.Fatalf("Size() %d, files hold %d", l.Size(), files)
	}
}

func TestTruncateBackBelowStart(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1024)
	appendGroups(t, l, 0, 60, 5, 50)
	if err := l.AdvanceStart(23); err != nil {
		t.Fatal(err)
	}
	// A boundary at or below the start empties the log there (20 < 23 < 24).
	end, err := l.TruncateBack(24)
	if err != nil || end != 20 {
		t.Fatalf("TruncateBack(24) = %d, %v; want 20", end, err)
	}
	wantLog(t, l, 20, 20, 50)
	// Below the start: restarts there.
	if end, err = l.TruncateBack(7); err != nil || end != 7 {
		t.Fatalf("TruncateBack(7) = %d, %v", end, err)
	}
	wantLog(t, l, 7, 7, 50)
	if end, err = l.TruncateBack(100); err != nil || end != 7 {
		t.Fatalf("TruncateBack(past end of empty log) = %d, %v", end, err)
	}
	// And above it (a follower whose leader's log starts later).
	if end, err = l.TruncateBack(7); err != nil || end != 7 {
		t.Fatalf("TruncateBack(start) = %d, %v", end, err)
	}
	appendGroups(t, l, 7, 40, 4, 50)
	wantLog(t, l, 7, 40, 50)
	l.Close()
	l = openT(t, dir, 1024)
	wantLog(t, l, 7, 40, 50)
	if _, err := l.TruncateBack(0); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openT(t, dir, 1024)
	defer l.Close()
	wantLog(t, l, 0, 0, 50)
	appendGroups(t, l, 0, 10, 3, 50)
	wantLog(t, l, 0, 10, 50)
}

// Readers (Read, ReadBatchParts, sealed and tail), an appender and a
// truncater run together: every read gets records consistent with their
// offsets (rec(offset)) or ErrOutOfRange, never damage.
func TestTruncateBackConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	const size = 80
	l := openT(t, dir, 4096)
	defer l.Close()
	appendGroups(t, l, 0, 400, 5, size)
	var wg sync.WaitGroup
	stop, report, errc := firstError()
	var mu sync.Mutex // the writer and the truncater: appends must start at the end
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for !stop.Load() {
				end := l.EndOffset()
				off := rng.Int64N(end + 1)
				if r == 0 {
					bp, err := l.ReadBatchParts(off, off+200, 8<<10)
					if err != nil {
						if !errors.Is(err, ErrOutOfRange) {
							report(fmt.Errorf("ReadBatchParts(%d): %w", off, err))
						}
						continue
					}
					for _, p := range bp.Parts {
						recs, err := decodeBatch(nil, p, 0, 1<<62)
						if err != nil {
							report(err)
						}
						for _, x := range recs {
							if !bytes.Equal(x.Value, rec(int(x.Offset), size).Value) {
								report(fmt.Errorf("batch part: offset %d holds %q", x.Offset, x.Value[:10]))
							}
						}
					}
					bp.Release()
					continue
				}
				recs, err := l.Read(off, off+100, 8<<10)
				if err != nil {
					if !errors.Is(err, ErrOutOfRange) {
						report(fmt.Errorf("Read(%d): %w", off, err))
					}
					continue
				}
				for _, x := range recs {
					if !bytes.Equal(x.Value, rec(int(x.Offset), size).Value) {
						report(fmt.Errorf("read: offset %d holds %q", x.Offset, x.Value[:10]))
					}
				}
			}
		}(r)
	}
	wg.Add(1)
	go func() { // appender
		defer wg.Done()
		for !stop.Load() {
			mu.Lock()
			end := int(l.EndOffset())
			recs := make([]Record, 3)
			for j := range recs {
				recs[j] = rec(end+j, size)
			}
			_, err := l.Append(recs)
			mu.Unlock()
			if err != nil {
				report(err)
				return
			}
			if err := l.SyncTo(int64(end + 3)); err != nil && !errors.Is(err, ErrTruncated) {
				report(err)
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 40 && !stop.Load(); i++ {
		mu.Lock()
		end := l.EndOffset()
		if end < 2 {
			mu.Unlock()
			continue
		}
		got, err := l.TruncateBack(end - 1 - rng.Int64N(min(end-1, 30)))
		mu.Unlock()
		if err != nil {
			report(err)
			break
		}
		if d := l.DurableOffset(); d > l.EndOffset() {
			report(fmt.Errorf("durable offset %d past the end %d after truncating to %d", d, l.EndOffset(), got))
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	end := int(l.EndOffset())
	checkAll(t, l, 0, end, size)
}

// The crash points of a truncation: the file work stops after each step (as
// a crash would) and a fresh Open must find the new log; stopped before the
// intent file is written, the old one. The same holds for a process that
// keeps running: its next append heals the log first.
func TestTruncateBackCrashPoints(t *testing.T) {
	const seg, size = 1024, 50
	for _, tc := range []struct {
		name        string
		off         int
		start, want int
	}{
		{"cut inside a sealed segment", 47, 0, 45},
		{"cut inside the tail", 118, 0, 115},
		{"full", 3, 0, 0},
	} {
		// Find the steps this truncation takes.
		var steps []string
		func() {
			l := openT(t, t.TempDir(), seg)
			defer l.Close()
			appendGroups(t, l, 0, 120, 5, size)
			truncateHook = func(s string) error { steps = append(steps, s); return nil }
			defer func() { truncateHook = nil }()
			if _, err := l.TruncateBack(int64(tc.off)); err != nil {
				t.Fatal(err)
			}
		}()
		if len(steps) < 3 {
			t.Fatalf("%s: steps %v", tc.name, steps)
		}
		t.Logf("%s: crash points %v", tc.name, steps)
		for k, stop := range steps {
			for _, heal := range []bool{false, true} {
				dir := t.TempDir()
				l := openT(t, dir, seg)
				appendGroups(t, l, 0, 120, 5, size)
				crash := errors.New("crash at " + stop)
				truncateHook = func(s string) error {
					if s == stop {
						return crash
					}
					return nil
				}
				_, err := l.TruncateBack(int64(tc.off))
				truncateHook = nil
				if !errors.Is(err, crash) {
					t.Fatalf("%s step %d %q: %v", tc.name, k, stop, err)
				}
				if heal {
					// The running log heals on its next write.
					base, err := l.Append([]Record{rec(tc.want, size)})
					if err != nil || base != int64(tc.want) {
						t.Fatalf("%s step %q: append after a failed truncation: %d, %v", tc.name, stop, base, err)
					}
					if err := l.SyncTo(base + 1); err != nil {
						t.Fatal(err)
					}
					wantLog(t, l, tc.start, tc.want+1, size)
					l.Close()
					l = openT(t, dir, seg)
					wantLog(t, l, tc.start, tc.want+1, size)
					l.Close()
					continue
				}
				var acts []RecoveryAction
				l2, acts, err := Open(dir, Options{SegmentBytes: seg})
				if err != nil {
					t.Fatalf("%s step %q: reopen: %v", tc.name, stop, err)
				}
				if len(acts) == 0 || acts[len(acts)-1].Kind != "truncate_completed" {
					t.Fatalf("%s step %q: recovery actions %+v", tc.name, stop, acts)
				}
				wantLog(t, l2, tc.start, tc.want, size)
				appendGroups(t, l2, tc.want, tc.want+12, 4, size)
				l2.Close()
				l2 = openT(t, dir, seg)
				wantLog(t, l2, tc.start, tc.want+12, size)
				l2.Close()
			}
		}
	}
}

// A crash before the intent file is durable leaves the old log; leftovers
// of the intent's and the cut segment's temp files are ignored or removed.
func TestTruncateBackCrashBeforeIntentKeepsOldLog(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1024)
	appendGroups(t, l, 0, 60, 5, 50)
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "0*"))
	os.WriteFile(filepath.Join(dir, truncateFile+".TEMP"), []byte("cut 1"), 0o640)
	os.WriteFile(segs[len(segs)-1]+truncTmp, []byte("partial"), 0o640)
	l = openT(t, dir, 1024)
	defer l.Close()
	wantLog(t, l, 0, 60, 50)
	if _, err := os.Stat(segs[len(segs)-1] + truncTmp); !os.IsNotExist(err) {
		t.Fatalf("temp file of a cut segment left: %v", err)
	}
}

// A damaged intent file never stops the log from opening: every step of a
// truncation leaves a valid log.
func TestTruncateBackDamagedIntent(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1024)
	appendGroups(t, l, 0, 30, 5, 50)
	l.Close()
	os.WriteFile(filepath.Join(dir, truncateFile), []byte("cu\x00 12"), 0o640)
	l, acts, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(acts) != 1 || !strings.Contains(acts[0].Detail, "unreadable truncation intent") {
		t.Fatalf("actions %+v", acts)
	}
	wantLog(t, l, 0, 30, 50)
}

// SyncTo of offsets a truncation removed reports it.
func TestSyncToAfterTruncateBack(t *testing.T) {
	l := openT(t, t.TempDir(), 1<<20)
	defer l.Close()
	appendGroups(t, l, 0, 20, 5, 50)
	if _, err := l.TruncateBack(10); err != nil {
		t.Fatal(err)
	}
	if err := l.SyncTo(20); !errors.Is(err, ErrTruncated) {
		t.Fatalf("SyncTo past the truncation: %v", err)
	}
	if d := l.DurableOffset(); d != 10 {
		t.Fatalf("durable %d, want 10", d)
	}
}

// firstError is the stop flag of a test's goroutines and the report that
// raises it, keeping the first error in errc.
func firstError() (stop *atomic.Bool, report func(error), errc chan error) {
	stop, errc = new(atomic.Bool), make(chan error, 1)
	return stop, func(err error) {
		select {
		case errc <- err:
		default:
		}
		stop.Store(true)
	}, errc
}

// batchesOf splits concatenated stored batches into their bytes.
func batchesOf(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 12 {
		n := 12 + int(binary.BigEndian.Uint32(data[8:]))
		out = append(out, data[:n:n])
		data = data[n:]
	}
	return out
}

// A truncation exactly at a sealed segment's first offset leaves that
// segment as an empty tail; the log reopens and appends after it.
func TestTruncateBackAtSegmentBoundary(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1024)
	appendGroups(t, l, 0, 120, 5, 50)
	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	at := segs[2].BaseOffset
	end, err := l.TruncateBack(at)
	if err != nil || end != at {
		t.Fatalf("TruncateBack(%d) = %d, %v", at, end, err)
	}
	after := l.Segments()
	if len(after) != 3 || after[2].BaseOffset != at || after[2].Bytes != 0 || after[2].Sealed {
		t.Fatalf("segments after the cut: %+v", after)
	}
	wantLog(t, l, 0, int(at), 50)
	l.Close()
	l = openT(t, dir, 1024)
	defer l.Close()
	wantLog(t, l, 0, int(at), 50)
	appendGroups(t, l, int(at), int(at)+40, 4, 50)
	wantLog(t, l, 0, int(at)+40, 50)
}

// Logs of the per-record format (one offset per entry, compacted
// placeholders) truncate at every offset exactly, and take batches after.
func TestTruncateBackPerRecordFormat(t *testing.T) {
	for _, at := range []int64{399, 260, 131, 130, 77, 38, 37, 20} {
		dir := filepath.Join(t.TempDir(), "p0")
		if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "v1-log"))); err != nil {
			t.Fatal(err)
		}
		l := openT(t, dir, 8<<10)
		all, err := l.Read(v1Start, v1Records, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		end, err := l.TruncateBack(at)
		want := at // every offset is an entry boundary; at or below the start the log restarts there
		if err != nil || end != want {
			t.Fatalf("TruncateBack(%d) = %d, %v", at, end, err)
		}
		check := func() {
			t.Helper()
			if l.EndOffset() != want {
				t.Fatalf("at %d: end %d", at, l.EndOffset())
			}
			if at <= v1Start {
				if l.StartOffset() != at {
					t.Fatalf("at %d: start %d", at, l.StartOffset())
				}
				return
			}
			got, err := l.Read(v1Start, want, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			var exp []Record
			for _, r := range all {
				if r.Offset < want {
					exp = append(exp, r)
				}
			}
			if len(got) != len(exp) {
				t.Fatalf("at %d: %d records, want %d", at, len(got), len(exp))
			}
			for i := range got {
				if got[i].Offset != exp[i].Offset || !bytes.Equal(got[i].Value, exp[i].Value) {
					t.Fatalf("at %d: record %d is %d, want %d", at, i, got[i].Offset, exp[i].Offset)
				}
			}
		}
		check()
		l.Close()
		l = openT(t, dir, 8<<10)
		check()
		b := producedBatch(t, recordbatch.CodecZstd, 0, 10, 90, -1, -1)
		if base, _, err := l.AppendBatches([][]byte{b}); err != nil || base != want {
			t.Fatalf("at %d: append after truncation: base %d, %v", at, base, err)
		}
		if recs, err := l.Read(want, want+10, 1<<20); err != nil || len(recs) != 10 || recs[0].Offset != want {
			t.Fatalf("at %d: read the appended batch: %d records, %v", at, len(recs), err)
		}
		l.Close()
	}
}

// Truncations race with appends, compaction, retention and reads (-race):
// every record read is rec(its offset), offsets increase, and the log
// reopens to the same records.
func TestTruncateBackWithCompactionAndRetention(t *testing.T) {
	dir := t.TempDir()
	const size = 70
	l := openT(t, dir, 2048)
	appendGroups(t, l, 0, 300, 4, size)
	var wmu sync.Mutex // appends start at the end the writer saw
	var wg sync.WaitGroup
	stop, report, errc := firstError()
	checkRecs := func(recs []Record) {
		for i, x := range recs {
			if !bytes.Equal(x.Value, rec(int(x.Offset), size).Value) || (i > 0 && x.Offset <= recs[i-1].Offset) {
				prev := int64(-1)
				if i > 0 {
					prev = recs[i-1].Offset
				}
				report(fmt.Errorf("record %d of %d: offset %d (after %d) holds %q, want %q", i, len(recs), x.Offset, prev, x.Value, rec(int(x.Offset), size).Value))
				return
			}
		}
	}
	run := func(f func(rng *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for !stop.Load() {
				f(rng)
			}
		}()
	}
	run(func(rng *rand.Rand) { // appender
		wmu.Lock()
		end := int(l.EndOffset())
		recs := make([]Record, 1+rng.IntN(5))
		for j := range recs {
			recs[j] = rec(end+j, size)
		}
		_, err := l.Append(recs)
		wmu.Unlock()
		if err != nil {
			report(err)
		}
	})
	run(func(rng *rand.Rand) { // compaction drops every 7th offset
		if _, _, err := l.Compact(func(r *Record) bool { return r.Offset%7 != 0 }); err != nil {
			report(fmt.Errorf("compact: %w", err))
		}
	})
	run(func(rng *rand.Rand) { // retention keeps about 400 offsets
		if end := l.EndOffset(); end > 400 {
			if err := l.AdvanceStart(end - 400); err != nil && !errors.Is(err, ErrOutOfRange) {
				report(fmt.Errorf("advance start: %w", err))
			}
		}
	})
	run(func(rng *rand.Rand) { // reader
		s, e := l.StartOffset(), l.EndOffset()
		if e <= s {
			return
		}
		recs, err := l.Read(s+rng.Int64N(e-s), e, 16<<10)
		if err != nil && !errors.Is(err, ErrOutOfRange) {
			report(fmt.Errorf("read: %w", err))
		}
		checkRecs(recs)
	})
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 60 && !stop.Load(); i++ {
		wmu.Lock()
		s, e := l.StartOffset(), l.EndOffset()
		off := e - 1 - rng.Int64N(max(1, min(e-s, 80)))
		if rng.IntN(15) == 0 {
			off = s - rng.Int64N(3) // now and then below the start
		}
		_, err := l.TruncateBack(max(off, 0))
		wmu.Unlock()
		if err != nil {
			report(fmt.Errorf("truncate at %d: %w", off, err))
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if err := l.SyncTo(l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	s, e := l.StartOffset(), l.EndOffset()
	before, err := l.Read(s, e, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	checkRecs(before)
	l.Close()
	l = openT(t, dir, 2048)
	defer l.Close()
	after, err := l.Read(s, e, 1<<30)
	if err != nil || l.StartOffset() != s || l.EndOffset() != e || len(after) != len(before) {
		t.Fatalf("reopened: %d..%d with %d records (%v), want %d..%d with %d", l.StartOffset(), l.EndOffset(), len(after), err, s, e, len(before))
	}
	checkRecs(after)
}
