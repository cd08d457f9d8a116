package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Reads of sealed segments run outside the partition mutex. A sealed segment's
// bytes never change in place: tidwall/wal wrote and fsynced them before it
// rolled, compaction and repair replace the file by rename (same offsets, so the
// old and the new file read alike), and retention only unlinks it. So a reader
// pins the segment under the mutex (a counter, no I/O), then reads the file with
// its own handle while producers keep appending to the tail. Retention opens a
// handle for every pinned segment before it unlinks the file, so an in-flight
// reader always finds its bytes (an open file survives unlink on Linux).

// Handles. A read takes the segment's current handle, opening it if there is
// none, and releases it when done; reads at the same time share it. When the
// last of them releases it, the handle stays open if s is its log's idle
// segment, the sealed segment read last: a consumer reads one segment in many
// fetches, and an open, an fstat and a close per fetch were a tenth of katka's
// CPU for a 1 MiB fetch. So a log holds at most one idle handle beside those
// in use. When a segment's file is unlinked or replaced, the reads holding its
// old handle finish on the old file and the last of them closes it.

// segHandle is an open segment file and the reads using it.
type segHandle struct {
	f    *os.File
	id   readHint // identity of the file (inode, size, mtime); it never changes in place
	refs int      // reads holding it; guarded by the segment's fmu
}

// pin marks a reader of s; the caller holds the log's mutex, so s is still in
// the log and its file still exists.
func (s *segmentFile) pin() {
	s.fmu.Lock()
	s.readers++
	s.fmu.Unlock()
}

// unpin ends a read of s; a handle opened for pinned readers that none took
// is closed with the last of them unless s is the idle segment.
func (s *segmentFile) unpin() {
	s.fmu.Lock()
	s.readers--
	if s.readers == 0 && !s.idle {
		s.dropHandle()
	}
	s.fmu.Unlock()
}

// dropHandle detaches the current handle, closing it if no read holds it (the
// last read to release it closes it otherwise); fmu is held.
func (s *segmentFile) dropHandle() {
	if h := s.rf; h != nil {
		s.rf = nil
		if h.refs == 0 {
			h.f.Close()
		}
	}
}

// setIdle makes s its log's idle segment, whose handle outlives its reads, or
// (on false) no longer; the caller holds the log's mutex.
func (s *segmentFile) setIdle(on bool) {
	s.fmu.Lock()
	s.idle = on
	if !on && s.readers == 0 {
		s.dropHandle()
	}
	s.fmu.Unlock()
}

// file returns the segment's current handle for one read, opening it if
// needed; the read gives it back with release.
func (s *segmentFile) file() (*segHandle, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.rf == nil {
		h, err := openSegment(s.path)
		if err != nil {
			return nil, err
		}
		s.rf = h
	}
	s.rf.refs++
	return s.rf, nil
}

// release gives back a handle file returned. The last read closes it unless
// it is still the segment's current handle and s is the idle segment.
func (s *segmentFile) release(h *segHandle) {
	s.fmu.Lock()
	h.refs--
	if h.refs == 0 {
		if h != s.rf {
			h.f.Close()
		} else if !s.idle {
			s.dropHandle()
		}
	}
	s.fmu.Unlock()
}

// openSegment opens a segment file for reading and tells its identity.
func openSegment(path string) (*segHandle, error) {
	segmentOpens.Add(1)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	h := &segHandle{f: f, id: readHint{size: st.Size(), mtime: st.ModTime().UnixNano()}}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		h.id.ino = int64(sys.Ino)
	}
	return h, nil
}

// retire is called, with the log's mutex held, before s's file is unlinked or
// replaced and s leaves the log: readers that pinned it and have no handle yet
// get one now so they can still read it; an idle handle nobody uses is closed.
func (s *segmentFile) retire() {
	s.fmu.Lock()
	s.idle = false
	if s.readers > 0 && s.rf == nil {
		if h, err := openSegment(s.path); err == nil {
			s.rf = h
		}
	}
	if s.readers == 0 {
		s.dropHandle()
	}
	s.fmu.Unlock()
}

// replaced is called after compaction renamed a new file over s's (s stays in
// the log): the handle on the old file is detached, so the next read opens
// the new file, and closed by the last read holding it.
func (s *segmentFile) replaced() {
	s.fmu.Lock()
	s.dropHandle()
	s.fmu.Unlock()
}

// sealedReadHook, when set by a test, is called by every sealed-segment read
// once the segment is pinned, before its file is opened and read, outside the
// log's mutex.
var sealedReadHook func(path string)

