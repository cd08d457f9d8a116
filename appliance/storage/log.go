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
	"hash/crc32"
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
	// SegmentBytes is the size at which the log rolls to a new segment file.
	// Retention removes whole segments. The tail segment is written through to
	// its file, not held in memory, so this does not size memory per partition.
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
	// Syncer, if set, flushes the log's writes together with those of the
	// other logs sharing it (one syncfs when many wait at once); nil: the log
	// fdatasyncs its own tail file.
	Syncer *Syncer
}

// DefaultSegmentBytes is the default segment size: small, so that retention
// frees space in small steps, yet large enough that rolling costs little.
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
	idleSeg    *segmentFile // the sealed segment read last, whose handle stays open (readsealed.go)
	tailBytes  int          // bytes in the tail segment, mirroring tidwall/wal's roll rule
	nextIndex  uint64       // WAL index of the next entry
	size       int64        // bytes in all segment files
	dirDirty   bool         // a segment was created since the directory was last fsynced
	batch      wal.Batch
	buf        []byte
	spans      []entrySpanRec

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
	// anything is served from it. A log without a byte in its segments (a
	// partition just created) has nothing to make durable: its directory is
	// fsynced with its first records instead (dirDirty), which spares a topic
	// of 4,096 partitions two journal commits per partition at creation.
	l.synced = -1
	if l.size == 0 {
		l.synced, l.dirDirty = l.end, true
	} else if err := l.SyncTo(l.end); err != nil {
		l.w.Close()
		return nil, actions, err
	}
	return l, actions, nil
}

// load repairs the directory and opens the library on it, setting every field
// that describes the log's contents. The caller holds mu or has not shared l yet.
func (l *Log) load() (actions []RecoveryAction, err error) {
	// A start moved by AdvanceStart or TruncateFront is kept in a small file.
	startHint := int64(-1)
	if raw, err := os.ReadFile(filepath.Join(l.dir, startFile)); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64); err == nil && v >= 0 {
			startHint = v
		}
	}
	segs, actions, err := recoverDir(l.dir, startHint)
	for _, a := range actions {
		l.log.Warn("log recovery", "dir", l.dir, "action", a.Kind, "segment", a.Segment, "bytes_dropped", a.BytesDropped, "lost", a.Lost, "detail", a.Detail)
		if l.opts.OnRecovery != nil {
			l.opts.OnRecovery(a)
		}
	}
	if err != nil {
		return actions, fmt.Errorf("recover log %s: %w", l.dir, err)
	}
	// A TruncateBack cut short by a crash is finished before anything else.
	segs, startHint, done, err := finishTruncate(l.dir, segs, startHint)
	if done != nil {
		l.log.Warn("log recovery", "dir", l.dir, "action", done.Kind, "segment", done.Segment, "detail", done.Detail)
		if l.opts.OnRecovery != nil {
			l.opts.OnRecovery(*done)
		}
		actions = append(actions, *done)
	}
	if err != nil {
		return actions, fmt.Errorf("recover log %s: %w", l.dir, err)
	}
	return actions, l.attach(segs, startHint)
}

// attach opens the library on a directory whose segments are segs (checked
// and repaired) and sets every field that describes the log's contents;
// startHint is the persisted log start (-1 if none). l.w is only replaced on
// success. The caller holds mu or has not shared l yet.
func (l *Log) attach(segs []*segmentFile, startHint int64) (err error) {
	l.setIdleSeg(nil) // its handle may be of a file the new segments replace
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("open log %s: tidwall/wal panicked: %v: %w", l.dir, v, ErrCorrupt)
		}
	}()
	w, err := wal.Open(l.dir, &wal.Options{
		NoSync:           true, // we fsync ourselves, once per group of writers
		SegmentSize:      l.opts.SegmentBytes,
		SegmentCacheSize: l.opts.CacheSegments,
		NoCopy:           true, // reads copy under our lock
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	})
	if err != nil {
		return fmt.Errorf("open log %s: %w", l.dir, err)
	}
	last, _ := w.LastIndex()
	if len(segs) == 0 { // a new log: tidwall created segment 1
		segs = []*segmentFile{{index: 1, path: l.dir + "/" + segmentName(1), base: max(startHint, 0), idx: &segIndex{}}}
		segs[0].end = segs[0].base
		l.dirDirty = true
	}
	tail := segs[len(segs)-1]
	if want := tail.index + uint64(tail.entries) - 1; last != want {
		w.Close()
		return fmt.Errorf("open log %s: wal reports last index %d, the tail segment's %d entries end at %d: %w",
			l.dir, last, tail.entries, want, ErrCorrupt)
	}
	start, end := segs[0].base, tail.end
	if startHint > start {
		start = min(startHint, end)
	}
	l.w, l.start, l.end, l.segs = w, start, end, segs
	l.nextIndex = last + 1
	l.tailBytes = int(tail.size)
	l.size = 0
	for _, s := range segs {
		l.size += s.size
	}
	return nil
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

