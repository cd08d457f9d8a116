package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/wal"
)

// Follower truncation (TruncateBack). tidwall/wal has its own TruncateBack,
// but it deletes the segment it cuts before it renames the cut copy into
// place, and fsyncs no directory: a crash between the two loses the records
// kept. So the log does the file work itself, with the library closed, in an
// order where every step leaves a valid log, behind an intent file:
//
//  1. write truncateFile ("cut E" or "full E") atomically;
//  2. remove the segments after the one holding E, last first;
//  3. replace that segment by its prefix up to E (temp file, fsync, rename,
//     directory fsync); for "full", remove every segment and persist E as the
//     log start instead;
//  4. reopen the library, remove truncateFile, fsync the directory.
//
// A crash before 1 leaves the old log; after 1, Open finds truncateFile and
// does steps 2-4 again (each is idempotent: a cut at E of a log that ends at
// E changes nothing), so the new log. The intent is removed before any append
// follows, so it never cuts records appended after the truncation.

// truncateFile is the intent of a TruncateBack in progress.
const truncateFile = "truncate-back"

// truncTmp is the suffix of the temp file a cut segment is written to (not
// .REPAIR: compaction writes that name outside the mutex).
const truncTmp = ".TRUNC"

// truncateHook, when set by a test, is called after each step of a
// truncation's file work; an error it returns stops the truncation there, as
// a crash would.
var truncateHook func(step string) error

// step calls truncateHook.
func step(name string) error {
	if h := truncateHook; h != nil {
		return h(name)
	}
	return nil
}

// ErrTruncated is returned by SyncTo when the offsets it was asked to make
// durable were removed by TruncateBack meanwhile.
var ErrTruncated = errors.New("offsets removed by TruncateBack")

// truncPlan is a resolved truncation: either the whole log goes and it
// restarts at end (full), or segment seg keeps its first pos bytes, prefix,
// and ends at end.
type truncPlan struct {
	full   bool
	end    int64
	seg    int
	prefix []byte
}

// intent is the truncateFile text of the plan.
func (p truncPlan) intent() string {
	if p.full {
		return "full " + strconv.FormatInt(p.end, 10) + "\n"
	}
	return "cut " + strconv.FormatInt(p.end, 10) + "\n"
}

