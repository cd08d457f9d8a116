package storage

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// segmentFile is one tidwall/wal segment file: its first WAL index is its name.
// Its offsets are those of its entries: base is the first entry's first offset
// (for an empty tail, the offset its first entry will get), end the offset
// after its last entry.
type segmentFile struct {
	index     uint64 // first WAL index
	path      string
	size      int64
	base, end int64
	entries   int // entries in the file; kept for the tail, whose entries are read by WAL index
	// lastTS is the timestamp of the segment's last entry, read lazily for retention.
	lastTS int64
	hasTS  bool

	// fmu guards readers, rf, idle, hint and idx: reads of a sealed segment pin it
	// under the log's mutex, then read it through rf outside that mutex (see
	// readsealed.go).
	fmu     sync.Mutex
	readers int
	rf      *segHandle // the current read handle, nil if none is open
	idle    bool       // s is its log's idle segment: rf outlives its reads
	hint    readHint
	idx     *segIndex // nil until built (segments found at open are indexed when first read)
	// idxUsed is when idx was last used or built (Unix ns): a roll drops the
	// index of the sealed segments used longest ago (trimIndexes).
	idxUsed int64
}

func segmentName(index uint64) string { return fmt.Sprintf("%020d", index) }

// RecoveryAction describes one repair made while opening a partition log.
type RecoveryAction struct {
	// Kind is one of: tail_truncated, lost_placeholders, segment_gap_filled, start_completed, temp_removed.
	Kind string
	// Segment is the file the action touched.
	Segment string
	// BytesDropped counts bytes removed from the log.
	BytesDropped int64
	// Lost counts offsets whose records were destroyed and replaced by placeholders.
	Lost int64
	// Detail is a human-readable explanation for the log.
	Detail string
}

// frameAt parses the tidwall/wal binary frame at buf[p:] (uvarint length, data)
// and checks our entry inside it (CRC-32C included). It returns the end of
// the frame, the entry's kind, first offset and offset count. A compacted
// placeholder (kind 3) has no offset of its own (-1): it is the one after the
// previous entry.
func frameAt(buf []byte, p int) (end int, kind byte, off, count int64, ok bool) {
	size, n := binary.Uvarint(buf[p:])
	if n == 1 && size == 1 && p+2 <= len(buf) && buf[p+1] == kindCompacted {
		return p + 2, kindCompacted, -1, 1, true
	}
	if n <= 0 || size < entryMinLen || size > uint64(len(buf)-p-n) {
		return 0, 0, 0, 0, false
	}
	data := buf[p+n : p+n+int(size)]
	// Cheap filter before the checksum: the trailer must repeat the length.
	if binary.BigEndian.Uint32(data[len(data)-4:]) != uint32(size) {
		return 0, 0, 0, 0, false
	}
	kind, off, err := checkEntry(data)
	if err != nil {
		return 0, 0, 0, 0, false
	}
	return p + n + int(size), kind, off, entryCount(kind, data), true
}

// segmentRepair is the result of scanning one segment.
type segmentRepair struct {
	content   []byte // repaired content, or nil when the file is fine as is
	truncate  int    // for a torn tail with nothing valid after it: new length; -1 if none
	end       int64  // offset after the segment's last entry
	lost      int64  // offsets covered by placeholders inserted
	dropped   int64  // bytes removed or replaced
	firstBad  int64  // offset at which damage was first seen, -1 if none
	firstByte int    // byte position of the first damage
}

// scanSegment verifies every frame of a segment whose first offset is base.
// For the tail (sealed false) damage with no valid entry after it is a torn
// write and is cut off; damage followed by valid entries is bit rot inside the
// log: the destroyed offsets get a placeholder so later records keep their
// offsets, and reads of them report corruption. For a sealed segment, limit is
// the next segment's first offset (-1 if unknown): every offset below it must
// be accounted for, and missing ones become placeholders.
func scanSegment(buf []byte, base, limit int64, sealed bool) segmentRepair {
	r := segmentRepair{truncate: -1, firstBad: -1}
	next := base
	var out []byte
	changed := false
	fits := func(off, count int64) bool { return off >= next && (limit < 0 || off+count <= limit) }
	fill := func(to int64, at int) {
		if !changed {
			out, changed = append([]byte(nil), buf[:at]...), true
		}
		if r.firstBad < 0 {
			r.firstBad, r.firstByte = next, at
		}
		out = appendFrame(out, lostRangeEntry(next, to-next))
		r.lost += to - next
		next = to
	}
	p := 0
	for p < len(buf) {
		end, kind, off, count, ok := frameAt(buf, p)
		if ok && kind == kindCompacted {
			off = next
		}
		if ok && fits(off, count) {
			if off > next { // whole entries are missing: keep later offsets in place
				fill(off, p)
			}
			if changed {
				out = append(out, buf[p:end]...)
			}
			p = end
			next = off + count
			continue
		}
		// Damage at p: look for the next valid entry after it.
		if r.firstBad < 0 {
			r.firstBad, r.firstByte = next, p
		}
		q := -1
		for s := p + 1; s < len(buf); s++ {
			// A compacted entry is two bytes: too weak to resynchronize on.
			if _, kind, off, count, ok := frameAt(buf, s); ok && kind != kindCompacted && fits(off, count) {
				q = s
				break
			}
		}
		if q < 0 {
			r.dropped += int64(len(buf) - p)
			switch {
			case !sealed && changed:
				out = out[:len(out):len(out)]
			case !sealed:
				r.truncate = p
			case !changed:
				out, changed = append([]byte(nil), buf[:p]...), true
			}
			p = len(buf)
			break
		}
		if !changed {
			out, changed = append([]byte(nil), buf[:p]...), true
		}
		r.dropped += int64(q - p)
		p = q
	}
	if sealed && limit >= 0 && next < limit {
		fill(limit, len(buf))
	}
	if changed {
		r.content = out
	}
	r.end = next
	return r
}

