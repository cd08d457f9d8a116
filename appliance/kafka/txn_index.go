package kafka

import (
	"context"
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/recordbatch"
	"github.com/katka-io/katka/appliance/txn"
)

// Per-partition transaction state, what Kafka's ProducerStateManager and
// aborted-transaction index keep: for each partition the first offset of
// every producer's open transaction (the oldest is the last stable offset)
// and the aborted transactions' (producer id, first offset, last offset)
// ranges that read_committed fetches return, so consumers skip aborted data.
//
// Kept in memory and rebuilt lazily: the first time a partition is touched
// by a transactional produce, a marker, a read_committed fetch or a
// read_committed ListOffsets after a start, its log is scanned once from the
// log start, batch headers only (no decompression, no record decoding), at
// the speed of a sequential read of the partition. A partition that never
// held a transactional batch costs one entry with empty maps after that.
// Aborted ranges below the log start are dropped as retention moves it; at
// most maxAbortedPerPartition are kept per partition (24 bytes each), the
// oldest dropped first beyond that (logged; a read_committed consumer that
// far behind would then see those aborted records).

// maxAbortedPerPartition bounds the aborted ranges kept per partition.
const maxAbortedPerPartition = 100000

// abortedTxn is one aborted transaction's span in a partition.
type abortedTxn struct {
	pid         int64
	first, last int64 // last is the ABORT marker's offset
}

// openTxn is a producer's transaction with data in the partition, no marker yet.
type openTxn struct {
	first int64
	epoch int16
}

// partTxns is one partition's transaction state.
type partTxns struct {
	mu      sync.Mutex
	loaded  bool
	epoch   int32 // the leader epoch it was loaded in (-1: not replicated)
	hasTxn  bool  // a transactional batch was ever seen: fetches serve stored batches
	open    map[int64]openTxn
	aborted []abortedTxn    // by marker offset
	marker  map[int64]int16 // producer id -> epoch of its last marker here
}

type partKey struct {
	topic     [16]byte // topic id: a re-created topic starts afresh
	partition int32
}

// txnIndex holds partTxns for every partition touched.
type txnIndex struct {
	mu    sync.Mutex
	parts map[partKey]*partTxns
}

// index returns the server's partition index, made on first use.
func (t *txnState) index() *txnIndex {
	t.imu.Lock()
	defer t.imu.Unlock()
	if t.idx == nil {
		t.idx = &txnIndex{parts: map[partKey]*partTxns{}}
	}
	return t.idx
}

// partTxns returns the partition's state, loaded, and locked; the caller unlocks.
func (s *Server) partTxns(ctx context.Context, info broker.TopicInfo, partition int32) *partTxns {
	x := s.tx.index()
	x.mu.Lock()
	k := partKey{info.ID, partition}
	pt := x.parts[k]
	if pt == nil {
		pt = &partTxns{open: map[int64]openTxn{}, marker: map[int64]int16{}}
		x.parts[k] = pt
	}
	x.mu.Unlock()
	pt.mu.Lock()
	le := int32(-1)
	if rs, ok := s.b.ReplicaState(info.Name, partition); ok {
		le = rs.LeaderEpoch
	}
	if pt.loaded && pt.epoch != le {
		// Leadership moved since it was loaded: transactions other leaders
		// wrote (replicated into this log) are not in it.
		pt.loaded, pt.hasTxn = false, false
		pt.open, pt.marker, pt.aborted = map[int64]openTxn{}, map[int64]int16{}, nil
	}
	if !pt.loaded {
		pt.epoch = le
		s.scanTxns(ctx, info.Name, partition, pt, le >= 0)
	}
	return pt
}

