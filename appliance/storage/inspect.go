package storage

// Frame locates one entry in a segment file's bytes; used by tools and tests
// that inspect or damage logs on purpose.
type Frame struct {
	// Offset is the record offset stored in the entry.
	Offset int64
	// Pos and End are the byte range of the whole frame (length prefix included).
	Pos, End int
	// Lost is true for a placeholder left by recovery for a destroyed record.
	Lost bool
	// Compacted is true for the placeholder of a record removed by compaction.
	Compacted bool
}

// Frames parses a segment file's bytes and returns its valid frames from the
// start, stopping at the first byte that does not begin a valid frame; rest is
// that position (len(buf) when the whole file is valid).
func Frames(buf []byte) (frames []Frame, rest int) {
	p := 0
	for p < len(buf) {
		end, kind, off, ok := frameAt(buf, p)
		if !ok {
			break
		}
		if kind == kindCompacted { // holds no offset: it is the one after the previous
			off = -1
			if len(frames) > 0 {
				off = frames[len(frames)-1].Offset + 1
			}
		}
		frames = append(frames, Frame{Offset: off, Pos: p, End: end, Lost: kind == kindLost, Compacted: kind == kindCompacted})
		p = end
	}
	return frames, p
}
