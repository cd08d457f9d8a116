package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// openHandles returns, for each file under dir that this process holds open,
// how many descriptors point at it (a deleted file reads "PATH (deleted)").
func openHandles(t *testing.T, dir string) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			out[target]++
		}
	}
	return out
}

// A consumer reading a sealed segment in many small reads opens its file once,
// not once per read; the log keeps at most one such idle handle, and closes it
// when reads move on, when retention unlinks the file, when compaction
// replaces it and when the log closes, so no descriptor outlives its use.
func TestSealedReadHandles(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<10)
	defer l.Close()
	const n, size = 1000, 1024
	appendN(t, l, 0, n, size)
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("%d segments, want at least 5", len(segs))
	}
	path := func(i int) string { l.mu.Lock(); defer l.mu.Unlock(); return l.segs[i].path }
	p0, p1 := path(0), path(1)
	held := func(p string) int { return openHandles(t, dir)[p] }

	opens := segmentOpens.Load()
	for off := int64(0); off < segs[1].BaseOffset; off += 4 {
		if _, err := l.Read(off, off+4, 4*size); err != nil {
			t.Fatal(err)
		}
	}
	if got := segmentOpens.Load() - opens; got != 1 {
		t.Fatalf("reading segment 0 in small reads opened its file %d times, want 1", got)
	}
	if h := held(p0); h != 1 {
		t.Fatalf("after the reads %d handles on %s, want 1 (the idle one)", h, p0)
	}

	// Reading on into segment 1 closes segment 0's handle: one idle per log.
	if _, err := l.Read(segs[1].BaseOffset, segs[1].BaseOffset+4, 4*size); err != nil {
		t.Fatal(err)
	}
	if h0, h1 := held(p0), held(p1); h0 != 0 || h1 != 1 {
		t.Fatalf("after a read of segment 1: %d handles on segment 0 (want 0), %d on segment 1 (want 1)", h0, h1)
	}

	// Retention unlinks segments 0 and 1: the idle handle goes with them.
	if err := l.TruncateFront(segs[2].BaseOffset); err != nil {
		t.Fatal(err)
	}
	for p, c := range openHandles(t, dir) {
		if strings.HasSuffix(p, "(deleted)") {
			t.Fatalf("retention left %d handles on the unlinked %s", c, p)
		}
	}

	// Compaction replaces segment 2 (now the first) while its handle is idle:
	// the old file's handle is closed and the next read sees the new file.
	p2 := path(0)
	if _, err := l.Read(segs[2].BaseOffset, segs[2].BaseOffset+2, 2*size); err != nil {
		t.Fatal(err)
	}
	if h := held(p2); h != 1 {
		t.Fatalf("%d handles on %s after a read, want 1", h, p2)
	}
	if removed, _, err := l.Compact(func(r *Record) bool { return r.Offset%2 == 0 }); err != nil || removed == 0 {
		t.Fatalf("compact: removed %d, %v", removed, err)
	}
	for p, c := range openHandles(t, dir) {
		if strings.HasSuffix(p, "(deleted)") {
			t.Fatalf("compaction left %d handles on the replaced %s", c, p)
		}
	}
	got, err := l.Read(segs[2].BaseOffset, segs[3].BaseOffset, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Offset%2 == 1 {
			t.Fatalf("read after compaction returned offset %d, which compaction removed", r.Offset)
		}
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if h := openHandles(t, dir); len(h) != 0 {
		t.Fatalf("handles left open after Close: %v", h)
	}
}
