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
	tc, ok := s.txnsFor()
	code := errCoordinatorNotAvailable
	if ok && req.Version < 4 {
		code = s.txnCode(req.TransactionalID) // NOT_COORDINATOR in a cell (cell_route.go)
		ok = code == errNone
	}
	if !ok {
		resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		if req.Version >= 4 {
			resp.ErrorCode = code
			return resp, nil
		}
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
