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
		frames = append(frames, Frame{Offset: off, Pos: p, End: end, Lost: kind == kindLost})
		p = end
	}
	return frames, p
}
