// Package storage is one partition log on github.com/tidwall/wal, hardened: every
// entry carries a CRC-32C and its own offset, torn tails are repaired at open,
// segment continuity is checked, calls into the library are serialized (sealed
// segments are read from their files outside the lock), the directory is fsynced
// when segments come and go, and durability is a group commit shared by writers.
package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/wal"
)

// Options tune one partition log.
type Options struct {
	// SegmentBytes is the size at which the log rolls to a new segment file. The
	// tail segment is held in memory whole, so this bounds memory per partition.
	SegmentBytes int
	// CacheSegments is how many sealed segments tidwall/wal keeps in memory.
	// Reads of sealed segments go to the files (readsealed.go), so in practice
	// it holds the segment just rolled.
	CacheSegments int
	// Logger receives recovery reports; nil means slog.Default().
	Logger *slog.Logger
	// OnFsync, if set, is called with the duration of every data fsync.
	OnFsync func(time.Duration)
	// OnRecovery, if set, is called for every repair made at open.
	OnRecovery func(RecoveryAction)
}

// DefaultSegmentBytes is the default segment size: small, because the tail segment
// lives in memory, yet large enough that rolling costs little.
const DefaultSegmentBytes = 1 << 20

// ErrClosed is returned by operations on a closed log.
var ErrClosed = errors.New("log closed")

// Log is one partition's log. All methods are safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // serializes every call into w: concurrent wal.Read panics
	w      *wal.Log
	closed bool
	failed error // set by a failed write or fsync; writes stop until heal succeeds
	// failedSync marks a failed fsync: Linux may have dropped the dirty pages, so
	// the page cache can no longer be trusted and only a restart recovers.
	failedSync bool
	lastHeal   time.Time
	start      int64 // first offset present
	end        int64 // next offset to be written
	segs       []*segmentFile
	tailBytes  int   // bytes in the tail segment, mirroring tidwall/wal's roll rule
	size       int64 // bytes in all segment files
	dirDirty   bool  // a segment was created since the directory was last fsynced
	batch      wal.Batch
	buf        []byte

	smu      sync.Mutex // group commit state
	scond    *sync.Cond
	syncing  bool
	synced   int64 // every offset below is durable
	sclosed  bool
	syncFile *os.File // our own handle on the tail segment, for fdatasync outside mu
	syncPath string
	syncGen  int
	tailGen  int // bumped when the tail file is replaced under the same name
}

// Open opens (creating if needed) the log in dir, repairing damage first.
// The repairs made are returned and also logged.
func Open(dir string, opts Options) (*Log, []RecoveryAction, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.CacheSegments <= 0 {
		opts.CacheSegments = 1
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("create log dir %s: %w", dir, err)
	}
	l := &Log{dir: dir, opts: opts, log: lg}
	l.scond = sync.NewCond(&l.smu)
	actions, err := l.load()
	if err != nil {
		return nil, actions, err
	}
	// Whatever a killed process left in the page cache is made durable now, before
	// anything is served from it.
	l.synced = -1
	if err := l.SyncTo(l.end); err != nil {
		l.w.Close()
		return nil, actions, err
	}
	return l, actions, nil
}

// load repairs the directory and opens the library on it, setting every field
// that describes the log's contents. The caller holds mu or has not shared l yet.
func (l *Log) load() (actions []RecoveryAction, err error) {
	segs, actions, err := recoverDir(l.dir)
	for _, a := range actions {
		l.log.Warn("log recovery", "dir", l.dir, "action", a.Kind, "segment", a.Segment, "bytes_dropped", a.BytesDropped, "lost", a.Lost, "detail", a.Detail)
		if l.opts.OnRecovery != nil {
			l.opts.OnRecovery(a)
		}
	}
	if err != nil {
		return actions, fmt.Errorf("recover log %s: %w", l.dir, err)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("open log %s: tidwall/wal panicked: %v: %w", l.dir, v, ErrCorrupt)
		}
	}()
	w, err := wal.Open(l.dir, &wal.Options{
		NoSync:           true, // we fsync ourselves, once per group of writers
		SegmentSize:      l.opts.SegmentBytes,
		SegmentCacheSize: l.opts.CacheSegments,
		NoCopy:           true, // decodeEntry copies under our lock
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	})
	if err != nil {
		return actions, fmt.Errorf("open log %s: %w", l.dir, err)
	}
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	if len(segs) == 0 { // a new log: tidwall created segment 1
		segs = []*segmentFile{{index: 1, path: l.dir + "/" + segmentName(1)}}
		l.dirDirty = true
	}
	tail := segs[len(segs)-1]
	start, end := int64(first)-1, int64(last)
	if start < int64(segs[0].index)-1 || end < int64(tail.index)-1 {
		w.Close()
		return actions, fmt.Errorf("open log %s: wal reports offsets %d..%d, segments say first %d tail %d: %w",
			l.dir, start, end, segs[0].index-1, tail.index-1, ErrCorrupt)
	}
	// A start moved by AdvanceStart inside a segment is kept in a small file.
	if raw, err := os.ReadFile(filepath.Join(l.dir, startFile)); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64); err == nil && v > start {
			start = min(v, end)
		}
	}
	l.w, l.start, l.end, l.segs = w, start, end, segs
	l.tailBytes = int(tail.size)
	l.size = 0
	for _, s := range segs {
		l.size += s.size
	}
	return actions, nil
}

