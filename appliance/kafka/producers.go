package kafka

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// Idempotent producers, kept as Kafka keeps them.
//
// Ids: InitProducerId hands out ids from blocks of producerIDBlock, as Kafka's
// ProducerIdManager does; the end of each block is made durable in the
// internal topic __katka_producer_ids (Kafka keeps it in its metadata log)
// before any id of the block is handed out. So the ids this node issued, in
// this run or before a restart, are exactly those below the next id, and a
// produce with any other id is refused with UNKNOWN_PRODUCER_ID before it
// costs a log scan or a table entry.
//
// Sequences: per producer and partition the last five batches are
// remembered (in memory) so a retried batch is answered with its original
// offset instead of being written twice, and a gap in sequence numbers is
// refused, as Kafka's ProducerStateManager does. A producer from before a
// restart is rebuilt from the partition's newest records (rebuildProducer).
//
// Bounds: at most MaxProducerIDs ids have state (the longest idle is
// forgotten first) and an id idle for ProducerIDExpiration is forgotten
// (producer.id.expiration.ms). A forgotten id stays valid: its next batch
// starts a fresh sequence, as after Kafka's expiry.

// ProducerIDsTopic is the internal topic holding the end of the last producer
// id block handed out (one record per block; older records are deleted).
const ProducerIDsTopic = "__katka_producer_ids"

// producerIDBlock is how many ids one durable write covers (Kafka: 1000).
const producerIDBlock = 1000

// Defaults of StateConfig's producer fields (Kafka's producer.id.expiration.ms).
const (
	defaultProducerIDExpiration = 24 * time.Hour
	defaultMaxProducerIDs       = 10000
)

// codeUnknownProducerID is Kafka's UNKNOWN_PRODUCER_ID (59).
const codeUnknownProducerID int16 = 59

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
	// leaderEpoch is the partition's leader epoch the state was built in
	// (-1: not replicated): after a leader change, what other leaders
	// appended is only in the log, so the state is rebuilt from it.
	leaderEpoch int32
	built       bool
}

// producerEntry is one producer id's state on every partition it wrote to.
type producerEntry struct {
	id       int64
	used     time.Time
	inflight int // produce calls holding one of its states; never evicted then
	parts    map[producerKey]*producerState
	elem     *list.Element // in producerTable.idle, most recently used first
}

type producerTable struct {
	now func() time.Time

	mu   sync.Mutex
	m    map[int64]*producerEntry
	idle list.List // of *producerEntry, most recently used at the front
	exp  time.Duration
	max  int

	// Issuing: imu orders loads and block writes; next is read without it.
	imu      sync.Mutex
	loaded   atomic.Bool
	next     atomic.Int64 // next id to hand out: every id below was issued
	bootNext int64        // next at start: ids below it were issued before this run
	blockEnd int64        // ids below it are durable as allocated
	cell     CellView     // in a cell, blocks come from the controller (nil: none)
}

func newProducerTable() *producerTable {
	return &producerTable{now: time.Now, m: map[int64]*producerEntry{}, exp: defaultProducerIDExpiration, max: defaultMaxProducerIDs}
}

// load reads the producer id high-water mark from ProducerIDsTopic and the
// limits of the server's Config.State, once (again after a failure).
func (t *producerTable) load(ctx context.Context, s *Server) error {
	if t.loaded.Load() {
		return nil
	}
	t.imu.Lock()
	defer t.imu.Unlock()
	if t.loaded.Load() {
		return nil
	}
	sc := s.cfg.State
	t.mu.Lock()
	if sc.ProducerIDExpiration > 0 {
		t.exp = sc.ProducerIDExpiration
	}
	if sc.MaxProducerIDs > 0 {
		t.max = sc.MaxProducerIDs
	}
	t.mu.Unlock()
	if s.cfg.Cell != nil {
		// A cell: blocks come from the controller, and any id the cell
		// issued may have state in this node's logs (rebuildProducer).
		t.cell, t.bootNext = s.cfg.Cell, math.MaxInt64
		t.loaded.Store(true)
		return nil
	}
	end, err := readProducerIDBlock(ctx, s.b)
	if err != nil {
		return err
	}
	t.bootNext, t.blockEnd = end, end
	t.next.Store(end)
	t.loaded.Store(true)
	return nil
}

