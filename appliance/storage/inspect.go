package storage

// Frame locates one entry in a segment file's bytes; used by tools and tests
// that inspect or damage logs on purpose.
type Frame struct {
	// Offset is the first offset the entry holds (a record's offset, a
	// batch's base offset).
	Offset int64
	// Last is the last offset the entry spans (Offset for a record; base
	// offset + last offset delta for a batch).
	Last int64
	// Pos and End are the byte range of the whole frame (length prefix included).
	Pos, End int
	// Batch is true for a record batch (the format written since the
	// per-record one).
	Batch bool
	// Lost is true for a placeholder left by recovery for destroyed records.
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
		end, kind, off, count, ok := frameAt(buf, p)
		if !ok {
			break
		}
		if kind == kindCompacted { // holds no offset: it is the one after the previous
			off = -1
			if len(frames) > 0 {
				off = frames[len(frames)-1].Last + 1
			}
		}
		frames = append(frames, Frame{Offset: off, Last: off + count - 1, Pos: p, End: end, Batch: kind == kindBatch,
			Lost: kind == kindLost || kind == kindLostRange, Compacted: kind == kindCompacted})
		p = end
	}
	return frames, p
}