// appendFrame wraps data in tidwall/wal's binary framing.
func appendFrame(dst, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// smallEntry is the largest entry firstEntry and lastEntry read and check
// whole. A larger one (a producer's record batch can be a MiB) is known by
// its head and its length trailer only: start-up reads two entries per
// sealed segment, and reading and checksumming whole batches made a 2 GiB log
// of 1 MiB batches take seconds to open. A damaged body is still reported by
// the reads that return it (their CRC-32C check), and a damaged head or
// length breaks the continuity check, which then scans the segment whole.
const smallEntry = 4 << 10

// lastEntry returns the first offset, offset count and timestamp of the
// last entry of a sealed segment of size bytes, found from its length
// trailer.
func lastEntry(f io.ReaderAt, size int64) (off, count int64, ts int64, err error) {
	if size < entryMinLen+1 {
		return 0, 0, 0, fmt.Errorf("segment of %d bytes holds no entry", size)
	}
	var tl [4]byte
	if _, err := f.ReadAt(tl[:], size-4); err != nil {
		return 0, 0, 0, err
	}
	n := int64(binary.BigEndian.Uint32(tl[:]))
	if n < entryMinLen || n > size-1 {
		return 0, 0, 0, fmt.Errorf("last entry length %d out of range", n)
	}
	prefix := int64(uvarintLen(uint64(n)))
	if prefix+n > size {
		return 0, 0, 0, fmt.Errorf("last entry length %d out of range", n)
	}
	if n > smallEntry {
		head := make([]byte, prefix+spanHeadLen)
		if _, err := f.ReadAt(head, size-n-prefix); err != nil && err != io.EOF {
			return 0, 0, 0, err
		}
		if l, m := binary.Uvarint(head); m != int(prefix) || int64(l) != n {
			return 0, 0, 0, fmt.Errorf("last entry frame invalid")
		}
		_, off, count, ok := entrySpan(head[prefix:], int(n))
		if !ok {
			return 0, 0, 0, fmt.Errorf("last entry frame invalid")
		}
		return off, count, int64(binary.BigEndian.Uint64(head[prefix+13:])), nil
	}
	buf := make([]byte, prefix+n)
	if _, err := f.ReadAt(buf, size-n-prefix); err != nil && err != io.EOF {
		return 0, 0, 0, err
	}
	end, _, off, count, ok := frameAt(buf, 0)
	if !ok || end != len(buf) {
		return 0, 0, 0, fmt.Errorf("last entry frame invalid")
	}
	return off, count, int64(binary.BigEndian.Uint64(buf[prefix+13:])), nil
}

// firstEntry reads the first entry of a segment file (checked whole up to
// smallEntry or when whole is set, else by its head and length trailer) and
// returns its kind and first offset (-1 for a compacted placeholder).
func firstEntry(path string, size int64, whole bool) (kind byte, off int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return firstEntryAt(f, path, size, whole)
}

// firstEntryAt is firstEntry on an open segment (path for errors).
func firstEntryAt(f io.ReaderAt, path string, size int64, whole bool) (kind byte, off int64, err error) {
	var head [binary.MaxVarintLen64 + spanHeadLen]byte
	n, err := f.ReadAt(head[:], 0)
	if n == 0 {
		return 0, 0, fmt.Errorf("read first entry of %s: %w", path, err)
	}
	fl, m := binary.Uvarint(head[:n])
	if m <= 0 || fl > uint64(size) || int64(m)+int64(fl) > size {
		return 0, 0, fmt.Errorf("first entry of %s: bad frame length", path)
	}
	if fl > smallEntry && !whole {
		var tl [4]byte
		if _, err := f.ReadAt(tl[:], int64(m)+int64(fl)-4); err != nil {
			return 0, 0, fmt.Errorf("first entry of %s: %w", path, err)
		}
		kind, off, _, ok := entrySpan(head[m:n], int(fl))
		if !ok || uint64(binary.BigEndian.Uint32(tl[:])) != fl {
			return 0, 0, fmt.Errorf("first entry of %s is invalid", path)
		}
		return kind, off, nil
	}
	buf := make([]byte, m+int(fl))
	if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
		return 0, 0, err
	}
	_, kind, off, _, ok := frameAt(buf, 0)
	if !ok {
		return 0, 0, fmt.Errorf("first entry of %s is invalid", path)
	}
	return kind, off, nil
}