// sealedReaders pools the buffered readers of sealed segments (one buffer per
// concurrent read, not per segment).
var sealedReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 256<<10) }}

// sealedRead is one read of offsets [from, to) of a sealed segment whose first
// offset is base.
type sealedRead struct {
	log      *Log // whose indexes a read that builds one trims (nil in tests)
	seg      *segmentFile
	base     int64
	from, to int64
}

// readHint remembers where a read of a sealed segment stopped (the frame of
// offset off starts at byte pos), so a consumer reading on from there does not
// scan the segment from its start again. It names the file version it was taken
// on (inode, size, mtime): compaction or repair replace the file by rename.
type readHint struct {
	ino, mtime, size int64
	off, pos         int64
}

// read feeds the entries of the range to c, stopping once c is full. It
// reports the next offset to read, whether maxBytes stopped it, and the first
// damaged offset's error: a damaged entry is never returned as data.
//
// It starts at the best known position at or before r.from: the segment's
// offset index, or the hint a previous read left. A start taken from the index
// is checked by the entry it lands on (its stored offset); if the file was
// replaced meanwhile (compaction), the read starts over from the file's start.
func (r sealedRead) read(c *collector) (next int64, full bool, err error) {
	if h := sealedReadHook; h != nil {
		h(r.seg.path)
	}
	// The file's own size (id.size) bounds every frame: a damaged length
	// never sizes an allocation beyond the bytes that exist.
	fh, err := r.seg.file()
	if err != nil {
		return r.from, false, err
	}
	defer r.seg.release(fh)
	f, id := fh.f, fh.id
	br := sealedReaders.Get().(*bufio.Reader)
	defer func() {
		br.Reset(nil)
		sealedReaders.Put(br)
	}()
	r.seg.fmu.Lock()
	h := r.seg.hint
	x := r.seg.idx
	r.seg.idxUsed = time.Now().UnixNano()
	r.seg.fmu.Unlock()
	sameFile := id.ino != 0 && h.ino == id.ino && h.size == id.size && h.mtime == id.mtime
	if x == nil && r.from > r.base && !(sameFile && h.off == r.from) {
		// A segment found at open, or whose index a roll dropped
		// (trimIndexes), read from inside: index it from its entry heads.
		// A read from its start, or on from where the previous one stopped
		// (the hint), needs no index.
		x = indexFile(br, f, id.size, r.base)
		r.seg.fmu.Lock()
		if r.seg.idx == nil {
			r.seg.idx = x
		}
		r.seg.fmu.Unlock()
		indexBuilds.Add(1)
		if r.log != nil {
			// A consumer reading the history from the start must not leave
			// an index on every segment it passed.
			r.log.mu.Lock()
			r.log.trimIndexes()
			r.log.mu.Unlock()
		}
	}
	startOff, startPos := r.base, int64(0)
	if pt, ok := x.find(r.from); ok && int64(pt.pos) < id.size {
		startOff, startPos = pt.off, int64(pt.pos)
	}
	hinted := sameFile && h.off >= startOff && h.off > r.base && h.off <= r.from
	if hinted {
		startOff, startPos = h.off, h.pos
	}
	scan := r.scan
	if c.parts != nil {
		scan = func(_ *bufio.Reader, f *os.File, size, first, pos int64, c *collector) (int64, bool, int64, error) {
			return r.scanInto(f, size, first, pos, c)
		}
	}
	m := c.mark()
	if startPos > 0 {
		next, full, pos, err := scan(br, f, id.size, startOff, startPos, c)
		if err == nil {
			if hinted {
				hintHits.Add(1)
			}
			r.seg.saveHint(id, c.hintOffset(next), pos, r.to)
			return next, full, nil
		}
		if hinted {
			hintMisses.Add(1)
		}
		// A stale start costs a rescan, never a wrong answer.
		c.reset(m)
	}
	next, full, pos, err := scan(br, f, id.size, r.base, 0, c)
	if err == nil {
		r.seg.saveHint(id, c.hintOffset(next), pos, r.to)
	}
	return next, full, err
}

// segmentOpens counts segment files opened for reads (tests check it).
var segmentOpens atomic.Int64

// hintHits and hintMisses count reads that started at a position hint and
// hints that failed to decode (tests check both).
var hintHits, hintMisses atomic.Int64

