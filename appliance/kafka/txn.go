package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/txn"
)

// Kafka transactions: the coordinator is appliance/txn; this file owns the
// server's instance of it and the three things it needs from the broker:
// __transaction_state (txnLog), producer ids (the server's durable id
// blocks, producers.go) and the markers (txnMarkers: control batches
// appended to the data partitions, committed offsets applied to the group
// coordinator). The handlers are 22 (with a transactional id), 24, 25, 26,
// 28, 65 and 66; produce verifies transactional batches (00_produce.go) and
// fetch serves the last stable offset and aborted transactions (01_fetch.go,
// txn_index.go).

// txnHandlers returns the transaction API handlers, added to the handler
// table at init.
func txnHandlers() map[int16]handler {
	return map[int16]handler{
		24: {0, 5, (*Server).handleAddPartitionsToTxn},
		25: {0, 4, (*Server).handleAddOffsetsToTxn},
		// EndTxn v5 (KIP-890 part 2) is only for clients that see the
		// transaction.version=2 feature, which katka does not advertise.
		26: {0, 4, (*Server).handleEndTxn},
		28: {0, 5, (*Server).handleTxnOffsetCommit},
		65: {0, 0, (*Server).handleDescribeTransactions},
		66: {0, 2, (*Server).handleListTransactions},
	}
}

// txnState is the server's transaction coordinator and partition index.
type txnState struct {
	mu     sync.Mutex
	c      *txn.Coordinator
	closed bool
	imu    sync.Mutex // guards idx
	idx    *txnIndex
	remote remotePending // in a cell: offsets handed to other nodes' coordinators (txn_cell.go)
}

// txns returns the server's transaction coordinator, opening it (replaying
// __transaction_state and resuming the markers of transactions that were
// being completed) on first use.
func (s *Server) txns() (*txn.Coordinator, error) {
	t := &s.tx
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c != nil {
		return t.c, nil
	}
	if t.closed {
		return nil, txn.ErrClosed
	}
	c, err := txn.Open(txn.Options{
		Log:             txnLog{s},
		IssueProducerID: func(ctx context.Context) (int64, error) { return s.producers.issue(ctx, s) },
		Markers:         txnMarkers{s},
		LimitRejected:   s.b.LimitRejected,
		Logger:          s.log,
	})
	if err != nil {
		s.log.Error("transaction coordinator unavailable", "err", err)
		return nil, err
	}
	t.c = c
	return c, nil
}

// txnsFor returns the coordinator, or false when it cannot be opened:
// callers answer COORDINATOR_NOT_AVAILABLE, which clients retry.
func (s *Server) txnsFor() (*txn.Coordinator, bool) {
	c, err := s.txns()
	return c, err == nil
}