// TruncateBack removes every record at or above offset, as a Kafka follower
// truncates its log to its leader's. If offset falls inside a stored batch
// the whole batch goes: the new end is the largest entry boundary at or below
// offset. An offset at or past EndOffset changes nothing and returns
// EndOffset. If offset is at or below StartOffset (or the boundary found is),
// the log is emptied and restarts there: start = end = that offset, and the
// next append gets it (Kafka's truncateFullyAndStartAt). The new state is
// durable when it returns (files and directory fsynced), and a crash at any
// point leaves either the old or the new log (Open finishes a truncation cut
// short). Readers of removed offsets that started before the call may still
// get them; later reads do not. It returns the new end offset.
func (l *Log) TruncateBack(offset int64) (end int64, err error) {
	// No fsync runs during the truncation: one started before could mark
	// offsets durable that are gone.
	l.smu.Lock()
	for l.syncing {
		l.scond.Wait()
	}
	if l.sclosed {
		l.smu.Unlock()
		return 0, ErrClosed
	}
	l.syncing = true
	l.smu.Unlock()
	done := false
	defer func() {
		l.mu.Lock()
		cur := l.end
		l.mu.Unlock()
		l.smu.Lock()
		l.syncing = false
		switch {
		case done: // everything below end is on disk (step 3 fsynced what it kept)
			l.synced = end
		case l.synced > cur:
			l.synced = cur
		}
		l.scond.Broadcast()
		l.smu.Unlock()
	}()

	if offset < 0 {
		return 0, fmt.Errorf("truncate %s at %d: %w", l.dir, offset, ErrOutOfRange)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	if offset >= l.end {
		return l.end, nil
	}
	p, err := planTruncate(l.segs, l.start, offset)
	if err != nil {
		return 0, fmt.Errorf("truncate %s at %d: %w", l.dir, offset, err)
	}
	// Once the intent file may exist, a failure leaves the log unusable
	// until it is reloaded (heal, or Open), which finishes the truncation
	// from the intent file; appends in between could be cut by it later.
	fail := func(err error) (int64, error) {
		l.failed = fmt.Errorf("truncate %s at %d: %w", l.dir, offset, err)
		l.lastHeal = l.lastHeal.AddDate(0, 0, -1) // the next write may heal at once
		return 0, l.failed
	}
	if err := atomicWriteTmp(filepath.Join(l.dir, truncateFile), ".TEMP", []byte(p.intent())); err != nil {
		return fail(err)
	}
	if err := step("intent"); err != nil {
		return fail(err)
	}
	func() {
		defer func() { recover() }()
		if cerr := l.w.Close(); cerr != nil && !errors.Is(cerr, wal.ErrClosed) {
			l.log.Warn("close wal before truncation", "dir", l.dir, "err", cerr)
		}
	}()
	l.tailGen++ // the syncer reopens its handle on the (new) tail
	segs, startHint, err := applyTruncate(l.dir, l.segs, p)
	if err != nil {
		return fail(err)
	}
	if !p.full {
		startHint = l.start
	}
	if err := l.attach(segs, startHint); err != nil {
		return fail(err)
	}
	if err := step("attached"); err != nil {
		return fail(err)
	}
	if err := os.Remove(filepath.Join(l.dir, truncateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	if err := syncDir(l.dir); err != nil {
		return fail(err)
	}
	l.dirDirty = false
	done = true
	return l.end, nil
}

// planTruncate resolves a truncation at offset (below the log's end) of the
// log segs whose start is start: reads the segment holding offset to find
// the entry boundary at or below it.
func planTruncate(segs []*segmentFile, start, offset int64) (truncPlan, error) {
	if offset <= start || len(segs) == 0 {
		return truncPlan{full: true, end: offset}, nil
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
	if i < 0 {
		return truncPlan{full: true, end: offset}, nil
	}
	s := segs[i]
	buf, err := os.ReadFile(s.path)
	if err != nil {
		return truncPlan{}, fmt.Errorf("read segment %s: %w", s.path, err)
	}
	end, pos := entryBoundary(buf, s.base, offset)
	if end <= start {
		return truncPlan{full: true, end: end}, nil
	}
	return truncPlan{end: end, seg: i, prefix: buf[:pos]}, nil
}

// entryBoundary walks the entries of segment bytes buf whose first offset is
// base and returns the largest entry boundary at or below offset and its byte
// position. A frame that does not parse ends the walk: the boundary before
// it is returned.
func entryBoundary(buf []byte, base, offset int64) (end int64, pos int) {
	next := base
	for p := 0; p < len(buf); {
		size, n := binary.Uvarint(buf[p:])
		if n <= 0 || size > uint64(len(buf)-p-n) {
			return next, p
		}
		kind, off, count, ok := entrySpan(buf[p+n:p+n+min(int(size), spanHeadLen)], int(size))
		if !ok {
			return next, p
		}
		if kind == kindCompacted {
			off = next
		}
		if off+count > offset {
			return off, p
		}
		next = off + count
		p += n + int(size)
	}
	return next, len(buf)
}

// applyTruncate does a plan's file work on the log segs (the library closed)
// and returns the segments left and the start to persist (-1 for "keep").
// Segments that stay keep their objects (index, pinned readers); readers
// pinned on removed or replaced files keep a handle on the old file.
func applyTruncate(dir string, segs []*segmentFile, p truncPlan) ([]*segmentFile, int64, error) {
	keep := p.seg + 1
	if p.full {
		keep = 0
	}
	for j := len(segs) - 1; j >= keep; j-- {
		segs[j].retire()
		if err := os.Remove(segs[j].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, -1, fmt.Errorf("remove segment %s: %w", segs[j].path, err)
		}
		if err := step("removed " + filepath.Base(segs[j].path)); err != nil {
			return nil, -1, err
		}
	}
	if p.full {
		if err := atomicWrite(filepath.Join(dir, startFile), []byte(strconv.FormatInt(p.end, 10)+"\n")); err != nil {
			return nil, -1, err
		}
		return nil, p.end, nil
	}
	old := segs[p.seg]
	old.retire()
	if err := atomicWriteTmp(old.path, truncTmp, p.prefix); err != nil {
		return nil, -1, err
	}
	if err := step("cut " + filepath.Base(old.path)); err != nil {
		return nil, -1, err
	}
	t := &segmentFile{index: old.index, path: old.path, size: int64(len(p.prefix)), base: old.base}
	var end int64
	t.idx, t.entries, end = indexBytes(p.prefix, old.base)
	t.end = end
	out := append(append([]*segmentFile(nil), segs[:p.seg]...), t)
	return out, -1, nil
}

// finishTruncate completes a TruncateBack that a crash cut short, if the
// intent file is there: segs are the segments recoverDir found, startHint
// the persisted start. It returns the segments and start hint to open with
// and the recovery action taken (nil if none).
func finishTruncate(dir string, segs []*segmentFile, startHint int64) ([]*segmentFile, int64, *RecoveryAction, error) {
	path := filepath.Join(dir, truncateFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return segs, startHint, nil, nil
	}
	if err != nil {
		return segs, startHint, nil, fmt.Errorf("read %s: %w", path, err)
	}
	act := &RecoveryAction{Kind: "truncate_completed", Segment: path}
	kind, num, _ := strings.Cut(strings.TrimSpace(string(raw)), " ")
	e, perr := strconv.ParseInt(num, 10, 64)
	if perr != nil || e < 0 || (kind != "full" && kind != "cut") {
		// Written atomically, so only bit rot gets here; every step of a
		// truncation leaves a valid log, so the log is opened as it is.
		act.Kind, act.Detail = "temp_removed", fmt.Sprintf("unreadable truncation intent %q removed; the log is opened as found", raw)
	} else {
		start := int64(-1)
		if len(segs) > 0 {
			start = segs[0].base
			if startHint > start {
				start = min(startHint, segs[len(segs)-1].end)
			}
		}
		p := truncPlan{full: true, end: e}
		if kind == "cut" && len(segs) > 0 {
			if e >= segs[len(segs)-1].end {
				p = truncPlan{end: -1}
			} else if p, err = planTruncate(segs, start, e); err != nil {
				return segs, startHint, nil, err
			}
		}
		if p.end >= 0 {
			var hint int64
			if segs, hint, err = applyTruncate(dir, segs, p); err != nil {
				return segs, startHint, nil, err
			}
			if p.full {
				startHint = hint
			}
		}
		act.Detail = fmt.Sprintf("finished a truncation of the log to offset %d (%s) cut short by a crash", e, kind)
	}
	if err := os.Remove(path); err != nil {
		return segs, startHint, act, fmt.Errorf("remove %s: %w", path, err)
	}
	return segs, startHint, act, syncDir(dir)
}