// listSegments finds the segment files of a log directory in index order,
// after finishing or discarding what an interrupted truncation left behind.
func listSegments(dir string, actions *[]RecoveryAction) ([]*segmentFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read log dir %s: %w", dir, err)
	}
	var segs []*segmentFile
	var start *segmentFile
	dirty := false
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) < 20 {
			continue
		}
		idx, err := strconv.ParseUint(name[:20], 10, 64)
		if err != nil || idx == 0 {
			continue
		}
		path := filepath.Join(dir, name)
		switch {
		case len(name) == 20:
			info, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("stat %s: %w", path, err)
			}
			segs = append(segs, &segmentFile{index: idx, path: path, size: info.Size()})
		case name[20:] == ".START":
			// A completed atomic write of tidwall's TruncateFront: finish it.
			start = &segmentFile{index: idx, path: path}
		case strings.HasSuffix(name, ".TEMP") || strings.HasSuffix(name, ".REPAIR") || name[20:] == truncTmp || name[20:] == ".END":
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("remove leftover %s: %w", path, err)
			}
			*actions = append(*actions, RecoveryAction{Kind: "temp_removed", Segment: path, Detail: "removed leftover of an interrupted write"})
			dirty = true
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].index < segs[j].index })
	if start != nil {
		kept := segs[:0]
		for _, s := range segs {
			if s.index <= start.index {
				if err := os.Remove(s.path); err != nil {
					return nil, fmt.Errorf("finish truncation: remove %s: %w", s.path, err)
				}
				continue
			}
			kept = append(kept, s)
		}
		final := filepath.Join(dir, segmentName(start.index))
		if err := os.Rename(start.path, final); err != nil {
			return nil, fmt.Errorf("finish truncation: %w", err)
		}
		info, err := os.Stat(final)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", final, err)
		}
		segs = append([]*segmentFile{{index: start.index, path: final, size: info.Size()}}, kept...)
		*actions = append(*actions, RecoveryAction{Kind: "start_completed", Segment: final, Detail: "finished an interrupted retention truncation"})
		dirty = true
	}
	if dirty {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	return segs, nil
}