// hintOffset is the first offset of the entry a read's position hint points
// at: next, or the stored batch Read stopped inside.
func (c *collector) hintOffset(next int64) int64 {
	if c.cut {
		return c.cutEntry
	}
	return next
}

// saveHint keeps where a read stopped, if it stopped inside the segment.
func (s *segmentFile) saveHint(id readHint, off, pos, end int64) {
	if id.ino == 0 || off >= end {
		return
	}
	id.off, id.pos = off, pos
	s.fmu.Lock()
	s.hint = id
	s.fmu.Unlock()
}

// scan reads frames from byte pos, the frame whose first offset is first, up
// to r.to; it returns the next offset and its frame's byte position. Entries
// that end at or before r.from are stepped over by their heads alone.
func (r sealedRead) scan(br *bufio.Reader, f *os.File, size, first, pos int64, c *collector) (next int64, full bool, _ int64, err error) {
	br.Reset(io.NewSectionReader(f, pos, size-pos))
	var scratch []byte
	corrupt := func(off int64, format string, a ...any) error {
		return &CorruptError{Offset: max(off, r.from), Reason: fmt.Sprintf("segment %s: %s", r.seg.path, fmt.Sprintf(format, a...))}
	}
	off := first
	for off < r.to {
		fl, err := binary.ReadUvarint(br)
		if err != nil {
			return off, false, pos, corrupt(off, "unreadable frame length: %v", err)
		}
		if fl > uint64(size) {
			return off, false, pos, corrupt(off, "frame length %d exceeds the segment's %d bytes", fl, size)
		}
		n := int(fl)
		framePos := pos
		pos += int64(uvarintLen(fl) + n)
		if off < r.from {
			head, _ := br.Peek(min(n, spanHeadLen))
			kind, eoff, count, ok := entrySpan(head, n)
			if ok && (kind == kindCompacted || eoff == off) && off+count <= r.from {
				if _, err := br.Discard(n); err != nil {
					return off, false, framePos, corrupt(off, "frame cut short: %v", err)
				}
				off += count
				steps.Add(1)
				continue
			}
			// Damaged, or holding r.from: decoded (and checked) below.
		}
		var data []byte
		peeked := n <= br.Size()
		if peeked {
			data, err = br.Peek(n)
		} else {
			if cap(scratch) < n {
				scratch = make([]byte, n)
			}
			data = scratch[:n]
			_, err = io.ReadFull(br, data)
		}
		if err != nil {
			return off, false, framePos, corrupt(off, "frame cut short: %v", err)
		}
		next, full, derr := c.add(data, off, false) // checks the CRC-32C and the offset; copies
		if peeked {
			br.Discard(n)
		}
		if derr != nil {
			return off, false, framePos, derr
		}
		off = next
		if full {
			if c.cut {
				// Stopped inside this entry's batch: the next read starts
				// within it, so the hint is the entry's own position.
				return off, true, framePos, nil
			}
			return off, true, pos, nil
		}
	}
	return off, false, pos, nil
}

