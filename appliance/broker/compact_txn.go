package broker

import (
	"sort"

	"github.com/katka-io/katka/appliance/recordbatch"
	"github.com/katka-io/katka/appliance/storage"
)

// txnSpans are the offsets of a partition's transactional data that
// compaction must treat apart, as Kafka's log cleaner does: data of aborted
// transactions (removed: read_committed consumers never see it, and it must
// never count as a key's latest value, or the committed value before it
// would be removed) and data of transactions with no marker yet (kept whole,
// not counted either: it may still be aborted). Control batches themselves
// are never rewritten by the log's compaction, so every marker stays while
// the data it decides is in the log (katka keeps markers until retention
// removes their segment; Kafka drops them delete.retention.ms after their
// data is gone).
type txnSpans struct {
	spans []txnSpan // sorted by from, not overlapping
}

type txnSpan struct {
	from, to int64 // [from, to): one batch
	aborted  bool  // false: undecided (open transaction)
}

// scanTxnSpans reads the batch headers of the log up to end (no record is
// decoded; markers are one small uncompressed record each).
func scanTxnSpans(l *storage.Log, end int64) (*txnSpans, error) {
	open := map[int64][]txnSpan{} // producer id -> its open transaction's batches
	s := &txnSpans{}
	for off := l.StartOffset(); off < end; {
		data, _, err := l.ReadBatches(off, end, 4<<20)
		if err != nil {
			return nil, err
		}
		next := off
		for raw, rest, ok := recordbatch.Next(data); ok; raw, rest, ok = recordbatch.Next(rest) {
			h, err := recordbatch.ParseHeader(raw)
			if err != nil {
				break
			}
			next = max(next, h.NextOffset())
			if !h.Transactional() || h.ProducerID < 0 {
				continue
			}
			if !h.Control() {
				open[h.ProducerID] = append(open[h.ProducerID], txnSpan{from: h.BaseOffset, to: h.NextOffset()})
				continue
			}
			commit, ok := recordbatch.ControlType(raw)
			if ok && !commit {
				for _, sp := range open[h.ProducerID] {
					sp.aborted = true
					s.spans = append(s.spans, sp)
				}
			}
			delete(open, h.ProducerID)
		}
		if next <= off {
			break
		}
		off = next
	}
	for _, sps := range open {
		s.spans = append(s.spans, sps...)
	}
	sort.Slice(s.spans, func(i, j int) bool { return s.spans[i].from < s.spans[j].from })
	return s, nil
}

// at reports whether off is in an aborted transaction's data or in a
// transaction not decided yet.
func (s *txnSpans) at(off int64) (aborted, undecided bool) {
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].to > off })
	if i == len(s.spans) || s.spans[i].from > off {
		return false, false
	}
	return s.spans[i].aborted, !s.spans[i].aborted
}