// recoverDir checks and repairs a partition directory before tidwall/wal opens
// it, and finds every segment's offsets. startHint is the persisted log start
// offset (-1 if none), which gives the base of a first segment whose first
// entry cannot be read.
//
// Offsets run on from segment to segment: a sealed segment is trusted when its
// first entry starts at the previous segment's end and its last entry ends
// where the next segment's first entry starts (two small reads: an entry
// larger than smallEntry is known by its head and trailer); otherwise it
// is scanned whole and repaired. The tail is always scanned whole.
func recoverDir(dir string, startHint int64) ([]*segmentFile, []RecoveryAction, error) {
	var actions []RecoveryAction
	segs, err := listSegments(dir, &actions)
	if err != nil {
		return nil, actions, err
	}
	// firstOffset is a segment's first entry's offset, -1 if it has none of its
	// own (compacted) or cannot be read. Unless whole, an entry larger than
	// smallEntry is known by its head and length trailer only: a head that
	// is intact over a damaged body (bit rot, or a torn write that left a
	// copy of an older frame at a tail) gives an offset that its checksum
	// would refuse. So an offset that decides anything is read whole: the
	// tail's (always damaged first, if anything is) and any that breaks
	// continuity, before a segment is cut or filled because of it.
	firstOffset := func(s *segmentFile, whole bool) int64 {
		kind, off, err := firstEntry(s.path, s.size, whole)
		if err != nil || kind == kindCompacted {
			return -1
		}
		return off
	}
	// checkedOffset is firstOffset read by head (unless whole), and read
	// again whole when it is not the offset want (-1: nothing expected).
	checkedOffset := func(s *segmentFile, want int64, whole bool) int64 {
		off := firstOffset(s, whole)
		if !whole && off >= 0 && want >= 0 && off != want {
			off = firstOffset(s, true)
		}
		return off
	}
	last := len(segs) - 1
	for i, s := range segs {
		if i == 0 {
			if s.base = firstOffset(s, i == last); s.base < 0 {
				// Per-record logs (and compacted placeholders) have offset = WAL index - 1;
				// batch logs have more offsets than entries, so this is a lower bound.
				s.base = max(int64(s.index)-1, startHint)
			}
		} else {
			s.base = segs[i-1].end
		}
		if i == len(segs)-1 {
			buf, err := os.ReadFile(s.path)
			if err != nil {
				return nil, actions, fmt.Errorf("read tail segment %s: %w", s.path, err)
			}
			rep := scanSegment(buf, s.base, -1, false)
			if err := applyRepair(s, rep, true, &actions); err != nil {
				return nil, actions, err
			}
			switch {
			case rep.content != nil:
				buf = rep.content
			case rep.truncate >= 0:
				buf = buf[:rep.truncate]
			}
			s.idx, s.entries, s.end = indexBytes(buf, s.base)
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return nil, actions, fmt.Errorf("open segment %s: %w", s.path, err)
		}
		off, count, ts, lerr := lastEntry(f, s.size)
		f.Close()
		wantNext := int64(-1)
		if lerr == nil {
			wantNext = off + count
		}
		nextBase := checkedOffset(segs[i+1], wantNext, i+1 == last)
		first := s.base
		if i > 0 {
			first = checkedOffset(s, s.base, false)
		}
		if lerr == nil && off >= s.base && (first == s.base || first < 0) {
			end := off + count
			if nextBase < 0 || end == nextBase {
				s.end, s.lastTS, s.hasTS = end, ts, true
				continue
			}
			if end < nextBase {
				// This segment is intact but the next one starts later: whole segments
				// are missing. A placeholder at the end of this one stands for them.
				ph := appendFrame(nil, lostRangeEntry(end, nextBase-end))
				if err := appendDurably(s.path, ph); err != nil {
					return nil, actions, err
				}
				s.size += int64(len(ph))
				s.end = nextBase
				actions = append(actions, RecoveryAction{Kind: "segment_gap_filled", Segment: s.path, Lost: nextBase - end,
					Detail: fmt.Sprintf("segment files missing after this one: offsets %d..%d were lost and are reported as corrupt", end, nextBase-1)})
				continue
			}
		}
		// The first and last entries do not prove continuity: scan the whole segment.
		buf, err := os.ReadFile(s.path)
		if err != nil {
			return nil, actions, fmt.Errorf("read segment %s: %w", s.path, err)
		}
		rep := scanSegment(buf, s.base, nextBase, true)
		if err := applyRepair(s, rep, false, &actions); err != nil {
			return nil, actions, err
		}
		s.end = rep.end
	}
	return segs, actions, nil
}

// appendDurably appends data to the file at path and fdatasyncs it.
func appendDurably(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open %s for repair: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("repair %s: %w", path, err)
	}
	return nil
}

// applyRepair writes the result of scanSegment back to disk, durably.
func applyRepair(s *segmentFile, rep segmentRepair, tail bool, actions *[]RecoveryAction) error {
	switch {
	case rep.content != nil:
		if err := atomicWrite(s.path, rep.content); err != nil {
			return err
		}
		s.size = int64(len(rep.content))
		kind := "lost_placeholders"
		if rep.lost == 0 {
			kind = "tail_truncated"
		}
		*actions = append(*actions, RecoveryAction{Kind: kind, Segment: s.path, BytesDropped: rep.dropped, Lost: rep.lost,
			Detail: fmt.Sprintf("damage from offset %d (byte %d): %d bytes dropped, %d records lost and reported as corrupt", rep.firstBad, rep.firstByte, rep.dropped, rep.lost)})
	case rep.truncate >= 0:
		if !tail {
			return fmt.Errorf("internal: truncate of sealed segment %s", s.path)
		}
		f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open tail %s for repair: %w", s.path, err)
		}
		err = f.Truncate(int64(rep.truncate))
		if err == nil {
			err = fdatasync(f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("truncate torn tail of %s: %w", s.path, err)
		}
		s.size = int64(rep.truncate)
		*actions = append(*actions, RecoveryAction{Kind: "tail_truncated", Segment: s.path, BytesDropped: rep.dropped,
			Detail: fmt.Sprintf("torn or damaged tail after offset %d: truncated %d bytes at byte %d", rep.firstBad-1, rep.dropped, rep.truncate)})
	}
	return nil
}

// atomicWrite replaces path with data: temp file, fsync, rename, directory fsync.
func atomicWrite(path string, data []byte) error { return atomicWriteTmp(path, ".REPAIR", data) }

// atomicWriteTmp is atomicWrite through the temp file path+suffix.
func atomicWriteTmp(path, suffix string, data []byte) error {
	tmp := path + suffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}
