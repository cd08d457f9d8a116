package kafka

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Idempotent producers: InitProducerId hands out producer ids; per producer
// and partition the last five batches are remembered (in memory) so a retried
// batch is answered with its original offset instead of being written twice,
// and a gap in sequence numbers is refused, as Kafka's ProducerStateManager does.

// producerIdleExpiry is Kafka's producer.id.expiration.ms default.
const producerIdleExpiry = 24 * time.Hour

// cachedBatches is how many batches per producer and partition are kept for
// duplicate detection (Kafka: 5, the most in-flight requests allowed).
const cachedBatches = 5

type producerKey struct {
	id        int64
	topic     [16]byte // topic id, so a re-created topic starts afresh
	partition int32
}

type seqBatch struct {
	first, last int32
	base        int64
	appendTime  int64
}

// producerState is one producer's sequence state on one partition. mu is held
// across the sequence check and the append, which orders a producer's
// batches on the partition.
type producerState struct {
	mu      sync.Mutex
	epoch   int16
	batches []seqBatch // oldest first, at most cachedBatches
	used    time.Time
	scanned bool // the log was searched for this producer's batches after a restart
}

type producerTable struct {
	mu     sync.Mutex
	m      map[producerKey]*producerState
	nextID atomic.Int64
	// bootID is the first id of this run: a producer id at or below it was
	// handed out before a restart, so its state is rebuilt from the log.
	bootID int64
}

func newProducerTable() *producerTable {
	t := &producerTable{m: map[producerKey]*producerState{}}
	// Ids are not persisted; starting from the boot time in microseconds keeps
	// them increasing across restarts, so a producer from before a restart is
	// never confused with a new one.
	t.bootID = time.Now().UnixMicro()
	t.nextID.Store(t.bootID)
	return t
}

// newID returns a fresh producer id.
func (t *producerTable) newID() int64 { return t.nextID.Add(1) }

// get returns the state for k, creating an empty one (epoch -1) if needed.
func (t *producerTable) get(k producerKey) *producerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.m[k]
	if !ok {
		st = &producerState{epoch: -1}
		t.m[k] = st
	}
	return st
}

// sweep forgets producers idle for longer than producerIdleExpiry.
func (t *producerTable) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, st := range t.m {
		if st.mu.TryLock() {
			if now.Sub(st.used) > producerIdleExpiry {
				delete(t.m, k)
			}
			st.mu.Unlock()
		}
	}
}

// seqVerdict is the outcome of a sequence check.
type seqVerdict int

const (
	seqAppend    seqVerdict = iota // new batch, in order: append it
	seqDuplicate                   // already appended: answer with the cached batch
)

// check decides what to do with a batch of producer epoch epoch and
// sequences first..last. The caller holds st.mu.
func (st *producerState) check(epoch int16, first, last int32) (seqVerdict, seqBatch, error) {
	switch {
	case st.epoch < 0:
		// Unknown producer (new, or its state expired): any sequence is accepted.
		return seqAppend, seqBatch{}, nil
	case epoch < st.epoch:
		return 0, seqBatch{}, codeErrorf(errInvalidProducerEpoch, "producer epoch %d is older than the current epoch %d", epoch, st.epoch)
	case epoch > st.epoch:
		if first != 0 {
			return 0, seqBatch{}, codeErrorf(errOutOfOrderSequence, "first sequence of a new producer epoch must be 0, got %d", first)
		}
		return seqAppend, seqBatch{}, nil
	}
	for _, b := range st.batches {
		if b.first == first && b.last == last {
			return seqDuplicate, b, nil
		}
	}
	lastSeq := st.batches[len(st.batches)-1].last
	if !(int64(first) == int64(lastSeq)+1 || first == 0 && lastSeq == 1<<31-1) {
		return 0, seqBatch{}, codeErrorf(errOutOfOrderSequence, "out of order sequence number: expected %d, got %d", int64(lastSeq)+1, first)
	}
	return seqAppend, seqBatch{}, nil
}

// record remembers an appended batch. The caller holds st.mu.
func (st *producerState) record(epoch int16, b seqBatch, now time.Time) {
	if epoch != st.epoch {
		st.epoch = epoch
		st.batches = st.batches[:0]
	}
	if len(st.batches) == cachedBatches {
		copy(st.batches, st.batches[1:])
		st.batches = st.batches[:cachedBatches-1]
	}
	st.batches = append(st.batches, b)
	st.used = now
}

// producerScanRecords bounds how far back from the high watermark the log is
// searched for a producer's last batches after a restart: the batches a
// producer may retry are the ones in flight when katka stopped, which are
// among the newest records of the partition.
const producerScanRecords = 20000

// rebuildProducer fills st from the log when a producer from before a restart
// first writes to a partition again: the last record of each of its batches
// carries the producer id, epoch and sequences, so a batch retried across a
// crash is answered with its original offset instead of being written twice.
// The caller holds st.mu.
func (s *Server) rebuildProducer(ctx context.Context, topic string, partition int32, id int64, logAppend bool, st *producerState) {
	st.scanned = true
	pi, err := s.b.PartitionInfo(topic, partition)
	if err != nil {
		return
	}
	t0 := time.Now()
	found := 0
	for off := max(pi.LogStartOffset, pi.HighWatermark-producerScanRecords); off < pi.HighWatermark; {
		res, err := s.b.Fetch(ctx, topic, partition, off, 4<<20, 0)
		if err != nil || len(res.Records) == 0 {
			if err != nil {
				s.log.Warn("producer state rebuild stopped early", "topic", topic, "partition", partition, "offset", off, "err", err)
			}
			break
		}
		for i := range res.Records {
			r := &res.Records[i]
			if p := r.Producer; p != nil && p.ID == id {
				sb := seqBatch{first: p.FirstSeq, last: p.LastSeq, base: r.Offset - (p.Count() - 1), appendTime: -1}
				if logAppend {
					sb.appendTime = r.Timestamp.UnixMilli()
				}
				st.record(p.Epoch, sb, t0)
				found++
			}
		}
		off = res.Records[len(res.Records)-1].Offset + 1
	}
	if found > 0 {
		s.log.Info("producer state rebuilt from the log", "producer_id", id, "topic", topic, "partition", partition, "batches", found, "epoch", st.epoch, "took", time.Since(t0).Round(time.Microsecond))
	}
}
