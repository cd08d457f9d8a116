package broker

import (
	"bytes"
	"fmt"
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

// compactionScan is what one read of a partition's log tells compaction: the
// latest offset of every key, counting only decided data (neither aborted
// transactions' records nor those of transactions with no marker yet), and
// the transaction spans.
type compactionScan struct {
	latest map[string]*int64
	txns   *txnSpans

	start   int64               // the log start: records below it do not count
	open    map[int64][]txnSpan // producer id -> its open transaction's batches
	pending map[int64][]keyAt   // producer id -> its open transaction's keys
}

// keyAt is a record's key and offset.
type keyAt struct {
	key []byte
	off int64
}

// latestOf is key's latest decided offset, if the log holds one.
func (c *compactionScan) latestOf(key []byte) (int64, bool) {
	if p := c.latest[string(key)]; p != nil {
		return *p, true
	}
	return 0, false
}

// note makes off key's latest offset if it is later than the one known.
func (c *compactionScan) note(key []byte, off int64) {
	if p := c.latest[string(key)]; p != nil {
		*p = max(*p, off)
		return
	}
	v := off
	c.latest[string(key)] = &v
}

// scanForCompaction reads the log from its start up to end once, batch by
// batch: the batch headers give the transaction spans (a marker is one small
// uncompressed record), and each record's key and offset delta (values and
// headers are stepped over) give each key's latest offset. A transaction's
// keys wait for its marker: counted if it commits, dropped if it aborts,
// never counted while open. Before, the keys were read with Log.Read, which
// decodes every record whole, after a separate pass over the headers: the
// two passes were 60% of compaction's CPU.
func scanForCompaction(l *storage.Log, end int64) (*compactionScan, error) {
	c := &compactionScan{latest: map[string]*int64{}, txns: &txnSpans{},
		open: map[int64][]txnSpan{}, pending: map[int64][]keyAt{}, start: l.StartOffset()}
	for off := c.start; off < end; {
		// The batches as stored, uncopied (keys noted are copied into the
		// map; a transaction's pending keys are cloned).
		bp, err := l.ReadBatchParts(off, end, 4<<20)
		if err != nil {
			return nil, err
		}
		next := off
		for _, raw := range bp.Parts {
			if next, err = c.batch(raw, next); err != nil {
				break
			}
		}
		bp.Release()
		if err != nil {
			return nil, err
		}
		if next <= off {
			break
		}
		off = next
	}
	for _, sps := range c.open {
		c.txns.spans = append(c.txns.spans, sps...)
	}
	sort.Slice(c.txns.spans, func(i, j int) bool { return c.txns.spans[i].from < c.txns.spans[j].from })
	return c, nil
}

// batch takes one stored batch into the scan and returns the offset after
// it (next if the batch does not parse).
func (c *compactionScan) batch(raw []byte, next int64) (int64, error) {
	h, err := recordbatch.ParseHeader(raw)
	if err != nil {
		return next, nil
	}
	next = max(next, h.NextOffset())
	txn := h.Transactional() && h.ProducerID >= 0
	if h.Control() {
		if !txn {
			return next, nil
		}
		commit, ok := recordbatch.ControlType(raw)
		if ok && !commit {
			for _, sp := range c.open[h.ProducerID] {
				sp.aborted = true
				c.txns.spans = append(c.txns.spans, sp)
			}
		} else if ok {
			for _, k := range c.pending[h.ProducerID] {
				c.note(k.key, k.off)
			}
		}
		delete(c.open, h.ProducerID)
		delete(c.pending, h.ProducerID)
		return next, nil
	}
	if txn {
		c.open[h.ProducerID] = append(c.open[h.ProducerID], txnSpan{from: h.BaseOffset, to: h.NextOffset()})
	}
	recs, err := recordbatch.DecompressRecords(&h, raw[recordbatch.HeaderLen:], maxDecodedBatch)
	if err != nil {
		return next, fmt.Errorf("compaction scan of batch at %d: %w", h.BaseOffset, err)
	}
	for len(recs) > 0 {
		od, key, n, err := recordbatch.RecordKey(recs)
		if err != nil {
			return next, fmt.Errorf("compaction scan of batch at %d: %w", h.BaseOffset, err)
		}
		recs = recs[n:]
		o := h.BaseOffset + od
		if key == nil || o < c.start {
			continue
		}
		if txn {
			c.pending[h.ProducerID] = append(c.pending[h.ProducerID], keyAt{bytes.Clone(key), o})
		} else {
			c.note(key, o)
		}
	}
	return next, nil
}

// maxDecodedBatch bounds a batch's records decompressed by the compaction
// scan (as storage bounds its own reads): batches were checked when written,
// so this only stops damaged data from growing memory without end.
const maxDecodedBatch = 256 << 20

// at reports whether off is in an aborted transaction's data or in a
// transaction not decided yet.
func (s *txnSpans) at(off int64) (aborted, undecided bool) {
	i := sort.Search(len(s.spans), func(i int) bool { return s.spans[i].to > off })
	if i == len(s.spans) || s.spans[i].from > off {
		return false, false
	}
	return s.spans[i].aborted, !s.spans[i].aborted
}
