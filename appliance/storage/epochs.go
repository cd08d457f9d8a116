package storage

import (
	"fmt"
)

// EpochEntry is one leader epoch of a partition and the first offset its
// leader wrote (Kafka's EpochEntry).
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// ScanEpochs walks the stored batches' headers and returns the leader epoch
// changes: (epoch, base offset of its first batch), for rebuilding a damaged
// or missing leader-epoch checkpoint as Kafka does at load. As with Kafka's
// assign, an epoch is only taken when it is above every epoch before it
// (batches with a negative epoch, and entries of the per-record format, which
// read as epoch 0, are handled the same way), and the first entry's start is
// raised to the log start.
func (l *Log) ScanEpochs() ([]EpochEntry, error) {
	l.mu.Lock()
	off, end := l.start, l.end
	l.mu.Unlock()
	start := off
	var out []EpochEntry
	for off < end {
		bp, err := l.ReadBatchParts(off, end, 4<<20)
		if err != nil {
			return out, fmt.Errorf("scan epochs of %s at %d: %w", l.dir, off, err)
		}
		if len(bp.Parts) == 0 {
			bp.Release()
			break
		}
		for _, b := range bp.Parts {
			h, err := ParseBatchHeader(b)
			if err != nil {
				bp.Release()
				return out, fmt.Errorf("scan epochs of %s at %d: %w", l.dir, off, err)
			}
			if h.LeaderEpoch >= 0 && (len(out) == 0 || h.LeaderEpoch > out[len(out)-1].Epoch) {
				out = append(out, EpochEntry{Epoch: h.LeaderEpoch, StartOffset: max(h.BaseOffset, start)})
			}
		}
		off = bp.Next
		bp.Release()
	}
	return out, nil
}