// scanInto is scan for ReadBatchParts: instead of going through a buffered
// reader and copying each batch out of it, it preads the file in large chunks
// straight into pooled buffers the read's BatchParts owns (a chunk is what
// the read still wants plus 64 KiB, so a 1 MiB fetch is about one pread), and
// every batch served is a slice of its chunk. Each entry is still checked
// (frame, CRC-32C, offset) by collector.add before it is served.
func (r sealedRead) scanInto(f *os.File, size, first, pos int64, c *collector) (next int64, full bool, _ int64, err error) {
	corrupt := func(off int64, format string, a ...any) error {
		return &CorruptError{Offset: max(off, r.from), Reason: fmt.Sprintf("segment %s: %s", r.seg.path, fmt.Sprintf(format, a...))}
	}
	var buf []byte // file bytes [bpos, bpos+len(buf))
	bpos := pos
	// load reads a chunk of at least need bytes from file position at.
	load := func(at int64, need int) error {
		n := int(min(int64(chunkSize(need, c.maxBytes-c.nbytes)), size-at))
		if n < need {
			return io.ErrUnexpectedEOF
		}
		b := c.buffer(n)
		if _, err := f.ReadAt(b, at); err != nil {
			return err
		}
		buf, bpos = b, at
		return nil
	}
	off := first
	for off < r.to {
		rel := int(pos - bpos)
		if buf == nil || rel >= len(buf) {
			if pos >= size {
				break
			}
			if err := load(pos, 1); err != nil {
				return off, false, pos, corrupt(off, "frame cut short: %v", err)
			}
			rel = 0
		}
		fl, k := binary.Uvarint(buf[rel:])
		if k == 0 && bpos+int64(len(buf)) < size { // length cut by the chunk's end
			if err := load(pos, min(binary.MaxVarintLen64, int(size-pos))); err != nil {
				return off, false, pos, corrupt(off, "frame cut short: %v", err)
			}
			continue
		}
		if k <= 0 {
			return off, false, pos, corrupt(off, "unreadable frame length")
		}
		if fl > uint64(size) {
			return off, false, pos, corrupt(off, "frame length %d exceeds the segment's %d bytes", fl, size)
		}
		total := k + int(fl)
		if rel+total > len(buf) {
			if h := buf[rel+k:]; len(h) >= spanHeadLen {
				// A batch that will not fit is not read at all.
				if kind, eoff, _, ok := entrySpan(h[:spanHeadLen], int(fl)); ok && kind == kindBatch && eoff == off && !c.fits(off, int(fl)-entryOverhead) {
					return off, true, pos, nil
				}
			}
			if pos+int64(total) > size {
				return off, false, pos, corrupt(off, "frame cut short: %d bytes past the segment's end", pos+int64(total)-size)
			}
			if err := load(pos, total); err != nil {
				return off, false, pos, corrupt(off, "frame cut short: %v", err)
			}
			continue
		}
		data := buf[rel+k : rel+total : rel+total]
		framePos := pos
		pos += int64(total)
		if off < r.from {
			kind, eoff, count, ok := entrySpan(data[:min(len(data), spanHeadLen)], len(data))
			if ok && (kind == kindCompacted || eoff == off) && off+count <= r.from {
				off += count
				steps.Add(1)
				continue
			}
			// Damaged, or holding r.from: checked below.
		}
		next, full, derr := c.add(data, off, true) // checks the CRC-32C and the offset
		if derr != nil {
			return off, false, framePos, derr
		}
		off = next
		if full {
			if c.parts.More { // stopped in front of this entry
				return off, true, framePos, nil
			}
			return off, true, pos, nil
		}
	}
	return off, false, pos, nil
}

// chunkSize is how much of a sealed segment one pread of scanInto takes:
// the bytes the read still wants (at least minChunk, so small reads are not
// one syscall per batch) plus up to chunkSlack for the batch that crosses
// the read's limit, as far as the buffer class that holds what it wants
// has room, and never less than need (the frame that must fit). It was what
// the read wants plus 64 KiB whatever the class: a 1 MiB fetch took 1 MiB +
// 64 KiB, a 2 MiB buffer, and held twice the memory it read. Now such a read
// takes 1 MiB, and the crossing batch costs a second, small pread.
func chunkSize(need, want int) int {
	want = max(want, minChunk)
	n := want + chunkSlack
	if c := readBufClass(want); c < readBufClasses {
		n = min(n, minReadBuf<<c)
	}
	return max(need, n)
}

// chunkSlack is how far past what a read wants a chunk reaches when its
// buffer has room, so the batch crossing the limit comes in the same pread.
const chunkSlack = 64 << 10

// minChunk is the smallest pread of a sealed segment.
const minChunk = 16 << 10

// Read buffers are pooled in size classes of powers of two from 4 KiB to
// 16 MiB (larger reads allocate): a consumer reading at full speed reuses the
// same few buffers instead of allocating (and the runtime zeroing and later
// returning to the OS) a megabyte per fetch, and a small read (a consumer at
// the end of a segment) holds a small buffer.
const (
	minReadBuf     = 4 << 10
	readBufClasses = 13
)

var readBufPools [readBufClasses]sync.Pool

// readBufClass is the class of a buffer of n bytes: the smallest whose size
// (minReadBuf << class) holds n; readBufClasses if none.
func readBufClass(n int) int {
	c := 0
	for minReadBuf<<c < n && c < readBufClasses {
		c++
	}
	return c
}

// getReadBuf returns a buffer of at least n bytes.
func getReadBuf(n int) *[]byte {
	c := readBufClass(n)
	if c == readBufClasses {
		b := make([]byte, n)
		return &b
	}
	if v := readBufPools[c].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, minReadBuf<<c)
	return &b
}

// putReadBuf gives a buffer from getReadBuf back.
func putReadBuf(b *[]byte) {
	n := cap(*b)
	c := readBufClass(n)
	if c == readBufClasses || minReadBuf<<c != n {
		return
	}
	*b = (*b)[:n]
	readBufPools[c].Put(b)
}
