package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"

	"github.com/katka-io/katka/appliance/broker"
)

// handleProduce appends one record batch per partition. acks 0 gets no
// response at all, as in Kafka. The whole request is checked before anything
// is written (acks, transactional id, topics, internal topics, partitions,
// duplicate partitions); the partitions that pass are then written in
// parallel, at most maxProduceWorkers at once, so that their fsyncs overlap.
func (s *Server) handleProduce(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	ctx = withClient(ctx, c.remote)
	var acks broker.Acks
	ackErr := errNone
	switch req.Acks {
	case 0:
		acks = broker.AcksNone
	case 1:
		acks = broker.AcksLeader
	case -1:
		acks = broker.AcksAll
	default:
		ackErr = errInvalidRequiredAcks
	}
	if req.TransactionID != nil && ackErr == errNone && !s.allowTxn(ctx, c, *req.TransactionID, auth.OpWrite) {
		ackErr = errTransactionalIDAuth // Kafka fails every partition
	}
	jobs := s.checkProduce(ctx, c, req, resp, ackErr)
	if len(jobs) == 1 {
		jobs[0].run(ctx, s, acks, req)
	} else if len(jobs) > 1 {
		var wg sync.WaitGroup
		next := make(chan *produceJob)
		for range min(len(jobs), maxProduceWorkers) {
			wg.Go(func() {
				for j := range next {
					j.run(ctx, s, acks, req)
				}
			})
		}
		for _, j := range jobs {
			next <- j
		}
		close(next)
		wg.Wait()
	}
	if req.Acks == 0 {
		// No response; as Kafka does, a failure closes the connection so the
		// client notices and refreshes its metadata.
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != errNone {
					return nil, errAcks0Failed{topic: t.Topic, partition: p.Partition, code: p.ErrorCode}
				}
			}
		}
		return nil, nil
	}
	return resp, nil
}

// produceJob is one partition entry of a produce request that passed the
// checks, and its place in the response.
type produceJob struct {
	info broker.TopicInfo
	rp   *kmsg.ProduceRequestTopicPartition
	sp   *kmsg.ProduceResponseTopicPartition
}

// run writes the job's batch and, for v5+, answers with the partition's log
// start offset after the append, as Kafka does. Only the partition written
// is asked: reading every partition's start offset (each under its log's
// lock, which a write holds) made every produce wait for the writes to all
// the topic's partitions, seconds of queueing with 1,024 producers.
func (j *produceJob) run(ctx context.Context, s *Server, acks broker.Acks, req *kmsg.ProduceRequest) {
	s.producePartition(ctx, j.info, j.rp, acks, j.sp, req.Version, req.TransactionID)
	if j.sp.ErrorCode == errNone && req.Version >= 5 {
		if pi, err := s.b.PartitionInfo(j.info.Name, j.rp.Partition); err == nil {
			j.sp.LogStartOffset = pi.LogStartOffset
		}
	}
}