// heal reopens a log whose write failed (a full disk, say): the library's
// memory no longer matches the file, so it is closed, the tail repaired as after
// a crash, and reopened. At most once a second; mu is held.
func (l *Log) heal() error {
	if l.failedSync || time.Since(l.lastHeal) < time.Second {
		return l.failed
	}
	l.lastHeal = time.Now()
	cause := l.failed
	func() {
		defer func() { recover() }()
		l.w.Close()
	}()
	l.tailGen++ // repair may replace the tail file: the syncer reopens its handle
	l.dirDirty = true
	if _, err := l.load(); err != nil {
		l.failed = fmt.Errorf("reopen %s after %v: %w", l.dir, cause, err)
		return l.failed
	}
	l.failed = nil
	l.log.Warn("log reopened after a write failure", "dir", l.dir, "cause", cause, "end_offset", l.end)
	return nil
}

// Dir returns the directory of the log.
func (l *Log) Dir() string { return l.dir }

// StartOffset returns the first offset in the log (the log start offset).
func (l *Log) StartOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.start
}

// EndOffset returns the offset the next appended record will get.
func (l *Log) EndOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

// DurableOffset returns the offset below which every record is fsynced.
func (l *Log) DurableOffset() int64 {
	l.smu.Lock()
	defer l.smu.Unlock()
	return l.synced
}

// Size returns the bytes the log's segment files occupy.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Append writes recs at the end of the log and returns the offset of the first.
// The records are not durable until SyncTo covers them.
func (l *Log) Append(recs []Record) (base int64, err error) {
	if len(recs) == 0 {
		return l.EndOffset(), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.failed != nil {
		if err := l.heal(); err != nil {
			return 0, err
		}
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("append to %s: tidwall/wal panicked: %v", l.dir, v)
			l.failed = err
		}
	}()
	base = l.end
	l.batch.Clear()
	for i := range recs {
		off := base + int64(i)
		l.buf = appendEntry(l.buf[:0], kindRecord, off, &recs[i])
		l.batch.Write(uint64(off)+1, l.buf)
	}
	if err := l.w.WriteBatch(&l.batch); err != nil {
		// The library may have written part of the batch; its state and ours can
		// no longer be trusted, so writes stop until the log is reopened.
		l.failed = fmt.Errorf("append to %s: %w", l.dir, err)
		return 0, l.failed
	}
	l.mirrorRoll(recs, base)
	l.end = base + int64(len(recs))
	for i := range recs {
		recs[i].Offset = base + int64(i)
	}
	return base, nil
}

// mirrorRoll repeats tidwall/wal v1.2.1's segment roll rule (roll before a batch
// when the tail is over SegmentBytes, and after any entry that makes it reach
// SegmentBytes) so we know the tail file without reaching into the library.
func (l *Log) mirrorRoll(recs []Record, base int64) {
	seg := l.opts.SegmentBytes
	roll := func(next int64) {
		t := l.segs[len(l.segs)-1]
		t.size = int64(l.tailBytes)
		l.segs = append(l.segs, &segmentFile{index: uint64(next) + 1, path: l.dir + "/" + segmentName(uint64(next)+1)})
		l.tailBytes = 0
		l.dirDirty = true
	}
	if l.tailBytes > seg {
		roll(base)
	}
	for i := range recs {
		n := encodedLen(&recs[i])
		n += uvarintLen(uint64(n))
		l.tailBytes += n
		l.size += int64(n)
		if l.tailBytes >= seg {
			roll(base + int64(i) + 1)
		}
	}
	l.segs[len(l.segs)-1].size = int64(l.tailBytes)
}