// closeTxns stops the transaction coordinator; no new one is opened after.
func (s *Server) closeTxns() {
	t := &s.tx
	t.mu.Lock()
	c := t.c
	t.c, t.closed = nil, true
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// known says whether a topic partition exists (for AddPartitionsToTxn and
// TxnOffsetCommit: UNKNOWN_TOPIC_OR_PARTITION otherwise).
func (s *Server) known(topic string, partition int32) bool {
	info, err := s.b.Topic(topic)
	return err == nil && partition >= 0 && partition < info.Partitions
}

// txnLog is __transaction_state on the broker: one partition, no retention
// (the coordinator compacts it itself, never by key).
type txnLog struct{ s *Server }

func (l txnLog) ensure() error {
	if _, err := l.s.b.Topic(txn.Topic); err == nil {
		return nil
	}
	_, err := l.s.b.CreateTopic(txn.Topic, 1, broker.TopicConfig{RetentionMs: -1, RetentionBytes: -1})
	if err != nil && !errors.Is(err, broker.ErrTopicExists) {
		return fmt.Errorf("create %s: %w", txn.Topic, err)
	}
	return nil
}

// Append writes recs fsynced.
func (l txnLog) Append(ctx context.Context, recs []txn.Record) error {
	_, err := l.append(ctx, recs)
	return err
}

func (l txnLog) append(ctx context.Context, recs []txn.Record) (int64, error) {
	if err := l.ensure(); err != nil {
		return 0, err
	}
	brs := make([]broker.Record, len(recs))
	now := time.Now()
	for i, r := range recs {
		brs[i] = broker.Record{Key: r.Key, Value: r.Value, Timestamp: now}
	}
	return l.s.b.Produce(ctx, txn.Topic, 0, brs, broker.AcksAll)
}

// Replay reads the topic from its log start.
func (l txnLog) Replay(ctx context.Context, fn func(key, value []byte) error) error {
	pi, err := l.s.b.PartitionInfo(txn.Topic, 0)
	if errors.Is(err, broker.ErrUnknownTopic) {
		return nil
	}
	if err != nil {
		return err
	}
	for off := pi.LogStartOffset; off < pi.HighWatermark; {
		res, err := l.s.b.Fetch(ctx, txn.Topic, 0, off, 4<<20, 0)
		if err != nil {
			var at int64
			if o, ok := broker.CorruptOffset(err); ok && o >= off {
				at = o
				l.s.log.Warn("skipping damaged __transaction_state record", "offset", at, "err", err)
				off = at + 1
				continue
			}
			return err
		}
		if len(res.Records) == 0 {
			break
		}
		for _, r := range res.Records {
			if err := fn(r.Key, r.Value); err != nil {
				return err
			}
		}
		off = res.Records[len(res.Records)-1].Offset + 1
	}
	return nil
}

// Compact appends the live state and drops every record before it.
func (l txnLog) Compact(ctx context.Context, snapshot []txn.Record) error {
	base, err := l.append(ctx, snapshot)
	if err != nil {
		return err
	}
	_, err = l.s.b.DeleteRecords(txn.Topic, 0, base)
	return err
}

// txnMarkers writes transaction markers for the coordinator.
type txnMarkers struct{ s *Server }

// WriteMarkers appends the job's control batch to each of its partitions
// that holds data of the transaction (a partition with none needs no
// marker; one already marked by an earlier attempt holds none either, so a
// retry writes nothing twice), then on commit applies its offsets.
func (w txnMarkers) WriteMarkers(ctx context.Context, job txn.MarkerJob) error {
	s := w.s
	// In a cell the partitions other nodes lead get their markers there
	// (txn_cell.go); on a single node every partition is here.
	here, err := s.writeMarkersRemote(ctx, job)
	if err != nil {
		return err
	}
	local := job
	local.Partitions = here
	if err := s.writeMarkersHere(ctx, local); err != nil {
		return err
	}
	if job.Commit && len(job.Offsets) > 0 {
		return s.applyTxnOffsets(ctx, job.Offsets)
	}
	return nil
}

// writeMarker ends the job's producer's transaction on one partition. The
// producer's state lock orders it with that producer's appends: a batch
// verified against the coordinator before the transaction ended is written
// first (and gets this marker); one after is refused by the verify.
func (s *Server) writeMarker(ctx context.Context, info broker.TopicInfo, partition int32, job txn.MarkerJob) error {
	_, unlock, err := s.lockProducer(ctx, info, partition, job.ProducerID, info.Config.TimestampType == "LogAppendTime")
	if err != nil {
		return err
	}
	defer unlock()
	pt := s.partTxns(ctx, info, partition)
	_, open := pt.open[job.ProducerID]
	pt.mu.Unlock()
	if !open {
		return nil
	}
	batch := txn.ControlBatch(0, job.ProducerID, job.ProducerEpoch, job.Commit, job.CoordinatorEpoch, time.Now().UnixMilli())
	// The index moves before the marker is visible, so a fetch woken by it
	// already reads past the transaction; if the marker does not become
	// durable the transaction is opened again and the job retried.
	var was openTxn
	var prevMarker int16
	var hadMarker bool
	nAborted := -1
	_, err = s.b.AppendBatch(ctx, info.Name, partition, batch, broker.AcksAll, func(base int64) {
		pt.mu.Lock()
		was = pt.open[job.ProducerID]
		prevMarker, hadMarker = pt.marker[job.ProducerID]
		nAborted = len(pt.aborted)
		pt.endTxn(job.ProducerID, job.ProducerEpoch, job.Commit, base)
		pt.mu.Unlock()
	})
	if err != nil && nAborted >= 0 {
		pt.mu.Lock()
		pt.open[job.ProducerID] = was
		if hadMarker {
			pt.marker[job.ProducerID] = prevMarker
		} else {
			delete(pt.marker, job.ProducerID)
		}
		if len(pt.aborted) > nAborted {
			pt.aborted = pt.aborted[:nAborted]
		}
		pt.mu.Unlock()
	}
	return err
}

// txnAttr is the transactional bit of a record batch's attributes.
const txnAttr = txn.AttrTransactional

// verifyTxnBatch checks a transactional batch against the coordinator (KIP-890
// part 1: the partition must be in the producer's ongoing transaction) and
// against the partition's last marker epoch, and maps the answer to what a
// producer of this Produce version understands. Called with the producer's
// state lock held.
func (s *Server) verifyTxnBatch(ctx context.Context, txnID *string, info broker.TopicInfo, partition int32, pid int64, epoch int16, version int16) error {
	if txnID == nil || *txnID == "" {
		return codeErrorf(errInvalidRequest, "transactional record batch without a transactional id")
	}
	// In a cell the transactional id's coordinator may be another node.
	code, asked := s.verifyRemote(ctx, *txnID, pid, epoch, info.Name, partition)
	if !asked {
		c, ok := s.txnsFor()
		if !ok {
			return codeErrorf(kerr.NotEnoughReplicas.Code, "transaction coordinator not available")
		}
		code = c.Verify(*txnID, pid, epoch, info.Name, partition)
	}
	switch code {
	case 0:
	case kerr.ConcurrentTransactions.Code, kerr.CoordinatorNotAvailable.Code:
		// Retriable for the producer, as Kafka maps them.
		return codeErrorf(kerr.NotEnoughReplicas.Code, "transaction of %q is completing; retry", *txnID)
	case kerr.ProducerFenced.Code:
		return codeErrorf(errInvalidProducerEpoch, "producer epoch %d of %q is fenced", epoch, *txnID)
	case kerr.TransactionAbortable.Code:
		if version < 11 {
			return codeErrorf(kerr.InvalidTxnState.Code, "partition %s-%d is not in the ongoing transaction of %q", info.Name, partition, *txnID)
		}
		return codeErrorf(code, "partition %s-%d is not in the ongoing transaction of %q", info.Name, partition, *txnID)
	default:
		return codeErrorf(code, "transactional produce of %q refused by the coordinator", *txnID)
	}
	pt := s.partTxns(ctx, info, partition)
	me, had := pt.marker[pid]
	pt.mu.Unlock()
	if had && epoch < me {
		return codeErrorf(errInvalidProducerEpoch, "producer epoch %d is older than the epoch %d of its last transaction marker on %s-%d", epoch, me, info.Name, partition)
	}
	return nil
}

// openTxnAt records, before the batch becomes visible, that pid's
// transaction has data in the partition from base on.
func (s *Server) openTxnAt(ctx context.Context, info broker.TopicInfo, partition int32, pid int64, epoch int16) func(base int64) {
	return func(base int64) {
		pt := s.partTxns(ctx, info, partition)
		pt.hasTxn = true
		if _, ok := pt.open[pid]; !ok {
			pt.open[pid] = openTxn{first: base, epoch: epoch}
		}
		pt.mu.Unlock()
	}
}