// scanTxns rebuilds pt from the partition's batch headers, up to the high
// watermark, or with toLogEnd (a replicated partition: a new leader's log
// end holds transactions its followers have not confirmed yet) up to the
// log end. pt.mu is held.
func (s *Server) scanTxns(ctx context.Context, topic string, partition int32, pt *partTxns, toLogEnd bool) {
	pi, err := s.b.PartitionInfo(topic, partition)
	if err != nil {
		return // retried at the next use
	}
	read := func(off int64) ([]byte, int64, error) {
		res, err := s.b.FetchBatches(ctx, topic, partition, off, pi.HighWatermark, 4<<20)
		return res.Batches, pi.HighWatermark, err
	}
	if toLogEnd {
		read = func(off int64) ([]byte, int64, error) { return s.b.BatchesToLogEnd(topic, partition, off, 4<<20) }
	}
	off := pi.LogStartOffset
	for {
		batches, end, err := read(off)
		if err != nil || len(batches) == 0 || off >= end {
			if err != nil {
				s.log.Warn("transaction index rebuild stopped early", "topic", topic, "partition", partition, "offset", off, "err", err)
			}
			break
		}
		next := off
		for raw, rest, ok := recordbatch.Next(batches); ok; raw, rest, ok = recordbatch.Next(rest) {
			h, err := broker.ParseBatchHeader(raw)
			if err != nil {
				break
			}
			commit := false
			if h.Attributes&txn.AttrControl != 0 {
				_, commit, _ = txn.IsControlBatch(raw)
			}
			pt.observe(h, commit)
			next = max(next, h.NextOffset())
		}
		if next <= off {
			break
		}
		off = next
	}
	pt.prune(pi.LogStartOffset)
	pt.loaded = true
}

// observe applies one batch header (seen in log order). For a control batch
// commit tells the marker's type.
func (pt *partTxns) observe(h broker.BatchHeader, commit bool) {
	if h.Attributes&txn.AttrTransactional == 0 || h.ProducerID < 0 {
		return
	}
	pt.hasTxn = true
	if h.Attributes&txn.AttrControl == 0 {
		if _, ok := pt.open[h.ProducerID]; !ok {
			pt.open[h.ProducerID] = openTxn{first: h.BaseOffset, epoch: h.ProducerEpoch}
		}
		return
	}
	pt.endTxn(h.ProducerID, h.ProducerEpoch, commit, h.BaseOffset)
}

// endTxn closes pid's open transaction with a marker at offset.
func (pt *partTxns) endTxn(pid int64, epoch int16, commit bool, offset int64) {
	o, ok := pt.open[pid]
	delete(pt.open, pid)
	pt.marker[pid] = epoch
	if !ok || commit {
		return
	}
	pt.aborted = append(pt.aborted, abortedTxn{pid: pid, first: o.first, last: offset})
	if len(pt.aborted) > maxAbortedPerPartition {
		pt.aborted = append(pt.aborted[:0], pt.aborted[len(pt.aborted)-maxAbortedPerPartition:]...)
	}
}

// prune drops aborted ranges wholly below the log start.
func (pt *partTxns) prune(logStart int64) {
	i := 0
	for i < len(pt.aborted) && pt.aborted[i].last < logStart {
		i++
	}
	if i > 0 {
		pt.aborted = append(pt.aborted[:0], pt.aborted[i:]...)
	}
}

// lso is the last stable offset: the first offset of the oldest open
// transaction, else hw (never below logStart).
func (pt *partTxns) lso(hw, logStart int64) int64 {
	l := hw
	for _, o := range pt.open {
		l = min(l, o.first)
	}
	return max(l, min(logStart, hw))
}

// abortedIn lists the aborted transactions overlapping [from, to).
func (pt *partTxns) abortedIn(from, to int64) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	out := []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
	i := sort.Search(len(pt.aborted), func(i int) bool { return pt.aborted[i].last >= from })
	for ; i < len(pt.aborted); i++ {
		a := pt.aborted[i]
		if a.first >= to {
			continue
		}
		e := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
		e.ProducerID, e.FirstOffset = a.pid, a.first
		out = append(out, e)
	}
	return out
}