// producerIDBlockValue is the record of ProducerIDsTopic.
type producerIDBlockValue struct {
	// BlockEnd is one past the last id of the newest block handed out.
	BlockEnd int64 `json:"block_end"`
}

// readProducerIDBlock returns the durable high-water mark: 0 before the first
// id was ever issued.
func readProducerIDBlock(ctx context.Context, b *broker.Broker) (int64, error) {
	pi, err := b.PartitionInfo(ProducerIDsTopic, 0)
	if errors.Is(err, broker.ErrUnknownTopic) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", ProducerIDsTopic, err)
	}
	if pi.HighWatermark <= pi.LogStartOffset {
		return 0, nil
	}
	res, err := b.Fetch(ctx, ProducerIDsTopic, 0, pi.HighWatermark-1, 1<<20, 0)
	if err != nil || len(res.Records) == 0 {
		return 0, fmt.Errorf("read %s at %d: %v (%d records)", ProducerIDsTopic, pi.HighWatermark-1, err, len(res.Records))
	}
	var v producerIDBlockValue
	if err := json.Unmarshal(res.Records[len(res.Records)-1].Value, &v); err != nil || v.BlockEnd < 0 {
		return 0, fmt.Errorf("read %s at %d: bad record %q: %v", ProducerIDsTopic, pi.HighWatermark-1, res.Records[len(res.Records)-1].Value, err)
	}
	return v.BlockEnd, nil
}

// allocateBlock makes ids up to end durable as handed out. The caller holds imu.
func (t *producerTable) allocateBlock(ctx context.Context, b *broker.Broker, end int64) error {
	if _, err := b.Topic(ProducerIDsTopic); err != nil {
		_, err = b.CreateTopic(ProducerIDsTopic, 1, broker.TopicConfig{RetentionMs: -1, RetentionBytes: -1})
		if err != nil && !errors.Is(err, broker.ErrTopicExists) {
			return fmt.Errorf("producer id block: %w", err)
		}
	}
	val, _ := json.Marshal(producerIDBlockValue{BlockEnd: end})
	off, err := b.Produce(ctx, ProducerIDsTopic, 0, []broker.Record{{Key: []byte("producer_id_block"), Value: val, Timestamp: time.Now()}}, broker.AcksAll)
	if err != nil {
		return fmt.Errorf("producer id block: %w", err)
	}
	t.blockEnd = end
	if off > 0 {
		_, _ = b.DeleteRecords(ProducerIDsTopic, 0, off) // only the newest record matters
	}
	return nil
}

// issue hands out a new producer id and gives it a table entry.
func (t *producerTable) issue(ctx context.Context, s *Server) (int64, error) {
	if err := t.load(ctx, s); err != nil {
		return -1, err
	}
	t.imu.Lock()
	id := t.next.Load()
	if id >= t.blockEnd && t.cell != nil {
		start, end, err := t.cell.AllocateProducerIDs(ctx, producerIDBlock)
		if err != nil {
			t.imu.Unlock()
			return -1, fmt.Errorf("producer id block from the cell: %w", err)
		}
		id, t.blockEnd = start, end
	} else if id >= t.blockEnd {
		if err := t.allocateBlock(ctx, s.b, id+producerIDBlock); err != nil {
			t.imu.Unlock()
			return -1, err
		}
	}
	t.next.Store(id + 1)
	t.imu.Unlock()
	t.mu.Lock()
	t.entry(id).used = t.now()
	t.mu.Unlock()
	return id, nil
}

// issued reports whether id was handed out by this node (now or before a
// restart); in a cell, by any node of the cell.
func (t *producerTable) issued(ctx context.Context, id int64) bool {
	if t.cell != nil {
		return t.cell.ProducerIDIssued(ctx, id)
	}
	return id >= 0 && id < t.next.Load()
}

