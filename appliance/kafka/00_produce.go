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

// handleProduce appends one record batch per partition and answers once
// they are as durable as acks asks. acks 0 gets no response at all, as in
// Kafka. The whole request is checked before anything is written (acks,
// transactional id, topics, internal topics, partitions, duplicate
// partitions); the partitions that pass are then written in parallel, at
// most maxProduceWorkers at once, and waited for likewise, so that their
// fsyncs overlap. On a client connection a produce with acks 1 or all is
// not handled here but pipelined (pipelineProduce): appended at once, and
// answered when durable while the connection's next requests are read.
func (s *Server) handleProduce(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	call := s.startProduce(ctx, c, kreq.(*kmsg.ProduceRequest))
	call.finish(s)
	if call.req.Acks == 0 {
		// No response; as Kafka does, a failure closes the connection so the
		// client notices and refreshes its metadata.
		for _, t := range call.resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != errNone {
					return nil, errAcks0Failed{topic: t.Topic, partition: p.Partition, code: p.ErrorCode}
				}
			}
		}
		return nil, nil
	}
	return call.resp, nil
}

// produceCall is one produce request whose batches are appended (or
// refused), waiting for them to be durable before it is answered.
type produceCall struct {
	ctx  context.Context
	req  *kmsg.ProduceRequest
	resp *kmsg.ProduceResponse
	acks broker.Acks
	jobs []*produceJob
}

// startProduce checks req and appends its batches: when it returns, the
// next produce on the connection may be appended (an idempotent producer's
// batches go in the order sent); finish waits for durability.
func (s *Server) startProduce(ctx context.Context, c *conn, req *kmsg.ProduceRequest) *produceCall {
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
	call := &produceCall{ctx: ctx, req: req, resp: resp, acks: acks, jobs: s.checkProduce(ctx, c, req, resp, ackErr)}
	call.each(func(j *produceJob) { j.append(ctx, s, acks, req) })
	return call
}

// finish waits until every appended batch is as durable as acks asks and
// fills in the response.
func (call *produceCall) finish(s *Server) {
	call.each(func(j *produceJob) { j.finish(call.ctx, s, call.acks, call.req) })
}

