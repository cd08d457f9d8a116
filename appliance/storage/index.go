package storage

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"io"
	"os"
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// The offset index. With one WAL entry per record batch, offsets and WAL
// indexes diverge, so each segment keeps a sparse in-memory index like
// Kafka's: one point (first offset, byte position, entry number) for the
// segment's first entry and then for the first entry starting at least
// indexInterval bytes after the previous point. A read looks up the last point
// at or before its offset and steps over at most indexInterval bytes of
// entries (only their heads are read) to its batch.
//
// Points are added as entries are appended (so segments written since open
// are indexed for free); a sealed segment found at open gets its index the
// first time it is read, from one pass over its entry heads. Compaction
// builds the index of the file it writes. Memory: 16 bytes per point, at most
// one per 4 KiB of segment (4 KiB per 1 MiB segment), for the tail and at
// most keepIndexed sealed segments (below); a dropped index is rebuilt when
// its segment is next read.

// keepIndexed is how many sealed segments of a log keep their index after a
// roll: those a read used last (a consumer a little behind reads the
// segments just sealed). The others' indexes are dropped and rebuilt from
// the entry heads when next read, so a partition written for weeks holds the
// index of a few segments, not of everything written since open (16 bytes
// per 4 KiB: 4 MiB per GiB).
const keepIndexed = 4

// indexBuilds counts sealed-segment indexes built by reads (tests).
var indexBuilds atomic.Int64

// sealIndex is called when the tail t has just been sealed (a roll), mu
// held: its points are copied to a slice of their exact size (append left up
// to twice that) and it counts as just used.
func (l *Log) sealIndex(t *segmentFile) {
	t.fmu.Lock()
	if x := t.idx; x != nil {
		t.idx = &segIndex{pts: slices.Clone(x.pts), lastPos: x.lastPos}
	}
	t.idxUsed = time.Now().UnixNano()
	t.fmu.Unlock()
}

// trimIndexes keeps the index of the keepIndexed sealed segments used last
// and drops the others'; mu held. It runs at every roll and after a read
// built an index.
func (l *Log) trimIndexes() {
	type use struct {
		s *segmentFile
		t int64
	}
	var indexed []use
	for _, s := range l.segs[:max(len(l.segs)-1, 0)] {
		s.fmu.Lock()
		if s.idx != nil {
			indexed = append(indexed, use{s, s.idxUsed})
		}
		s.fmu.Unlock()
	}
	if len(indexed) <= keepIndexed {
		return
	}
	slices.SortFunc(indexed, func(a, b use) int { return cmp.Compare(b.t, a.t) })
	for _, u := range indexed[keepIndexed:] {
		u.s.fmu.Lock()
		u.s.idx = nil
		u.s.fmu.Unlock()
	}
}

// steps counts entries a read stepped over to reach its offset (tests check
// that the index keeps it small).
var steps atomic.Int64

// indexInterval is the byte distance between index points (Kafka's
// index.interval.bytes default).
const indexInterval = 4096

// idxPoint is one index point: the entry whose first offset is off starts at
// byte pos of the segment file and is the segment's n-th entry (its WAL index
// is the segment's index plus n).
type idxPoint struct {
	off int64
	pos uint32
	n   uint32
}

// segIndex is one segment's sparse offset index.
type segIndex struct {
	pts     []idxPoint
	lastPos int64
}

// add records the entry starting at byte pos as the n-th entry of the
// segment with first offset off, if it is far enough from the last point.
func (x *segIndex) add(off, pos int64, n int) {
	if len(x.pts) == 0 || pos-x.lastPos >= indexInterval {
		x.pts = append(x.pts, idxPoint{off: off, pos: uint32(pos), n: uint32(n)})
		x.lastPos = pos
	}
}

// find returns the last point whose entry starts at or before off.
func (x *segIndex) find(off int64) (idxPoint, bool) {
	if x == nil {
		return idxPoint{}, false
	}
	i := sort.Search(len(x.pts), func(i int) bool { return x.pts[i].off > off }) - 1
	if i < 0 {
		return idxPoint{}, false
	}
	return x.pts[i], true
}

// bytes is the index's memory, for the README's figures and tests.
func (x *segIndex) bytes() int {
	if x == nil {
		return 0
	}
	return cap(x.pts) * 16
}

// indexBytes indexes segment bytes held in memory (the tail at open, a file
// compaction wrote) whose first offset is base. It stops at the first frame
// that does not parse; entries and end describe the frames before it.
func indexBytes(buf []byte, base int64) (x *segIndex, entries int, end int64) {
	x = &segIndex{}
	next := base
	for p := 0; p < len(buf); {
		size, n := binary.Uvarint(buf[p:])
		if n <= 0 || size > uint64(len(buf)-p-n) {
			break
		}
		head := buf[p+n : p+n+min(int(size), spanHeadLen)]
		kind, off, count, ok := entrySpan(head, int(size))
		if !ok {
			break
		}
		if kind == kindCompacted {
			off = next
		}
		x.add(off, int64(p), entries)
		entries++
		next = off + count
		p += n + int(size)
	}
	return x, entries, next
}

// indexFile builds the index of a sealed segment file from its entry heads,
// reading it through br. An entry longer than what br holds is stepped over
// by position, not read: a segment of 1 MiB batches was read whole to index
// it (64 MiB for a 64 MiB segment), now a buffer's worth per batch. A damaged
// frame ends the index there: reads beyond it scan from the last point and
// report the damage.
func indexFile(br *bufio.Reader, f *os.File, size, base int64) *segIndex {
	br.Reset(io.NewSectionReader(f, 0, size))
	x := &segIndex{}
	next, pos := base, int64(0)
	for n := 0; pos < size; n++ {
		fl, err := binary.ReadUvarint(br)
		if err != nil || fl > uint64(size-pos) {
			break
		}
		head, err := br.Peek(min(int(fl), spanHeadLen))
		if err != nil {
			break
		}
		kind, off, count, ok := entrySpan(head, int(fl))
		if !ok || (kind != kindCompacted && off != next) {
			break
		}
		if kind == kindCompacted {
			off = next
		}
		x.add(off, pos, n)
		next = off + count
		pos += int64(uvarintLen(fl)) + int64(fl)
		if int(fl) <= br.Buffered() {
			if _, err := br.Discard(int(fl)); err != nil {
				break
			}
		} else {
			br.Reset(io.NewSectionReader(f, pos, size-pos))
		}
	}
	return x
}
