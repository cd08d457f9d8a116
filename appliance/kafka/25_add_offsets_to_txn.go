package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleAddOffsetsToTxn adds a group's __consumer_offsets partition to a
// producer's ongoing transaction, so that TxnOffsetCommit may follow.
func (s *Server) handleAddOffsetsToTxn(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.AddOffsetsToTxnRequest)
	tc, ok := s.txnsFor()
	if !ok {
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	return tc.AddOffsets(req, c.remote)
}