// appendBatchBytes bounds the records Append puts in one batch (Kafka's
// producer batch.size default): a read decodes whole batches, and a damaged
// batch is reported for all its offsets.
const appendBatchBytes = 16 << 10

// Append writes recs at the end of the log and returns the offset of the first.
// The records are written as uncompressed record batches (a record carrying
// Producer ends an idempotent producer's batch, whose records become one
// batch with its producer fields). The records are not durable until SyncTo
// covers them.
func (l *Log) Append(recs []Record) (base int64, err error) {
	return l.AppendFormat(recs, BatchFormat{})
}

// AppendFormat is Append with the batches compressed and typed as f says (a
// topic's compression.type and message.timestamp.type for the records katka
// itself writes).
func (l *Log) AppendFormat(recs []Record, f BatchFormat) (base int64, err error) {
	if len(recs) == 0 {
		return l.EndOffset(), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	base = l.end
	for i := range recs {
		recs[i].Offset = base + int64(i)
	}
	l.buf = l.buf[:0]
	l.spans = l.spans[:0]
	// inProd marks the records of idempotent producers' batches (the Count()
	// records up to one carrying Producer): they are never split.
	var inProd []bool
	for i := range recs {
		if p := recs[i].Producer; p != nil {
			if inProd == nil {
				inProd = make([]bool, len(recs))
			}
			for j := max(0, int64(i)-p.Count()+1); j <= int64(i); j++ {
				inProd[j] = true
			}
		}
	}
	for from := 0; from < len(recs); {
		to, size := from, 0
		for to < len(recs) {
			size += kafkaRecordLen(&recs[to])
			to++
			if recs[to-1].Producer != nil {
				break
			}
			if inProd != nil && to < len(recs) && inProd[to] && !inProd[to-1] {
				break // a producer's batch starts next
			}
			if size >= appendBatchBytes && (inProd == nil || !inProd[to-1]) {
				break
			}
		}
		var prod *ProducerBatch
		if p := recs[to-1].Producer; p != nil && p.Count() == int64(to-from) {
			prod = p
		}
		start := len(l.buf)
		l.buf = append(l.buf, 0, 0, 0, 0, kindBatch)
		l.buf = binary.BigEndian.AppendUint64(l.buf, uint64(recs[from].Offset))
		l.buf = append(l.buf, make([]byte, 8)...) // max timestamp, set below
		l.buf = encodeBatch(l.buf, recs[from:to], prod, f)
		copy(l.buf[start+13:], l.buf[start+entryHeaderLen+35:start+entryHeaderLen+43])
		l.buf = finishEntry(l.buf, start)
		l.spans = append(l.spans, entrySpanRec{off: recs[from].Offset, count: int64(to - from), start: start, end: len(l.buf)})
		from = to
	}
	if err := l.writeEntries(); err != nil {
		return 0, err
	}
	return base, nil
}

// AppendBatches writes record batches (Kafka record batch v2, magic 2, as a
// producer sent them: compression, timestamps and producer fields are kept)
// at the end of the log, each as one entry. Each batch gets the next base
// offset (written into its base offset field, which its CRC does not cover)
// and the partition leader epoch 0. It returns the first batch's base offset
// and the offset after the last batch (the new end offset). A batch that is
// malformed or fails its CRC is refused and nothing is written. The batches
// are not durable until SyncTo covers them.
func (l *Log) AppendBatches(batches [][]byte) (base, end int64, err error) {
	return l.AppendBatchesEpoch(batches, 0)
}

// AppendBatchesEpoch is AppendBatches with epoch written into every batch's
// partitionLeaderEpoch field (not covered by the batch CRC): what a
// partition leader appends, so that followers and OffsetForLeaderEpoch can
// tell which leader wrote which offsets.
func (l *Log) AppendBatchesEpoch(batches [][]byte, epoch int32) (base, end int64, err error) {
	if err := l.checkBatches(batches); err != nil {
		return 0, 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, 0, err
	}
	base, end = l.end, l.end
	if len(batches) == 0 {
		return base, end, nil
	}
	if end, err = l.writeBatches(batches, epoch, false); err != nil {
		return 0, 0, err
	}
	return base, end, nil
}

// ErrNotContiguous is wrapped by AppendReplicated's error when the batches
// do not continue the log exactly: the first must start at EndOffset and
// each next one where the previous one ends.
var ErrNotContiguous = errors.New("replicated batches are not contiguous with the log")

// AppendReplicated writes record batches as a follower copies them from its
// leader: each keeps its base offset and partitionLeaderEpoch exactly as the
// leader stored them. The first batch must start at EndOffset and each next
// one at the previous one's end (base offset + last offset delta + 1); if
// not, nothing is written and the error wraps ErrNotContiguous. Batches are
// checked as AppendBatches checks them (header, length, CRC). It returns the
// new end offset; the batches are not durable until SyncTo covers them.
func (l *Log) AppendReplicated(batches [][]byte) (end int64, err error) {
	if err := l.checkBatches(batches); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	end = l.end
	for i, b := range batches {
		h, _ := ParseBatchHeader(b) // checked above
		if h.BaseOffset != end {
			return 0, fmt.Errorf("append replicated to %s: batch %d starts at offset %d, expected %d: %w", l.dir, i, h.BaseOffset, end, ErrNotContiguous)
		}
		end = h.NextOffset()
	}
	if len(batches) == 0 {
		return end, nil
	}
	return l.writeBatches(batches, 0, true)
}

// writeBatches writes checked batches from the log's end, each with the
// next base offset and epoch (or its own epoch, if own), and returns the new
// end; mu is held.
func (l *Log) writeBatches(batches [][]byte, epoch int32, own bool) (end int64, err error) {
	l.buf = l.buf[:0]
	l.spans = l.spans[:0]
	end = l.end
	for _, b := range batches {
		count := int64(int32(binary.BigEndian.Uint32(b[23:]))) + 1
		start := len(l.buf)
		e := epoch
		if own {
			e = ParseBatchEpoch(b)
		}
		l.buf = appendBatchEntryHead(l.buf, end, e, b)
		l.spans = append(l.spans, entrySpanRec{off: end, count: count, start: start, end: len(l.buf), body: b[batchHeadLen:]})
		end += count
	}
	if err := l.writeEntries(); err != nil {
		return 0, err
	}
	return end, nil
}

// checkBatches checks each batch's header, length and CRC before an append.
func (l *Log) checkBatches(batches [][]byte) error {
	for i, b := range batches {
		if _, err := ParseBatchHeader(b); err != nil {
			return fmt.Errorf("append to %s: batch %d: %w", l.dir, i, err)
		}
		if !CheckBatchCRC(b) {
			return fmt.Errorf("append to %s: batch %d: record batch CRC-32C mismatch", l.dir, i)
		}
	}
	return nil
}

// entrySpanRec is one entry being appended: its offsets and its bytes in l.buf,
// or, for a produced batch (body set), its head and trailer in l.buf around
// the batch's bytes from the request, which are written without a copy.
type entrySpanRec struct {
	off, count int64
	start, end int
	body       []byte
}

// size is the entry's length in bytes.
func (e *entrySpanRec) size() int { return e.end - e.start + len(e.body) }

// batchHeadLen is the part of a record batch that an entry stores rewritten:
// base offset, length, partition leader epoch (the batch CRC does not cover them).
const batchHeadLen = 16

// appendBatchEntryHead appends, for the entry holding batch at offset off in
// leader epoch epoch, the entry's header and the batch's rewritten first 16
// bytes, then the length
// trailer, and fills in the CRC-32C over all of it and batch[16:]: the entry
// is dst[start:start+37] + batch[16:] + dst[start+37:], and the batch's bytes
// are not copied (writeEntries hands them to the library as they are).
func appendBatchEntryHead(dst []byte, off int64, epoch int32, batch []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kindBatch)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	dst = append(dst, batch[35:43]...) // max timestamp
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	dst = append(dst, batch[8:12]...) // batch length
	dst = binary.BigEndian.AppendUint32(dst, uint32(epoch))
	head := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(dst)-start+len(batch)-batchHeadLen+4))
	crc := crc32.Update(0, castagnoli, dst[start+4:head])
	crc = crc32.Update(crc, castagnoli, batch[batchHeadLen:])
	crc = crc32.Update(crc, castagnoli, dst[head:])
	binary.BigEndian.PutUint32(dst[start:], crc)
	return dst
}

