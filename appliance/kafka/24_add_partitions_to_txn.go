package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleAddPartitionsToTxn adds partitions to a producer's ongoing
// transaction (v0-3, from producers) or, v4-5, checks or adds them for a
// batch of transactions (KIP-890's broker-to-coordinator form; katka's own
// produce path verifies in process). Unknown partitions get
// UNKNOWN_TOPIC_OR_PARTITION and the rest of the request
// OPERATION_NOT_ATTEMPTED, as in Kafka.
func (s *Server) handleAddPartitionsToTxn(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.AddPartitionsToTxnRequest)
	if resp := s.authAddPartitions(ctx, c, req); resp != nil {
		return resp, nil
	}
	if req.Version >= 4 {
		return s.addPartitionsBatched(req, c.remote)
	}
	tc, code := s.txnFor(req.TransactionalID) // NOT_COORDINATOR in a cell
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		for _, t := range req.Topics {
			rt := kmsg.AddPartitionsToTxnResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.AddPartitionsToTxnResponseTopicPartition{Partition: p, ErrorCode: code})
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil
	}
	return tc.AddPartitions(req, s.known, c.remote)
}

// addPartitionsBatched serves the v4+ form: each transaction of the batch by
// the coordinator of its id (another node's get NOT_COORDINATOR).
func (s *Server) addPartitionsBatched(req *kmsg.AddPartitionsToTxnRequest, client string) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	for _, t := range req.Transactions {
		tc, code := s.txnFor(t.TransactionalID)
		if code == errNone {
			sub := *req
			sub.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{t}
			r, err := tc.AddPartitions(&sub, s.known, client)
			if err != nil {
				return nil, err
			}
			if r.ErrorCode == errNone {
				resp.Transactions = append(resp.Transactions, r.Transactions...)
				continue
			}
			code = r.ErrorCode
		}
		rt := kmsg.AddPartitionsToTxnResponseTransaction{TransactionalID: t.TransactionalID}
		for _, tt := range t.Topics {
			rtt := kmsg.AddPartitionsToTxnResponseTransactionTopic{Topic: tt.Topic}
			for _, p := range tt.Partitions {
				rtt.Partitions = append(rtt.Partitions, kmsg.AddPartitionsToTxnResponseTransactionTopicPartition{Partition: p, ErrorCode: code})
			}
			rt.Topics = append(rt.Topics, rtt)
		}
		resp.Transactions = append(resp.Transactions, rt)
	}
	return resp, nil
}