// SyncTo returns once every offset below end is durable. Concurrent callers share
// fsyncs: whoever finds no fsync running syncs everything written so far, and
// the others wait for it (group commit).
func (l *Log) SyncTo(end int64) error {
	l.smu.Lock()
	for l.syncing && l.synced < end {
		l.scond.Wait()
	}
	if l.synced >= end {
		l.smu.Unlock()
		return nil
	}
	if l.sclosed {
		l.smu.Unlock()
		return ErrClosed
	}
	l.syncing = true
	l.smu.Unlock()

	target, err := l.syncOnce()

	l.smu.Lock()
	l.syncing = false
	if err == nil && target > l.synced {
		l.synced = target
	}
	l.scond.Broadcast()
	l.smu.Unlock()
	return err
}

// syncOnce fsyncs the tail segment (and the directory when a segment was
// created) and returns the offset it made durable. Segments sealed before the
// tail were fsynced by tidwall/wal when it rolled.
func (l *Log) syncOnce() (int64, error) {
	// Let producers that were just woken append first, so this fsync covers them
	// too (PostgreSQL's commit_delay idea, at the cost of one scheduler yield).
	runtime.Gosched()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.failed != nil {
		l.mu.Unlock()
		return 0, l.failed
	}
	target := l.end
	path := l.segs[len(l.segs)-1].path
	gen := l.tailGen
	dirty := l.dirDirty
	l.dirDirty = false
	l.mu.Unlock()

	if path != l.syncPath || gen != l.syncGen {
		if l.syncFile != nil {
			l.syncFile.Close()
			l.syncFile = nil
		}
		f, err := os.Open(path)
		if err != nil {
			return 0, l.fail(fmt.Errorf("open tail segment %s for fsync: %w", path, err))
		}
		l.syncFile, l.syncPath, l.syncGen = f, path, gen
	}
	t0 := time.Now()
	if err := fdatasync(l.syncFile); err != nil {
		return 0, l.fail(fmt.Errorf("fsync %s: %w", path, err))
	}
	if dirty {
		if err := syncDir(l.dir); err != nil {
			return 0, l.fail(err)
		}
	}
	if l.opts.OnFsync != nil {
		l.opts.OnFsync(time.Since(t0))
	}
	return target, nil
}

// fail poisons the log after a failed fsync: Linux may have dropped the dirty
// pages, so nothing written since the last good fsync can be trusted.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = err
	}
	l.failedSync = true
	return err
}

// Read returns records from offset up to (not including) limit, stopping after
// maxBytes of encoded data but always returning at least one record if any.
// A damaged record is never returned as data: if it is the first one, Read
// returns a *CorruptError; otherwise the records before it are returned.
//
// Sealed segments are read from their files outside the partition mutex (see
// readsealed.go), so producers of the partition keep appending during a large
// read; only the tail segment, which tidwall/wal holds in memory, is read under
// the mutex.
func (l *Log) Read(offset, limit int64, maxBytes int) (recs []Record, err error) {
	nbytes := 0
	first := true
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, ErrClosed
		}
		if first {
			limit = min(limit, l.end)
			if offset < l.start || offset > l.end {
				l.mu.Unlock()
				return nil, fmt.Errorf("read %s at offset %d: %w (log holds %d..%d)", l.dir, offset, ErrOutOfRange, l.start, l.end)
			}
			first = false
		}
		if offset >= limit {
			l.mu.Unlock()
			return recs, nil
		}
		i := sort.Search(len(l.segs), func(i int) bool { return int64(l.segs[i].index)-1 > offset }) - 1
		if i < 0 { // below the first segment: retention removed it during this read
			l.mu.Unlock()
			if len(recs) > 0 {
				return recs, nil
			}
			return nil, fmt.Errorf("read %s at offset %d: %w (log starts at %d)", l.dir, offset, ErrOutOfRange, l.start)
		}
		if i == len(l.segs)-1 {
			recs, err = l.readTail(offset, limit, maxBytes, recs, nbytes)
			l.mu.Unlock()
			return recs, err
		}
		s := l.segs[i]
		r := sealedRead{seg: s, base: int64(s.index) - 1, from: offset, to: min(int64(l.segs[i+1].index)-1, limit)}
		s.pin()
		l.mu.Unlock()

		var full bool
		var rerr error
		recs, nbytes, offset, full, rerr = r.read(recs, nbytes, maxBytes)
		s.unpin()
		if rerr != nil {
			if len(recs) > 0 {
				return recs, nil
			}
			if errors.Is(rerr, os.ErrNotExist) { // removed before it was opened: only by a reopen
				return nil, fmt.Errorf("read %s at offset %d: segment gone: %w", l.dir, offset, ErrOutOfRange)
			}
			return nil, rerr
		}
		if full {
			return recs, nil
		}
	}
}