// writable reports why the log cannot take writes, healing it if it can; mu is held.
func (l *Log) writable() error {
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return l.heal()
	}
	return nil
}

// writeEntries writes the entries of l.spans (bytes in l.buf) through the
// library and mirrors them in the segment list, offsets and index; mu is held.
func (l *Log) writeEntries() (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("append to %s: tidwall/wal panicked: %v", l.dir, v)
			l.failed = err
		}
	}()
	defer l.releaseBuffers()
	l.batch.Clear()
	for i, e := range l.spans {
		if e.body != nil {
			h := e.end - 4
			l.batch.WriteParts(l.nextIndex+uint64(i), l.buf[e.start:h], e.body, l.buf[h:e.end])
		} else {
			l.batch.WriteParts(l.nextIndex+uint64(i), l.buf[e.start:e.end])
		}
	}
	if err := l.w.WriteBatch(&l.batch); err != nil {
		// The library may have written part of the batch; its state and ours can
		// no longer be trusted, so writes stop until the log is reopened.
		l.failed = fmt.Errorf("append to %s: %w", l.dir, err)
		return l.failed
	}
	l.mirror()
	return nil
}

// keepBufferBytes bounds the encoding buffers a partition keeps between
// appends: memory per partition must not grow with the largest batch ever
// written to it (1,024 partitions each keeping a 1 MiB buffer is 1 GiB).
const keepBufferBytes = 16 << 10