// entry returns id's entry, creating it (and forgetting the longest idle ids
// beyond the table's bound). The caller holds t.mu.
func (t *producerTable) entry(id int64) *producerEntry {
	e := t.m[id]
	if e != nil {
		t.idle.MoveToFront(e.elem)
		return e
	}
	e = &producerEntry{id: id, used: t.now(), parts: map[producerKey]*producerState{}}
	e.elem = t.idle.PushFront(e)
	t.m[id] = e
	for el := t.idle.Back(); len(t.m) > t.max && el != nil; {
		old := el.Value.(*producerEntry)
		el = el.Prev()
		if old.inflight == 0 && old != e {
			t.forget(old)
		}
	}
	return e
}

func (t *producerTable) forget(e *producerEntry) {
	t.idle.Remove(e.elem)
	delete(t.m, e.id)
}

// acquire returns the state of k, marking its producer in use until release.
func (t *producerTable) acquire(k producerKey) (*producerEntry, *producerState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(k.id)
	e.inflight++
	e.used = t.now()
	st, ok := e.parts[k]
	if !ok {
		st = &producerState{epoch: -1}
		e.parts[k] = st
	}
	return e, st
}

func (t *producerTable) release(e *producerEntry) {
	t.mu.Lock()
	e.inflight--
	e.used = t.now()
	t.mu.Unlock()
}

// sweep forgets producers idle for longer than the expiration.
func (t *producerTable) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for el := t.idle.Back(); el != nil; {
		e := el.Value.(*producerEntry)
		el = el.Prev()
		if now.Sub(e.used) <= t.exp {
			break // the rest were used later
		}
		if e.inflight == 0 {
			t.forget(e)
		}
	}
}

// size is the number of producer ids with state.
func (t *producerTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// lockProducer checks that producer id was issued by this node and returns
// its state on the partition, locked, with the function that unlocks it; a
// producer from before a restart is first rebuilt from the log. An id never
// issued gets UNKNOWN_PRODUCER_ID (counted as a producer_ids limit hit), as
// Kafka answers a producer it does not know; the client then asks for a new id.
func (s *Server) lockProducer(ctx context.Context, info broker.TopicInfo, partition int32, id int64, logAppend bool) (*producerState, func(), error) {
	t := s.producers
	if err := t.load(ctx, s); err != nil {
		return nil, nil, err
	}
	if !t.issued(ctx, id) {
		detail := fmt.Sprintf("producer id %d was not issued by this broker (next id %d), produce to %s-%d refused", id, t.next.Load(), info.Name, partition)
		s.limitRejected(broker.LimitProducerIDs, clientOf(ctx), detail)
		return nil, nil, codeErrorf(codeUnknownProducerID, "%s", detail)
	}
	e, st := t.acquire(producerKey{id: id, topic: info.ID, partition: partition})
	st.mu.Lock()
	le := int32(-1)
	if rs, ok := s.b.ReplicaState(info.Name, partition); ok {
		le = rs.LeaderEpoch
	}
	if !st.built || st.leaderEpoch != le {
		// New here, or leadership moved since: batches other leaders wrote
		// (replicated into this log) are not in the state.
		if st.built {
			st.epoch, st.batches, st.scanned = -1, st.batches[:0], false
		}
		st.leaderEpoch, st.built = le, true
	}
	if st.epoch < 0 && !st.scanned && (id < t.bootNext || le >= 0) {
		s.rebuildProducer(ctx, info.Name, partition, id, logAppend, st)
	}
	return st, func() { st.mu.Unlock(); t.release(e) }, nil
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
	// Up to the log end: on a new leader, a batch retried across the leader
	// change may be above the high watermark still.
	end, _ := s.b.ReadToLogEnd(topic, partition, math.MaxInt64, 0) // only the log end
	for off := max(pi.LogStartOffset, end.HighWatermark-producerScanRecords); off < end.HighWatermark; {
		res, err := s.b.ReadToLogEnd(topic, partition, off, 4<<20)
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
