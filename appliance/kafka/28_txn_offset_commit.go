package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleTxnOffsetCommit holds a transaction's consumer offsets pending: the
// transaction coordinator checks the producer and its transaction, the group
// coordinator the member (v3+: member id, generation, instance id); the
// offsets become the group's committed offsets when the transaction commits
// and are dropped when it aborts. Until then OffsetFetch with require_stable
// answers UNSTABLE_OFFSET_COMMIT for them.
func (s *Server) handleTxnOffsetCommit(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req, addRefused := s.authTxnOffsetCommit(ctx, c, kr.(*kmsg.TxnOffsetCommitRequest))
	tc, tok := s.txnsFor()
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if !tok {
		code = errCoordinatorNotAvailable
	}
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, t := range req.Topics {
			rt := kmsg.TxnOffsetCommitResponseTopic{Topic: t.Topic, TopicID: t.TopicID}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.TxnOffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code})
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil
	}
	return addRefused(tc.TxnOffsetCommit(req, gc.TxnMember, s.known, c.remote))
}