// readTail reads from the tail segment through the library; mu is held.
func (l *Log) readTail(offset, limit int64, maxBytes int, recs []Record, nbytes int) ([]Record, error) {
	for off := offset; off < limit; off++ {
		data, rerr := l.readEntry(off)
		var r Record
		if rerr == nil {
			r, rerr = decodeEntry(data, off)
		}
		if rerr == errCompacted {
			continue
		}
		if rerr != nil {
			if len(recs) > 0 {
				return recs, nil
			}
			return nil, rerr
		}
		recs = append(recs, r)
		nbytes += len(data)
		if nbytes >= maxBytes {
			break
		}
	}
	return recs, nil
}

// ErrOutOfRange is returned when a read starts outside the log.
var ErrOutOfRange = errors.New("offset out of range")

// readEntry reads the raw entry of one offset; a library panic or error on a
// damaged segment becomes a CorruptError.
func (l *Log) readEntry(off int64) (data []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			data, err = nil, &CorruptError{Offset: off, Reason: fmt.Sprintf("segment unreadable: %v", v)}
		}
	}()
	data, err = l.w.Read(uint64(off) + 1)
	if err != nil {
		return nil, &CorruptError{Offset: off, Reason: fmt.Sprintf("segment unreadable: %v", err)}
	}
	return data, nil
}

// SegmentInfo describes one segment for retention decisions.
type SegmentInfo struct {
	// BaseOffset is the first offset in the segment.
	BaseOffset int64
	// Bytes is the segment file's size.
	Bytes int64
	// LastTimestamp is the timestamp of the segment's last record (zero for the tail).
	LastTimestamp time.Time
	// Sealed is false for the tail segment, which is still being written.
	Sealed bool
}

// Segments lists the segments, oldest first, reading each sealed segment's last
// timestamp once.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		sealed := i < len(l.segs)-1
		out[i] = SegmentInfo{BaseOffset: int64(s.index) - 1, Bytes: s.size, Sealed: sealed}
		if sealed && !s.hasTS {
			if f, err := os.Open(s.path); err == nil {
				if _, ts, err := lastEntry(f, s.size); err == nil {
					s.lastTS, s.hasTS = ts, true
				}
				f.Close()
			}
		}
		if s.hasTS {
			out[i].LastTimestamp = time.UnixMilli(s.lastTS)
		}
	}
	return out
}

// TruncateFront removes every sealed segment wholly before offset; offset must be
// the base offset of a segment. The log start offset becomes offset.
func (l *Log) TruncateFront(offset int64) (err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	k := -1
	for i, s := range l.segs {
		if int64(s.index)-1 == offset {
			k = i
		}
	}
	if k <= 0 {
		if k == 0 {
			return nil
		}
		return fmt.Errorf("truncate %s at %d: not a segment boundary", l.dir, offset)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("truncate %s: tidwall/wal panicked: %v", l.dir, v)
		}
	}()
	for _, s := range l.segs[:k] {
		s.holdOpen() // readers that pinned it keep reading after the unlink
	}
	if err := l.w.TruncateFront(uint64(offset) + 1); err != nil {
		return fmt.Errorf("truncate %s at %d: %w", l.dir, offset, err)
	}
	for _, s := range l.segs[:k] {
		l.size -= s.size
	}
	if k == len(l.segs)-1 {
		l.tailGen++ // tidwall/wal rewrote the tail file under the same name
	}
	l.segs = append([]*segmentFile(nil), l.segs[k:]...)
	l.start = max(l.start, offset)
	return syncDir(l.dir)
}