// checkProduce fills resp with an entry per partition entry of req, answers
// those that fail a check, and returns the rest to be written. It starts
// nothing: a frame of a million entries costs one pass here.
//
// Duplicates: Kafka's KafkaApis turns the request's partitions into a map, so
// of two entries for one topic-partition the last silently replaces the first
// (and the client gets one answer for two batches). katka refuses every entry
// of a duplicated topic-partition with INVALID_REQUEST and writes none of
// them, as Kafka answers duplicates in CreateTopics and DeleteTopics: no batch
// is dropped without an error.
func (s *Server) checkProduce(ctx context.Context, c *conn, req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, ackErr int16) []*produceJob {
	byID := s.topicIDs(req.Version >= 13)
	type tp struct {
		topic     string
		partition int32
	}
	seen := map[tp]*kmsg.ProduceResponseTopicPartition{}
	dup := map[tp]bool{}
	var endpoints map[int32]bool // leaders named in CurrentLeader
	defer func() {
		if endpoints != nil {
			s.produceEndpoints(resp, endpoints)
		}
	}()
	var jobs []*produceJob
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		info, terr := s.lookupTopic(rt.Topic, rt.TopicID, req.Version >= 13, byID)
		terr = s.authTopic(ctx, c, cmp.Or(info.Name, rt.Topic), auth.OpWrite, terr)
		if terr == nil && broker.InternalTopic(info.Name) {
			// Kafka refuses produce into __consumer_offsets and the like.
			s.limitRejected(broker.LimitInternalTopic, c.remote, "produce to internal topic "+info.Name)
			terr = codeErrorf(errInvalidTopic, "the request included a produce to internal topic %s", info.Name)
		}
		var leaders []CellPartition // a cell: partitions other nodes lead (cell_route.go)
		if ackErr == errNone && (terr == nil || errorCode(terr) == errUnknownTopicOrPartition) {
			// Also when this node has no logs of a cell topic yet.
			leaders = s.cellLeaders(cmp.Or(info.Name, rt.Topic))
		}
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			fail := func(err error) {
				sp.ErrorCode = errorCode(err)
				if req.Version >= 8 {
					sp.ErrorMessage = errorMessage(err)
				}
			}
			if cp, err := s.notLeader(cmp.Or(info.Name, rt.Topic), leaders, rp.Partition); err != nil {
				fail(err)
				if req.Version >= 10 {
					sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = cp.Leader, cp.LeaderEpoch
					if endpoints == nil {
						endpoints = map[int32]bool{}
					}
					endpoints[cp.Leader] = true
				}
				continue
			}
			switch {
			case ackErr != errNone:
				sp.ErrorCode = ackErr
				continue
			case terr != nil:
				fail(terr)
				continue
			case rp.Partition < 0 || rp.Partition >= info.Partitions:
				fail(codeErrorf(errUnknownTopicOrPartition, "partition %d of topic %s does not exist", rp.Partition, info.Name))
				continue
			}
			key := tp{info.Name, rp.Partition}
			if first, ok := seen[key]; ok {
				dup[key] = true
				msg := codeErrorf(errInvalidRequest, "the request holds more than one entry for partition %d of topic %s", rp.Partition, info.Name)
				fail(msg)
				if first.ErrorCode == errNone {
					first.ErrorCode = errInvalidRequest
					if req.Version >= 8 {
						first.ErrorMessage = errorMessage(msg)
					}
				}
				continue
			}
			seen[key] = sp
			jobs = append(jobs, &produceJob{info: info, rp: rp, sp: sp})
		}
	}
	if len(dup) == 0 {
		return jobs
	}
	s.limitRejected(broker.LimitDuplicatePartition, c.remote, fmt.Sprintf("produce request with %d duplicated topic-partitions", len(dup)))
	kept := jobs[:0]
	for _, j := range jobs {
		if !dup[tp{j.info.Name, j.rp.Partition}] {
			kept = append(kept, j)
		}
	}
	return kept
}

