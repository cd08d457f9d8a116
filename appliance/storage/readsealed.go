package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Reads of sealed segments run outside the partition mutex. A sealed segment's
// bytes never change in place: tidwall/wal wrote and fsynced them before it
// rolled, compaction and repair replace the file by rename (same offsets, so the
// old and the new file read alike), and retention only unlinks it. So a reader
// pins the segment under the mutex (a counter, no I/O), then reads the file with
// its own handle while producers keep appending to the tail. Retention opens a
// handle for every pinned segment before it unlinks the file, so an in-flight
// reader always finds its bytes (an open file survives unlink on Linux).

// pin marks a reader of s; the caller holds the log's mutex, so s is still in
// the log and its file still exists.
func (s *segmentFile) pin() {
	s.fmu.Lock()
	s.readers++
	s.fmu.Unlock()
}

// unpin ends a read of s; the last reader closes the handle.
func (s *segmentFile) unpin() {
	s.fmu.Lock()
	s.readers--
	if s.readers == 0 && s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	s.fmu.Unlock()
}

// file returns the handle pinned readers share, opening it on first use.
func (s *segmentFile) file() (*os.File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.rf == nil {
		f, err := os.Open(s.path)
		if err != nil {
			return nil, err
		}
		s.rf = f
	}
	return s.rf, nil
}

// holdOpen is called, with the log's mutex held, before s's file is unlinked:
// if readers pinned it, a handle is opened now so they can still read it.
func (s *segmentFile) holdOpen() {
	s.fmu.Lock()
	if s.readers > 0 && s.rf == nil {
		if f, err := os.Open(s.path); err == nil {
			s.rf = f
		}
	}
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

// read appends the records of the range to recs, stopping once nbytes (entry
// bytes returned so far) reaches maxBytes. It reports the next offset to read,
// whether maxBytes stopped it, and the first damaged offset's error: a damaged
// record is never returned as data.
func (r sealedRead) read(recs []Record, nbytes, maxBytes int) (_ []Record, _ int, next int64, full bool, err error) {
	if h := sealedReadHook; h != nil {
		h(r.seg.path)
	}
	f, err := r.seg.file()
	if err != nil {
		return recs, nbytes, r.from, false, err
	}
	// The file's own size bounds every frame: a damaged length never sizes an
	// allocation beyond the bytes that exist.
	st, err := f.Stat()
	if err != nil {
		return recs, nbytes, r.from, false, fmt.Errorf("read %s: %w", r.seg.path, err)
	}
	id := readHint{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.ino = int64(sys.Ino)
	}
	br := sealedReaders.Get().(*bufio.Reader)
	defer func() {
		br.Reset(nil)
		sealedReaders.Put(br)
	}()
	r.seg.fmu.Lock()
	h := r.seg.hint
	r.seg.fmu.Unlock()
	n0, b0 := len(recs), nbytes
	if id.ino != 0 && h.ino == id.ino && h.size == id.size && h.mtime == id.mtime && h.off > r.base && h.off <= r.from {
		recs, nbytes, next, full, pos, err := r.scan(br, f, id.size, h.off, h.pos, recs, nbytes, maxBytes)
		if err == nil {
			hintHits.Add(1)
			r.seg.saveHint(id, next, pos, r.to)
			return recs, nbytes, next, full, nil
		}
		hintMisses.Add(1)
		// A hint that misleads (it cannot, short of a reused inode) costs a rescan, never a wrong answer.
		recs, nbytes = recs[:n0], b0
	}
	recs, nbytes, next, full, pos, err := r.scan(br, f, id.size, r.base, 0, recs, nbytes, maxBytes)
	if err == nil {
		r.seg.saveHint(id, next, pos, r.to)
	}
	return recs, nbytes, next, full, err
}

// hintHits and hintMisses count reads that started at a position hint and
// hints that failed to decode (tests check both).
var hintHits, hintMisses atomic.Int64

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

// scan reads frames from byte pos, the frame of offset first, up to r.to; it
// returns the next offset and its frame's byte position.
func (r sealedRead) scan(br *bufio.Reader, f *os.File, size, first, pos int64, recs []Record, nbytes, maxBytes int) (_ []Record, _ int, next int64, full bool, _ int64, err error) {
	br.Reset(io.NewSectionReader(f, pos, size-pos))
	var scratch []byte
	corrupt := func(off int64, format string, a ...any) error {
		return &CorruptError{Offset: off, Reason: fmt.Sprintf("segment %s: %s", r.seg.path, fmt.Sprintf(format, a...))}
	}
	for off := first; off < r.to; off++ {
		fl, err := binary.ReadUvarint(br)
		if err != nil {
			return recs, nbytes, off, false, pos, corrupt(off, "unreadable frame length: %v", err)
		}
		if fl > uint64(size) {
			return recs, nbytes, off, false, pos, corrupt(off, "frame length %d exceeds the segment's %d bytes", fl, size)
		}
		n := int(fl)
		framePos := pos
		pos += int64(uvarintLen(fl) + n)
		if off < r.from {
			if _, err := br.Discard(n); err != nil {
				return recs, nbytes, off, false, framePos, corrupt(off, "frame cut short: %v", err)
			}
			continue
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
			return recs, nbytes, off, false, framePos, corrupt(off, "frame cut short: %v", err)
		}
		rec, derr := decodeEntry(data, off) // checks the CRC-32C and the offset; copies
		if peeked {
			br.Discard(n)
		}
		if errors.Is(derr, errCompacted) {
			continue
		}
		if derr != nil {
			return recs, nbytes, off, false, framePos, derr
		}
		recs = append(recs, rec)
		nbytes += n
		if nbytes >= maxBytes {
			return recs, nbytes, off + 1, true, pos, nil
		}
	}
	return recs, nbytes, r.to, false, pos, nil
}