// Close flushes and closes the log.
func (l *Log) Close() error {
	serr := l.SyncTo(l.EndOffset())
	l.smu.Lock()
	for l.syncing {
		l.scond.Wait()
	}
	l.sclosed = true
	l.smu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.syncFile != nil {
		l.syncFile.Close()
	}
	if err := l.w.Close(); err != nil && !errors.Is(err, wal.ErrClosed) {
		return fmt.Errorf("close log %s: %w", l.dir, err)
	}
	if errors.Is(serr, ErrClosed) {
		serr = nil
	}
	return serr
}

// startFile records a log start offset that AdvanceStart moved past the first
// record of a segment (segments can only be removed whole).
const startFile = "start-offset"

// AdvanceStart moves the log start offset up to off (Kafka DeleteRecords):
// records below it are no longer readable, and segments wholly below it are
// removed. The new start is durable before it returns.
func (l *Log) AdvanceStart(off int64) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if off > l.end {
		l.mu.Unlock()
		return fmt.Errorf("advance start of %s to %d: %w (end %d)", l.dir, off, ErrOutOfRange, l.end)
	}
	if off <= l.start {
		l.mu.Unlock()
		return nil
	}
	if err := atomicWrite(filepath.Join(l.dir, startFile), []byte(strconv.FormatInt(off, 10)+"\n")); err != nil {
		l.mu.Unlock()
		return fmt.Errorf("advance start of %s: %w", l.dir, err)
	}
	l.start = off
	cut := int64(-1)
	for i, s := range l.segs {
		if base := int64(s.index) - 1; i > 0 && base <= off {
			cut = base
		}
	}
	l.mu.Unlock()
	if cut > 0 {
		return l.TruncateFront(cut)
	}
	return nil
}

// Compact rewrites the sealed segments so that only records keep accepts stay;
// the others become 2-byte placeholders, so every kept record keeps its offset
// and reads skip the removed ones. The last entry of each segment always stays
// (it proves segment continuity at open). The segment being written is never
// touched. It returns the records removed and the bytes reclaimed.
func (l *Log) Compact(keep func(r *Record) bool) (removed int, reclaimed int64, err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, 0, ErrClosed
	}
	sealed := append([]*segmentFile(nil), l.segs[:len(l.segs)-1]...)
	l.mu.Unlock()
	for _, s := range sealed {
		n, saved, err := l.compactSegment(s, keep)
		if err != nil {
			return removed, reclaimed, err
		}
		removed += n
		reclaimed += saved
	}
	return removed, reclaimed, nil
}

func (l *Log) compactSegment(s *segmentFile, keep func(r *Record) bool) (int, int64, error) {
	buf, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil // retention removed it meanwhile
	}
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", s.path, err)
	}
	base := int64(s.index) - 1
	type frame struct {
		pos, end int
		kind     byte
	}
	var frames []frame
	for p := 0; p < len(buf); {
		end, kind, _, ok := frameAt(buf, p)
		if !ok {
			return 0, 0, nil // damaged: left for reads to report, never rewritten
		}
		frames = append(frames, frame{p, end, kind})
		p = end
	}
	out := make([]byte, 0, len(buf))
	removed := 0
	for i, f := range frames {
		if (f.kind == kindRecord || f.kind == kindProducerRecord) && i < len(frames)-1 {
			size, n := binary.Uvarint(buf[f.pos:])
			r, err := decodeEntry(buf[f.pos+n:f.pos+n+int(size)], base+int64(i))
			if err == nil && !keep(&r) {
				out = appendFrame(out, compactedEntry)
				removed++
				continue
			}
		}
		out = append(out, buf[f.pos:f.end]...)
	}
	if removed == 0 {
		return 0, 0, nil
	}
	tmp := s.path + ".REPAIR"
	if err := os.WriteFile(tmp, out, 0o640); err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact %s: %w", s.path, err)
	}
	if f, err := os.Open(tmp); err == nil {
		err = f.Sync()
		f.Close()
		if err != nil {
			os.Remove(tmp)
			return 0, 0, fmt.Errorf("compact %s: fsync: %w", s.path, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	still := false
	for _, t := range l.segs[:len(l.segs)-1] {
		if t == s {
			still = true
		}
	}
	if !still || l.closed {
		os.Remove(tmp)
		return 0, 0, nil
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact %s: %w", s.path, err)
	}
	if err := l.w.ClearCache(); err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", s.path, err)
	}
	saved := s.size - int64(len(out))
	s.size = int64(len(out))
	l.size -= saved
	return removed, saved, syncDir(l.dir)
}