// each runs fn for every job, in parallel (at most maxProduceWorkers) when
// there are several.
func (call *produceCall) each(fn func(j *produceJob)) {
	jobs := call.jobs
	if len(jobs) == 1 {
		fn(jobs[0])
		return
	}
	if len(jobs) == 0 {
		return
	}
	var wg sync.WaitGroup
	next := make(chan *produceJob)
	for range min(len(jobs), maxProduceWorkers) {
		wg.Go(func() {
			for j := range next {
				fn(j)
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
}

// produceJob is one partition entry of a produce request that passed the
// checks, its place in the response, and once appended what it waits for.
type produceJob struct {
	info broker.TopicInfo
	rp   *kmsg.ProduceRequestTopicPartition
	sp   *kmsg.ProduceResponseTopicPartition
	wait produceWait
}

// produceWait is an appended batch (or the first copy of a duplicate) to be
// acknowledged: answered with base (and at, on a LogAppendTime topic) once
// the offsets below end are durable. end < 0: nothing to wait for (the job
// failed and its error is in the response).
type produceWait struct {
	end, base, at int64
	logAppend     bool
}

// append writes the job's batch, leaving the wait for durability to finish.
func (j *produceJob) append(ctx context.Context, s *Server, acks broker.Acks, req *kmsg.ProduceRequest) {
	j.wait = s.appendPartition(ctx, j.info, j.rp, acks, j.sp, req.Version, req.TransactionID)
}

// finish waits for the job's batch and, for v5+, answers with the
// partition's log start offset after the append, as Kafka does. Only the
// partition written is asked: reading every partition's start offset (each
// under its log's lock, which a write holds) made every produce wait for the
// writes to all the topic's partitions, seconds of queueing with 1,024
// producers.
func (j *produceJob) finish(ctx context.Context, s *Server, acks broker.Acks, req *kmsg.ProduceRequest) {
	w := j.wait
	if w.end < 0 {
		return
	}
	if err := s.b.Acknowledge(ctx, j.info.Name, j.rp.Partition, w.end, acks); err != nil {
		s.failPartition(j.sp, req.Version, j.info.Name, j.rp.Partition, err)
		return
	}
	j.sp.BaseOffset = w.base
	if w.logAppend {
		j.sp.LogAppendTime = w.at
	}
	if req.Version >= 5 {
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

// failPartition answers a partition of a produce with err.
func (s *Server) failPartition(sp *kmsg.ProduceResponseTopicPartition, version int16, topic string, partition int32, err error) {
	sp.ErrorCode = errorCode(err)
	if version >= 8 {
		sp.ErrorMessage = errorMessage(err)
	}
	if sp.ErrorCode == errKafkaStorageError {
		s.log.Error("kafka produce failed", "topic", topic, "partition", partition, "err", err)
	}
}

// appendPartition validates and appends one partition's batch and returns
// what to wait for before answering; a failure is answered in sp (and the
// wait's end is -1). A transactional batch (txnID names its producer's
// transactional id) is verified against the transaction coordinator under the
// producer's state lock and stored as sent (txn.go).
func (s *Server) appendPartition(ctx context.Context, info broker.TopicInfo, rp *kmsg.ProduceRequestTopicPartition, acks broker.Acks, sp *kmsg.ProduceResponseTopicPartition, version int16, txnID *string) produceWait {
	none := produceWait{end: -1}
	fail := func(err error) produceWait {
		s.failPartition(sp, version, info.Name, rp.Partition, err)
		return none
	}
	if rp.Partition < 0 || rp.Partition >= info.Partitions {
		return fail(codeErrorf(errUnknownTopicOrPartition, "partition %d of topic %s does not exist", rp.Partition, info.Name))
	}
	b, err := parseBatch(rp.Records)
	if err != nil {
		return fail(err)
	}
	if int64(b.size) > info.Config.MaxMessageBytes {
		return fail(codeErrorf(errMessageTooLarge, "record batch of %d bytes exceeds max.message.bytes %d of topic %s", b.size, info.Config.MaxMessageBytes, info.Name))
	}
	transactional := b.Transactional()
	if transactional && b.ProducerID < 0 {
		return fail(codeErrorf(errInvalidRecord, "transactional record batch without a producer id"))
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
		return fail(err)
	}
	logAppend := info.Config.TimestampType == "LogAppendTime"
	// Every batch is stored as the producer sent it (compression and producer
	// fields kept; recompressed only if the topic's compression.type names a
	// codec, and stamped on a LogAppendTime topic, both by the broker).
	if b.ProducerID < 0 {
		base, at, end, err := s.b.AppendBatchDeferred(ctx, info.Name, rp.Partition, rp.Records, acks, nil)
		if err != nil {
			return fail(err)
		}
		return produceWait{end: end, base: base, at: at, logAppend: logAppend}
	}

	// Idempotent producer: check the sequence and append under the state lock.
	st, unlock, err := s.lockProducer(ctx, info, rp.Partition, b.ProducerID, logAppend)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	verdict, dup, err := st.check(b.ProducerEpoch, b.BaseSequence, b.LastSequence())
	if err != nil {
		return fail(err)
	}
	if verdict == seqDuplicate {
		// A retry: answered with the first copy's offset once that copy is
		// as durable as acks asks (replicated, in a cell).
		return produceWait{end: dup.base + int64(dup.last-dup.first) + 1, base: dup.base, at: dup.appendTime, logAppend: logAppend}
	}
	var beforeVisible func(base int64)
	if transactional {
		if err := s.verifyTxnBatch(ctx, txnID, info, rp.Partition, b.ProducerID, b.ProducerEpoch, version); err != nil {
			return fail(err)
		}
		// The transactional bit and producer fields are what read_committed
		// consumers skip aborted data by; the open transaction is recorded
		// before any consumer may read the batch.
		beforeVisible = s.openTxnAt(ctx, info, rp.Partition, b.ProducerID, b.ProducerEpoch)
	}
	base, at, end, err := s.b.AppendBatchDeferred(ctx, info.Name, rp.Partition, rp.Records, acks, beforeVisible)
	if err != nil {
		return fail(err)
	}
	// Recorded as soon as it is in the log: a retry of it (the wait failed,
	// or the answer was lost) is then a duplicate, never a second copy; the
	// wait (finish) runs outside the producer's lock.
	sb := seqBatch{first: b.BaseSequence, last: b.LastSequence(), base: base, appendTime: -1}
	if logAppend {
		sb.appendTime = at
	}
	st.record(b.ProducerEpoch, sb, time.Now())
	return produceWait{end: end, base: base, at: at, logAppend: logAppend}
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
