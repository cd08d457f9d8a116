package kafka

import (
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
}

type producerTable struct {
	mu     sync.Mutex
	m      map[producerKey]*producerState
	nextID atomic.Int64
}

func newProducerTable() *producerTable {
	t := &producerTable{m: map[producerKey]*producerState{}}
	// Ids are not persisted; starting from the boot time in microseconds keeps
	// them increasing across restarts, so a producer from before a restart is
	// never confused with a new one.
	t.nextID.Store(time.Now().UnixMicro())
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
