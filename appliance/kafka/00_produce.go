package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// handleProduce appends one record batch per partition. acks 0 gets no
// response at all, as in Kafka; partitions of one request are written in
// parallel so that their fsyncs overlap.
func (s *Server) handleProduce(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
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
	if req.TransactionID != nil && ackErr == errNone {
		ackErr = errTransactionalIDAuth // transactions are not supported
	}
	byID := s.topicIDs(req.Version >= 13)
	var wg sync.WaitGroup
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		info, terr := s.lookupTopic(rt.Topic, rt.TopicID, req.Version >= 13, byID)
		var parts []broker.PartitionInfo
		if terr == nil && req.Version >= 5 && ackErr == errNone {
			parts, _ = s.b.Partitions(info.Name)
		}
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			switch {
			case ackErr != errNone:
				sp.ErrorCode = ackErr
				continue
			case terr != nil:
				sp.ErrorCode = errorCode(terr)
				continue
			}
			if int(rp.Partition) < len(parts) && rp.Partition >= 0 {
				sp.LogStartOffset = parts[rp.Partition].LogStartOffset
			}
			if len(req.Topics) == 1 && len(rt.Partitions) == 1 {
				s.producePartition(ctx, info, rp, acks, sp, req.Version)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.producePartition(ctx, info, rp, acks, sp, req.Version)
			}()
		}
	}
	wg.Wait()
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

// producePartition validates and appends one partition's batch and fills sp.
func (s *Server) producePartition(ctx context.Context, info broker.TopicInfo, rp *kmsg.ProduceRequestTopicPartition, acks broker.Acks, sp *kmsg.ProduceResponseTopicPartition, version int16) {
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
	if b.attrs&attrTransactional != 0 {
		fail(codeErrorf(errTransactionalIDAuth, "transactional record batches are not supported"))
		return
	}
	recs, err := b.decodeRecords(s.cfg.MaxRequestBytes)
	if err != nil {
		fail(err)
		return
	}
	logAppend := info.Config.TimestampType == "LogAppendTime"
	if b.producerID < 0 {
		base, err := s.b.Produce(ctx, info.Name, rp.Partition, recs, acks)
		if err != nil {
			fail(err)
			return
		}
		sp.BaseOffset = base
		if logAppend {
			sp.LogAppendTime = recs[0].Timestamp.UnixMilli() // the broker sets it in place
		}
		return
	}

	// Idempotent producer: check the sequence and append under the state lock.
	st := s.producers.get(producerKey{id: b.producerID, topic: info.ID, partition: rp.Partition})
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.epoch < 0 && !st.scanned && b.producerID <= s.producers.bootID {
		s.rebuildProducer(ctx, info.Name, rp.Partition, b.producerID, logAppend, st)
	}
	verdict, dup, err := st.check(b.producerEpoch, b.baseSequence, b.lastSequence())
	if err != nil {
		fail(err)
		return
	}
	if verdict == seqDuplicate {
		sp.BaseOffset = dup.base
		if logAppend {
			sp.LogAppendTime = dup.appendTime
		}
		return
	}
	if len(recs) > 0 {
		recs[len(recs)-1].Producer = &broker.ProducerBatch{ID: b.producerID, Epoch: b.producerEpoch, FirstSeq: b.baseSequence, LastSeq: b.lastSequence()}
	}
	base, err := s.b.Produce(ctx, info.Name, rp.Partition, recs, acks)
	if err != nil {
		fail(err)
		return
	}
	sb := seqBatch{first: b.baseSequence, last: b.lastSequence(), base: base, appendTime: -1}
	sp.BaseOffset = base
	if logAppend {
		sb.appendTime = recs[0].Timestamp.UnixMilli()
		sp.LogAppendTime = sb.appendTime
	}
	st.record(b.producerEpoch, sb, time.Now())
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