// producePartition validates and appends one partition's batch and fills sp.
// A transactional batch (txnID names its producer's transactional id) is
// verified against the transaction coordinator under the producer's state
// lock and stored as sent (txn.go).
func (s *Server) producePartition(ctx context.Context, info broker.TopicInfo, rp *kmsg.ProduceRequestTopicPartition, acks broker.Acks, sp *kmsg.ProduceResponseTopicPartition, version int16, txnID *string) {
	fail := func(err error) {
		sp.ErrorCode = errorCode(err)
		if version >= 8 {
			sp.ErrorMessage = errorMessage(err)
		}
		if sp.ErrorCode == errKafkaStorageError {
			s.log.Error("kafka produce failed", "topic", info.Name, "partition", rp.Partition, "err", err)
		}
	}
	if rp.Partition < 0 || rp.Partition >= info.Partitions {
		fail(codeErrorf(errUnknownTopicOrPartition, "partition %d of topic %s does not exist", rp.Partition, info.Name))
		return
	}
	b, err := parseBatch(rp.Records)
	if err != nil {
		fail(err)
		return
	}
	if int64(b.size) > info.Config.MaxMessageBytes {
		fail(codeErrorf(errMessageTooLarge, "record batch of %d bytes exceeds max.message.bytes %d of topic %s", b.size, info.Config.MaxMessageBytes, info.Name))
		return
	}
	transactional := b.Transactional()
	if transactional && b.ProducerID < 0 {
		fail(codeErrorf(errInvalidRecord, "transactional record batch without a producer id"))
		return
	}
	// Decoded records are bounded by max_request_bytes (what one request
	// could carry uncompressed), checked while decompressing; Kafka checks
	// max.message.bytes against the batch as sent only, so a batch that
	// compresses well may decode far past it. They are decoded only to
	// validate them: the batch is stored as sent.
	if err := b.validateRecords(s.cfg.MaxRequestBytes); err != nil {
		var tl *batchTooLargeError
		if errors.As(err, &tl) {
			s.limitRejected(broker.LimitRecordBatch, clientOf(ctx), fmt.Sprintf("%s-%d: %v", info.Name, rp.Partition, tl))
		}
		fail(err)
		return
	}
	logAppend := info.Config.TimestampType == "LogAppendTime"
	// Every batch is stored as the producer sent it (compression and producer
	// fields kept; recompressed only if the topic's compression.type names a
	// codec, and stamped on a LogAppendTime topic, both by the broker).
	if b.ProducerID < 0 {
		base, at, err := s.b.AppendBatchTime(ctx, info.Name, rp.Partition, rp.Records, acks, nil)
		if err != nil {
			fail(err)
			return
		}
		sp.BaseOffset = base
		if logAppend {
			sp.LogAppendTime = at
		}
		return
	}

	// Idempotent producer: check the sequence and append under the state lock.
	st, unlock, err := s.lockProducer(ctx, info, rp.Partition, b.ProducerID, logAppend)
	if err != nil {
		fail(err)
		return
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	verdict, dup, err := st.check(b.ProducerEpoch, b.BaseSequence, b.LastSequence())
	if err != nil {
		fail(err)
		return
	}
	if verdict == seqDuplicate {
		// A retry: answered with the first copy's offset once that copy is
		// as durable as acks asks (replicated, in a cell).
		locked = false
		unlock()
		if err := s.b.Acknowledge(ctx, info.Name, rp.Partition, dup.base+int64(dup.last-dup.first)+1, acks); err != nil {
			fail(err)
			return
		}
		sp.BaseOffset = dup.base
		if logAppend {
			sp.LogAppendTime = dup.appendTime
		}
		return
	}
	var beforeVisible func(base int64)
	if transactional {
		if err := s.verifyTxnBatch(ctx, txnID, info, rp.Partition, b.ProducerID, b.ProducerEpoch, version); err != nil {
			fail(err)
			return
		}
		// The transactional bit and producer fields are what read_committed
		// consumers skip aborted data by; the open transaction is recorded
		// before any consumer may read the batch.
		beforeVisible = s.openTxnAt(ctx, info, rp.Partition, b.ProducerID, b.ProducerEpoch)
	}
	base, at, end, err := s.b.AppendBatchDeferred(ctx, info.Name, rp.Partition, rp.Records, acks, beforeVisible)
	if err != nil {
		fail(err)
		return
	}
	// Recorded as soon as it is in the log: a retry of it (the wait below
	// failed, or the answer was lost) is then a duplicate, never a second
	// copy; the wait runs outside the producer's lock.
	sb := seqBatch{first: b.BaseSequence, last: b.LastSequence(), base: base, appendTime: -1}
	if logAppend {
		sb.appendTime = at
	}
	st.record(b.ProducerEpoch, sb, time.Now())
	locked = false
	unlock()
	if err := s.b.Acknowledge(ctx, info.Name, rp.Partition, end, acks); err != nil {
		fail(err)
		return
	}
	sp.BaseOffset = base
	if logAppend {
		sp.LogAppendTime = at
	}
}

// errAcks0Failed closes the connection after a failed acks=0 produce.
type errAcks0Failed struct {
	topic     string
	partition int32
	code      int16
}

func (e errAcks0Failed) Error() string {
	return fmt.Sprintf("acks=0 produce to %s-%d failed with error code %d", e.topic, e.partition, e.code)
}
