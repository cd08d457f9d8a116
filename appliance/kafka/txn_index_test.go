package kafka

import (
	"testing"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/txn"
)

// TestPartTxnsIndex: the per-partition transaction state as a log replays
// into it: open transactions hold the last stable offset at their first
// offset, an abort becomes an aborted range reported to fetches that overlap
// it, a commit none, and ranges below the log start are dropped.
func TestPartTxnsIndex(t *testing.T) {
	pt := &partTxns{open: map[int64]openTxn{}, marker: map[int64]int16{}}
	data := func(pid, base int64, n int32) {
		pt.observe(broker.BatchHeader{BaseOffset: base, LastOffsetDelta: n - 1, NumRecords: n, ProducerID: pid, Attributes: txn.AttrTransactional}, false)
	}
	marker := func(pid, at int64, commit bool) {
		pt.observe(broker.BatchHeader{BaseOffset: at, ProducerID: pid, ProducerEpoch: 3, NumRecords: 1, Attributes: txn.AttrTransactional | txn.AttrControl}, commit)
	}
	// Idempotent, non-transactional batches change nothing.
	pt.observe(broker.BatchHeader{BaseOffset: 0, NumRecords: 5, LastOffsetDelta: 4, ProducerID: 9}, false)
	if pt.hasTxn || pt.lso(5, 0) != 5 {
		t.Fatalf("a plain batch touched the index: hasTxn %v, lso %d", pt.hasTxn, pt.lso(5, 0))
	}
	data(1, 5, 3) // 5..7
	data(2, 8, 2) // 8..9
	data(1, 10, 2)
	if got := pt.lso(12, 0); got != 5 {
		t.Fatalf("lso %d, want 5 (producer 1's first offset)", got)
	}
	marker(1, 12, false) // abort 5..12
	if got := pt.lso(13, 0); got != 8 {
		t.Fatalf("lso %d after the abort, want 8 (producer 2 still open)", got)
	}
	marker(2, 13, true)
	if got := pt.lso(14, 0); got != 14 {
		t.Fatalf("lso %d with nothing open, want the high watermark 14", got)
	}
	if pt.marker[1] != 3 || pt.marker[2] != 3 {
		t.Fatalf("marker epochs %v", pt.marker)
	}
	if a := pt.abortedIn(0, 14); len(a) != 1 || a[0].ProducerID != 1 || a[0].FirstOffset != 5 {
		t.Fatalf("aborted in [0,14): %+v", a)
	}
	if a := pt.abortedIn(13, 14); len(a) != 0 {
		t.Fatalf("aborted in [13,14): %+v (the range ended at 12)", a)
	}
	if a := pt.abortedIn(0, 5); len(a) != 0 {
		t.Fatalf("aborted in [0,5): %+v (the range starts at 5)", a)
	}
	// The open transaction's first offset below the log start: the LSO is
	// never below the log start.
	data(4, 14, 1)
	if got := pt.lso(15, 20); got != 15 {
		t.Fatalf("lso %d with the log start past the high watermark, want 15", got)
	}
	pt.prune(13)
	if len(pt.aborted) != 0 {
		t.Fatalf("aborted range below the log start kept: %+v", pt.aborted)
	}
}