// releaseBuffers drops the references writeEntries handed the library (the
// request's batches) and the buffers that grew past keepBufferBytes; mu is held.
func (l *Log) releaseBuffers() {
	l.batch.Clear()
	clear(l.spans)
	l.spans = l.spans[:0]
	if cap(l.buf) > keepBufferBytes {
		l.buf = nil
	}
	if cap(l.spans) > keepBufferBytes/64 {
		l.spans = nil
	}
}

// mirror repeats tidwall/wal v1.2.1's segment roll rule (roll before a batch
// when the tail is over SegmentBytes, and after any entry that makes it reach
// SegmentBytes) so we know the tail file without reaching into the library,
// and indexes the entries just written; mu is held.
func (l *Log) mirror() {
	seg := l.opts.SegmentBytes
	roll := func(next int64) {
		t := l.segs[len(l.segs)-1]
		t.size = int64(l.tailBytes)
		l.segs = append(l.segs, &segmentFile{index: l.nextIndex, path: l.dir + "/" + segmentName(l.nextIndex),
			base: next, end: next, idx: &segIndex{}})
		l.tailBytes = 0
		l.dirDirty = true
		l.sealIndex(t)
		l.trimIndexes()
	}
	if l.tailBytes > seg {
		roll(l.end)
	}
	for _, e := range l.spans {
		t := l.segs[len(l.segs)-1]
		n := e.size()
		n += uvarintLen(uint64(n))
		t.fmu.Lock()
		t.idx.add(e.off, int64(l.tailBytes), t.entries)
		t.fmu.Unlock()
		t.entries++
		t.end = e.off + e.count
		l.end = t.end
		l.nextIndex++
		l.tailBytes += n
		l.size += int64(n)
		if l.tailBytes >= seg {
			roll(l.end)
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
	if err == nil && target < end {
		// Only TruncateBack makes the log end below what an append returned.
		return fmt.Errorf("sync %s to %d: the log ends at %d: %w", l.dir, end, target, ErrTruncated)
	}
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
	if s := l.opts.Syncer; s != nil {
		dir := ""
		if dirty {
			dir = l.dir
		}
		if err := s.sync(l.syncFile, dir); err != nil {
			return 0, l.fail(err)
		}
	} else {
		if err := fdatasync(l.syncFile); err != nil {
			return 0, l.fail(fmt.Errorf("fsync %s: %w", path, err))
		}
		if dirty {
			if err := syncDir(l.dir); err != nil {
				return 0, l.fail(err)
			}
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
// maxBytes of stored data but always returning at least one record if any.
// Records are decoded out of the stored batches (decompressed if need be);
// records below offset in the first batch are skipped, as are control
// batches. A damaged entry is never returned as data: if it is the first one,
// Read returns a *CorruptError for offset; otherwise the records before it
// are returned.
//
// Sealed segments are read from their files outside the partition mutex (see
// readsealed.go), so producers of the partition keep appending during a large
// read; only the tail segment, which tidwall/wal holds in memory, is read under
// the mutex.
func (l *Log) Read(offset, limit int64, maxBytes int) ([]Record, error) {
	c := &collector{from: offset, to: limit, maxBytes: maxBytes}
	if err := l.read(offset, limit, c); err != nil {
		return nil, err
	}
	return c.recs, nil
}

// ReadBatches returns stored record batches from the one holding offset up to
// limit, as they are stored (compressed, producer fields kept), concatenated
// as a Kafka fetch response carries them: the first batch may start before
// offset (Kafka clients skip the records below their fetch offset), and no
// batch is decoded. It returns the batches that fit in maxBytes, but always
// the first whole, however large. next is the offset after the last batch
// returned. Entries written by the per-record format of earlier versions are
// served as uncompressed batches made on the fly. A damaged entry is never
// returned: if it is the first one, ReadBatches returns a *CorruptError for
// offset.
//
// ReadBatches copies what ReadBatchParts reads into one slice; the Kafka
// fetch path uses ReadBatchParts, which does not copy.
func (l *Log) ReadBatches(offset, limit int64, maxBytes int) (data []byte, next int64, err error) {
	bp, err := l.ReadBatchParts(offset, limit, maxBytes)
	if err != nil {
		return nil, 0, err
	}
	defer bp.Release()
	data = make([]byte, 0, bp.Len)
	for _, b := range bp.Parts {
		data = append(data, b...)
	}
	return data, bp.Next, nil
}

// BatchParts is what ReadBatchParts returns: stored record batches, one per
// element of Parts, in offset order, as ReadBatches would concatenate them.
// The parts are slices of buffers the BatchParts owns (pooled and reused):
// they are valid until Release.
type BatchParts struct {
	// Parts are the batches, each one whole record batch v2.
	Parts [][]byte
	// Len is the total length of Parts.
	Len int
	// Next is the offset after the last batch.
	Next int64
	// Held is the memory Parts keep alive until Release: the capacity of the
	// read buffers and of the tail entries they are slices of (at least Len;
	// a fetch counts it against its memory budget).
	Held int
	// More says the read stopped before a stored batch that would not fit in
	// maxBytes (it was not read): the partition has more to give than the
	// read's room, which a fetch filling a response needs to know.
	More bool
	bufs []*[]byte
}

// Release returns the buffers behind Parts for reuse; Parts must not be used
// after it. Release on a nil BatchParts does nothing.
func (p *BatchParts) Release() {
	if p == nil {
		return
	}
	for _, b := range p.bufs {
		putReadBuf(b)
	}
	p.bufs, p.Parts, p.Held = nil, nil, 0
}

// ReadBatchParts is ReadBatches without the copy into one slice: the batches
// of sealed segments are read from the file straight into pooled buffers
// (one pread per up to maxBytes, no intermediate reader), checked there
// (every entry's CRC-32C and offset, as always) and returned as slices of
// those buffers, so a fetch can hand them to the socket as they are (writev).
// The caller must Release the result.
func (l *Log) ReadBatchParts(offset, limit int64, maxBytes int) (*BatchParts, error) {
	c := &collector{from: offset, to: limit, maxBytes: maxBytes, batches: true, next: offset, parts: &BatchParts{}}
	if err := l.read(offset, limit, c); err != nil {
		c.parts.Release()
		return nil, err
	}
	if err := c.flush(); err != nil {
		c.parts.Release()
		return nil, err
	}
	c.parts.Next = c.next
	return c.parts, nil
}

// read feeds the entries from the one holding offset up to limit to c.
func (l *Log) read(offset, limit int64, c *collector) error {
	first := true
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		if first {
			limit = min(limit, l.end)
			c.to = limit
			if start, end := l.start, l.end; offset < start || offset > end {
				l.mu.Unlock()
				return fmt.Errorf("read %s at offset %d: %w (log holds %d..%d)", l.dir, offset, ErrOutOfRange, start, end)
			}
			first = false
		}
		if offset >= limit {
			l.mu.Unlock()
			return nil
		}
		// Going on from where the previous segment's read stopped: nothing
		// below it is served again. That offset is a segment boundary unless
		// TruncateBack changed the segments meanwhile, and then a read from
		// an index point before it must not repeat what was served.
		c.from = max(c.from, offset)
		i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
		if i < 0 { // below the first segment: retention removed it during this read
			start := l.start
			l.mu.Unlock()
			if c.n > 0 {
				return nil
			}
			return fmt.Errorf("read %s at offset %d: %w (log starts at %d)", l.dir, offset, ErrOutOfRange, start)
		}
		if i == len(l.segs)-1 {
			err := l.readTail(offset, limit, c)
			l.mu.Unlock()
			return err
		}
		s := l.segs[i]
		r := sealedRead{log: l, seg: s, base: s.base, from: offset, to: min(l.segs[i+1].base, limit)}
		l.setIdleSeg(s)
		s.pin()
		l.mu.Unlock()

		next, full, rerr := r.read(c)
		s.unpin()
		if rerr != nil {
			if c.n > 0 {
				return nil
			}
			if errors.Is(rerr, os.ErrNotExist) { // removed before it was opened: only by a reopen
				return fmt.Errorf("read %s at offset %d: segment gone: %w", l.dir, offset, ErrOutOfRange)
			}
			return rerr
		}
		if full {
			return nil
		}
		offset = next
	}
}

// readTail reads from the tail segment through the library; mu is held.
func (l *Log) readTail(offset, limit int64, c *collector) error {
	t := l.segs[len(l.segs)-1]
	n, off := 0, t.base
	t.fmu.Lock()
	if pt, ok := t.idx.find(offset); ok {
		n, off = int(pt.n), pt.off
	}
	t.fmu.Unlock()
	for n < t.entries && off < limit {
		// One read of the file per run of entries, sized by what the
		// response still has room for plus the entries an index point may
		// sit before the offset (a pread and a buffer per entry were a
		// quarter of katka's CPU for a fetch of 4,096 partitions).
		run, size, err := l.readTailRun(t.index+uint64(n), max(off, offset), c.room()+indexInterval)
		if err != nil {
			if c.n > 0 {
				return nil
			}
			return err
		}
		// A tail run is read from the file into a buffer of its own
		// (third_party/tidwall-wal: the tail is not kept in memory), so a
		// batch is served as a slice of it, not copied: a consumer at the
		// end holds the bytes it reads, not a 1 MiB arena per partition
		// (64 groups of 16 partitions held 130 MB of arenas for kilobytes
		// of records).
		held, full := false, false
		for _, data := range run {
			kept := c.kept()
			var next int64
			next, full, err = c.add(data, off, true)
			if err != nil {
				break
			}
			held = held || c.kept() > kept
			off = next
			n++
			if full || off >= limit {
				break
			}
		}
		if held {
			c.parts.Held += size
		}
		if err != nil {
			if c.n > 0 {
				return nil
			}
			return err
		}
		if full {
			break
		}
	}
	return nil
}

// readTailRun reads tail entries from WAL index idx on, at most maxBytes of
// them beyond the first (off is the first's offset, for the error).
func (l *Log) readTailRun(idx uint64, off int64, maxBytes int) (run [][]byte, size int, err error) {
	defer func() {
		if v := recover(); v != nil {
			run, size, err = nil, 0, &CorruptError{Offset: off, Reason: fmt.Sprintf("segment unreadable: %v", v)}
		}
	}()
	run, size, err = l.w.ReadTail(idx, maxBytes)
	if err != nil {
		return nil, 0, &CorruptError{Offset: off, Reason: fmt.Sprintf("segment unreadable: %v", err)}
	}
	return run, size, nil
}

// collector gathers what a read returns, entry by entry: decoded records for
// Read, stored batch bytes for ReadBatches.
type collector struct {
	from, to int64 // records below from are skipped; entries from to on are not read
	maxBytes int
	// cut is set when Read stopped inside a stored batch; cutEntry is that
	// batch's first offset (a position hint must point at its entry).
	cut      bool
	cutEntry int64
	nbytes   int
	n        int // entries served
	batches  bool
	recs     []Record
	parts    *BatchParts // ReadBatchParts: the batches served
	next     int64       // ReadBatches: offset after the last entry served
	v1       []Record    // ReadBatches: per-record entries waiting to be served as one batch
}

// collectorMark is a collector's state to roll back to.
type collectorMark struct{ nbytes, n, recs, parts, plen, v1 int }

func (c *collector) mark() collectorMark {
	m := collectorMark{nbytes: c.nbytes, n: c.n, recs: len(c.recs), v1: len(c.v1)}
	if c.parts != nil {
		m.parts, m.plen = len(c.parts.Parts), c.parts.Len
	}
	return m
}

func (c *collector) reset(m collectorMark) {
	c.nbytes, c.n, c.recs, c.v1 = m.nbytes, m.n, c.recs[:m.recs], c.v1[:m.v1]
	if c.parts != nil {
		c.parts.Parts, c.parts.Len = c.parts.Parts[:m.parts], m.plen
	}
	c.cut = false
	if c.parts != nil {
		c.parts.More = false
	}
}

// buffer returns a pooled buffer of at least n bytes (length n) that the
// read's BatchParts owns until it is released.
func (c *collector) buffer(n int) []byte {
	b := getReadBuf(n)
	c.parts.bufs = append(c.parts.bufs, b)
	c.parts.Held += cap(*b)
	return (*b)[:n]
}

// kept is the number of batches served so far (ReadBatchParts), 0 otherwise.
// room is how many more stored bytes the read may return.
func (c *collector) room() int { return max(c.maxBytes-c.nbytes, 0) }

func (c *collector) kept() int {
	if c.parts == nil {
		return 0
	}
	return len(c.parts.Parts)
}

// keep returns b itself if it stays valid (a buffer this read owns), else a
// copy of it in a pooled buffer of the read.
func (c *collector) keep(b []byte, stable bool) []byte {
	if stable {
		return b
	}
	k := c.buffer(len(b))
	copy(k, b)
	return k[:len(b):len(b)]
}

// add takes one raw entry whose first offset must be off and returns the
// offset after it and whether maxBytes is reached. An entry ending at or
// before from is stepped over. data is only valid during the call unless
// stable says it lies in a buffer the read owns (then a ReadBatchParts part
// is a slice of it, not a copy).
func (c *collector) add(data []byte, off int64, stable bool) (next int64, full bool, err error) {
	if len(data) >= entryMinLen && data[4] == kindBatch && !c.fits(off, len(data)-entryOverhead) {
		// Not checked or kept: it is not served. Should its head be
		// damaged, the next read starts at it and reports the damage.
		return off, true, nil
	}
	at := max(off, c.from) // the offset a damaged entry is reported at
	if len(data) == 1 && data[0] == kindCompacted {
		return off + 1, false, nil
	}
	kind, eoff, err := checkEntry(data)
	if err != nil {
		return off, false, &CorruptError{Offset: at, Reason: err.Error()}
	}
	if eoff != off {
		return off, false, &CorruptError{Offset: at, Reason: fmt.Sprintf("entry holds offset %d, expected %d", eoff, off)}
	}
	next = off + entryCount(kind, data)
	if next <= c.from {
		steps.Add(1)
		return next, false, nil
	}
	switch kind {
	case kindLost, kindLostRange:
		return off, false, &CorruptError{Offset: at, Reason: "record was destroyed on disk and replaced by a placeholder at recovery"}
	case kindRecord, kindProducerRecord:
		r, err := decodeEntry(data, off)
		if err != nil {
			return off, false, err
		}
		if c.batches {
			c.v1 = append(c.v1, r)
		} else {
			c.recs = append(c.recs, r)
		}
	case kindBatch:
		b := data[entryHeaderLen : len(data)-4]
		if c.batches {
			if err := c.flush(); err != nil {
				return off, false, err
			}
			c.parts.Parts = append(c.parts.Parts, c.keep(b, stable))
			c.parts.Len += len(b)
		} else {
			start := len(c.recs)
			if c.recs, err = decodeBatch(c.recs, b, c.from, c.to); err != nil {
				return off, false, &CorruptError{Offset: at, Reason: "record batch: " + err.Error()}
			}
			// Read returns records, so maxBytes holds at record granularity
			// as it did with one entry per record: a stored batch is cut
			// after the record that reaches it (at least one record).
			for i := start; i < len(c.recs); i++ {
				if c.nbytes >= c.maxBytes && i > 0 {
					c.recs = c.recs[:i]
					c.next = c.recs[i-1].Offset + 1
					c.n++
					c.cut, c.cutEntry = true, off
					return c.next, true, nil
				}
				c.nbytes += recordBytes(c.recs[i])
			}
			c.next = next
			c.n++
			return next, c.nbytes >= c.maxBytes, nil
		}
	}
	c.next = next
	c.n++
	c.nbytes += len(data)
	return next, c.nbytes >= c.maxBytes, nil
}

// recordBytes is what a decoded record counts against Read's maxBytes: its
// key, value and headers plus a record's framing in a batch.
func recordBytes(r Record) int {
	n := len(r.Key) + len(r.Value) + 20
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 4
	}
	return n
}

// fits reports whether a stored batch of n bytes whose first offset is off
// joins a ReadBatchParts read, and marks the read stopped in front of it if
// not. The first batch always joins (a consumer never stalls behind a batch
// larger than its limit); a later one only if the batches stay within
// maxBytes. Kafka's fetch stops at the limit too (cutting the last batch,
// which the client drops); reading and checking a batch only for the caller to
// drop it cost a 1 MiB fetch of 1 MiB batches twice its reads.
func (c *collector) fits(off int64, n int) bool {
	if c.parts == nil || len(c.parts.Parts) == 0 || len(c.v1) > 0 || off < c.from || c.parts.Len+n <= c.maxBytes {
		return true
	}
	c.parts.More = true
	return false
}

// flush serves the per-record entries gathered for ReadBatches as one
// uncompressed batch.
func (c *collector) flush() error {
	if len(c.v1) == 0 {
		return nil
	}
	b := encodeBatch(nil, c.v1, nil, BatchFormat{})
	c.parts.Parts = append(c.parts.Parts, b)
	c.parts.Len += len(b)
	c.parts.Held += cap(b)
	c.v1 = c.v1[:0]
	return nil
}

// ErrOutOfRange is returned when a read starts outside the log.
var ErrOutOfRange = errors.New("offset out of range")

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
		out[i] = SegmentInfo{BaseOffset: s.base, Bytes: s.size, Sealed: sealed}
		if sealed && !s.hasTS {
			if f, err := os.Open(s.path); err == nil {
				if _, _, ts, err := lastEntry(f, s.size); err == nil {
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
		if s.base == offset {
			k = i
			break
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
	// The new start is persisted first: once the segments before it are gone,
	// an empty segment left alone would not tell its offsets (a batch log has
	// fewer WAL indexes than offsets).
	if offset > l.start {
		if err := atomicWrite(filepath.Join(l.dir, startFile), []byte(strconv.FormatInt(offset, 10)+"\n")); err != nil {
			return fmt.Errorf("truncate %s at %d: %w", l.dir, offset, err)
		}
	}
	for _, s := range l.segs[:k] {
		s.retire() // readers that pinned it keep reading after the unlink
		if s == l.idleSeg {
			l.idleSeg = nil
		}
	}
	if err := l.w.TruncateFront(l.segs[k].index); err != nil {
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
	l.setIdleSeg(nil)
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

// setIdleSeg makes s (nil: none) the log's idle segment, whose read handle
// stays open between reads; the one it replaces closes its handle once unused.
// mu is held.
func (l *Log) setIdleSeg(s *segmentFile) {
	if l.idleSeg == s {
		return
	}
	if l.idleSeg != nil {
		l.idleSeg.setIdle(false)
	}
	l.idleSeg = s
	if s != nil {
		s.setIdle(true)
	}
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
	if end := l.end; off > end {
		l.mu.Unlock()
		return fmt.Errorf("advance start of %s to %d: %w (end %d)", l.dir, off, ErrOutOfRange, end)
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
		if i > 0 && s.base <= off {
			cut = s.base
		}
	}
	l.mu.Unlock()
	if cut > 0 {
		return l.TruncateFront(cut)
	}
	return nil
}

// Compact rewrites the sealed segments so that only records keep accepts stay,
// each at its offset. A record batch is rewritten with its kept records (their
// offset and timestamp deltas, the batch's offset span, timestamps and
// producer fields unchanged, compressed again with its codec); a batch left
// with no record stays as an empty batch, so its offsets still count. A record
// of the per-record format becomes a 2-byte placeholder, except the last entry
// of a segment (it proves segment continuity at open). The segment being
// written is never touched. It returns the records removed and the bytes
// reclaimed.
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
	type frame struct {
		pos, end int
		kind     byte
		off      int64
	}
	var frames []frame
	next := s.base
	for p := 0; p < len(buf); {
		end, kind, off, count, ok := frameAt(buf, p)
		if !ok || (kind != kindCompacted && off != next) {
			return 0, 0, nil // damaged: left for reads to report, never rewritten
		}
		if kind == kindCompacted {
			off = next
		}
		frames = append(frames, frame{p, end, kind, off})
		next = off + count
		p = end
	}
	out := make([]byte, 0, len(buf))
	removed := 0
	for i, f := range frames {
		switch {
		case (f.kind == kindRecord || f.kind == kindProducerRecord) && i < len(frames)-1:
			size, n := binary.Uvarint(buf[f.pos:])
			r, err := decodeEntry(buf[f.pos+n:f.pos+n+int(size)], f.off)
			if err == nil && !keep(&r) {
				out = appendFrame(out, compactedEntry)
				removed++
				continue
			}
		case f.kind == kindBatch:
			size, n := binary.Uvarint(buf[f.pos:])
			data := buf[f.pos+n : f.pos+n+int(size)]
			nb, gone, err := rebuildBatch(data[entryHeaderLen:len(data)-4], keep)
			if err != nil {
				return 0, 0, fmt.Errorf("compact %s: batch at offset %d: %w", s.path, f.off, err)
			}
			if nb != nil {
				out = appendFrame(out, appendBatchEntry(nil, f.off, nb))
				removed += gone
				continue
			}
		}
		out = append(out, buf[f.pos:f.end]...)
	}
	if removed == 0 {
		return 0, 0, nil
	}
	idx, _, _ := indexBytes(out, s.base)
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
	saved, ok, err := l.swapCompacted(s, tmp, idx, int64(len(out)))
	if err != nil || !ok {
		return 0, 0, err
	}
	// The rename is made durable outside the log's lock: a directory fsync
	// can take milliseconds, and the partition's appends and fetches need
	// the lock. A power cut before it leaves the old file, whole and
	// fsynced, which the next compaction rewrites again.
	if h := compactSyncHook; h != nil {
		h(s.path)
	}
	if err := syncDir(l.dir); err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", s.path, err)
	}
	return removed, saved, nil
}

// compactSyncHook, when set by a test, is called by compaction after it
// replaced a segment, just before it fsyncs the directory.
var compactSyncHook func(path string)

// swapCompacted puts the compacted file tmp (indexed by idx, size bytes) in
// place of sealed segment s under the log's lock, unless s is gone or the log
// closed meanwhile (ok false, tmp removed). It returns the bytes reclaimed.
func (l *Log) swapCompacted(s *segmentFile, tmp string, idx *segIndex, size int64) (saved int64, ok bool, err error) {
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
		return 0, false, nil
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return 0, false, fmt.Errorf("compact %s: %w", s.path, err)
	}
	// Readers that still hold the old file and meet the new index find its
	// positions wrong (offset check) and rescan their file from the start.
	s.replaced()
	s.fmu.Lock()
	s.idx = idx
	s.fmu.Unlock()
	if err := l.w.ClearCache(); err != nil {
		return 0, false, fmt.Errorf("compact %s: %w", s.path, err)
	}
	saved = s.size - size
	s.size = size
	l.size -= saved
	return saved, true, nil
}
