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
type segmentFile struct {
	index uint64 // first WAL index (= first offset + 1)
	path  string
	size  int64
	// lastTS is the timestamp of the segment's last entry, read lazily for retention.
	lastTS int64
	hasTS  bool

	// fmu guards readers and rf: reads of a sealed segment pin it under the
	// log's mutex, then read it through rf outside that mutex (see readsealed.go).
	fmu     sync.Mutex
	readers int
	rf      *os.File
	hint    readHint
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
// and checks our entry inside it. It returns the end of the frame.
func frameAt(buf []byte, p int) (end int, kind byte, off int64, ok bool) {
	size, n := binary.Uvarint(buf[p:])
	if n == 1 && size == 1 && p+2 <= len(buf) && buf[p+1] == kindCompacted {
		return p + 2, kindCompacted, -1, true // offset is its position
	}
	if n <= 0 || size < entryMinLen || size > uint64(len(buf)-p-n) {
		return 0, 0, 0, false
	}
	data := buf[p+n : p+n+int(size)]
	// Cheap filter before the checksum: the trailer must repeat the length.
	if binary.BigEndian.Uint32(data[len(data)-4:]) != uint32(size) {
		return 0, 0, 0, false
	}
	kind, off, err := checkEntry(data)
	if err != nil {
		return 0, 0, 0, false
	}
	return p + n + int(size), kind, off, true
}

// segmentRepair is the result of scanning one segment.
type segmentRepair struct {
	content   []byte // repaired content, or nil when the file is fine as is
	truncate  int    // for a torn tail with nothing valid after it: new length; -1 if none
	count     int64  // entries in the (repaired) segment
	lost      int64  // placeholders inserted
	dropped   int64  // bytes removed or replaced
	firstBad  int64  // offset at which damage was first seen, -1 if none
	firstByte int    // byte position of the first damage
}

// scanSegment verifies every frame of a segment whose first offset is base. For the
// tail (expect < 0) damage with no valid entry after it is a torn write and is cut
// off; damage followed by valid entries is bit rot inside the log: the destroyed
// offsets get placeholders so later records keep their offsets, and reads of them
// report corruption. For a sealed segment expect is the number of entries it must
// hold (known from the next segment's name) and missing ones become placeholders.
func scanSegment(buf []byte, base int64, expect int64) segmentRepair {
	r := segmentRepair{truncate: -1, firstBad: -1}
	next := base
	limit := int64(-1)
	if expect >= 0 {
		limit = base + expect
	}
	var out []byte
	changed := false
	p := 0
	for p < len(buf) {
		end, kind, off, ok := frameAt(buf, p)
		if ok && kind == kindCompacted {
			off = next
		}
		if ok && off >= next && (limit < 0 || off < limit) {
			if off > next { // whole frames are missing: keep offsets in place
				if !changed {
					out, changed = append([]byte(nil), buf[:p]...), true
				}
				if r.firstBad < 0 {
					r.firstBad, r.firstByte = next, p
				}
				for ; next < off; next++ {
					out = appendFrame(out, lostEntry(next))
					r.lost++
				}
			}
			if changed {
				out = append(out, buf[p:end]...)
			}
			p = end
			next = off + 1
			continue
		}
		// Damage at p: look for the next valid entry after it.
		if r.firstBad < 0 {
			r.firstBad, r.firstByte = next, p
		}
		q := -1
		for s := p + 1; s < len(buf); s++ {
			// A compacted entry is two bytes: too weak to resynchronize on.
			if _, kind, off, ok := frameAt(buf, s); ok && kind != kindCompacted && off >= next && (limit < 0 || off < limit) {
				q = s
				break
			}
		}
		if q < 0 {
			r.dropped += int64(len(buf) - p)
			if limit < 0 {
				if changed {
					out = out[:len(out):len(out)]
				} else {
					r.truncate = p
				}
			} else {
				if !changed {
					out, changed = append([]byte(nil), buf[:p]...), true
				}
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
	if limit >= 0 && next < limit {
		if !changed {
			out, changed = append([]byte(nil), buf...), true
		}
		if r.firstBad < 0 {
			r.firstBad, r.firstByte = next, len(buf)
		}
		for ; next < limit; next++ {
			out = appendFrame(out, lostEntry(next))
			r.lost++
		}
	}
	if changed {
		r.content = out
	}
	r.count = next - base
	return r
}

// appendFrame wraps data in tidwall/wal's binary framing.
func appendFrame(dst, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// lastEntry reads the last entry of a segment file from its end, using the
// length trailer, and returns its offset and timestamp.
func lastEntry(f *os.File, size int64) (off int64, ts int64, err error) {
	if size < entryMinLen+1 {
		return 0, 0, fmt.Errorf("segment of %d bytes holds no entry", size)
	}
	var tl [4]byte
	if _, err := f.ReadAt(tl[:], size-4); err != nil {
		return 0, 0, err
	}
	n := int64(binary.BigEndian.Uint32(tl[:]))
	if n < entryMinLen || n > size-1 {
		return 0, 0, fmt.Errorf("last entry length %d out of range", n)
	}
	prefix := int64(uvarintLen(uint64(n)))
	if prefix+n > size {
		return 0, 0, fmt.Errorf("last entry length %d out of range", n)
	}
	buf := make([]byte, prefix+n)
	if _, err := f.ReadAt(buf, size-n-prefix); err != nil && err != io.EOF {
		return 0, 0, err
	}
	end, _, off, ok := frameAt(buf, 0)
	if !ok || end != len(buf) {
		return 0, 0, fmt.Errorf("last entry frame invalid")
	}
	return off, int64(binary.BigEndian.Uint64(buf[prefix+13:])), nil
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
		case strings.HasSuffix(name, ".TEMP") || strings.HasSuffix(name, ".REPAIR") || name[20:] == ".END":
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

// recoverDir checks and repairs a partition directory before tidwall/wal opens it:
// segment continuity, sealed segments' last entries, and the whole tail segment.
func recoverDir(dir string) ([]*segmentFile, []RecoveryAction, error) {
	var actions []RecoveryAction
	segs, err := listSegments(dir, &actions)
	if err != nil {
		return nil, actions, err
	}
	changed := false
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		base := int64(s.index) - 1
		if i == len(segs)-1 {
			buf, err := os.ReadFile(s.path)
			if err != nil {
				return nil, actions, fmt.Errorf("read tail segment %s: %w", s.path, err)
			}
			rep := scanSegment(buf, base, -1)
			if err := applyRepair(s, rep, true, &actions); err != nil {
				return nil, actions, err
			}
			continue
		}
		next := segs[i+1]
		expect := int64(next.index - s.index)
		f, err := os.Open(s.path)
		if err != nil {
			return nil, actions, fmt.Errorf("open segment %s: %w", s.path, err)
		}
		off, ts, lerr := lastEntry(f, s.size)
		f.Close()
		if lerr == nil && off+1 < int64(next.index)-1 && off >= base {
			// This segment is intact but the next one starts later: whole segments are
			// missing. Fill the gap with a segment of placeholders.
			gapStart := off + 1
			gapEnd := int64(next.index) - 1
			var content []byte
			for o := gapStart; o < gapEnd; o++ {
				content = appendFrame(content, lostEntry(o))
			}
			path := filepath.Join(dir, segmentName(uint64(gapStart)+1))
			if err := atomicWrite(path, content); err != nil {
				return nil, actions, err
			}
			actions = append(actions, RecoveryAction{Kind: "segment_gap_filled", Segment: path, Lost: gapEnd - gapStart,
				Detail: fmt.Sprintf("segment files missing: offsets %d..%d were lost and are reported as corrupt", gapStart, gapEnd-1)})
			s.lastTS, s.hasTS = ts, true
			gap := &segmentFile{index: uint64(gapStart) + 1, path: path, size: int64(len(content))}
			segs = append(segs[:i+1], append([]*segmentFile{gap}, segs[i+1:]...)...)
			i++
			changed = true
			continue
		}
		if lerr == nil && off == int64(next.index)-2 {
			s.lastTS, s.hasTS = ts, true
			continue
		}
		// The last entry does not prove continuity: scan the whole segment.
		buf, err := os.ReadFile(s.path)
		if err != nil {
			return nil, actions, fmt.Errorf("read segment %s: %w", s.path, err)
		}
		rep := scanSegment(buf, base, expect)
		if err := applyRepair(s, rep, false, &actions); err != nil {
			return nil, actions, err
		}
	}
	if changed {
		if err := syncDir(dir); err != nil {
			return nil, actions, err
		}
	}
	return segs, actions, nil
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
func atomicWrite(path string, data []byte) error {
	tmp := path + ".REPAIR"
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
