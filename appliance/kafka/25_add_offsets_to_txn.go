package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleAddOffsetsToTxn adds a group's __consumer_offsets partition to a
// producer's ongoing transaction, so that TxnOffsetCommit may follow.
func (s *Server) handleAddOffsetsToTxn(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.AddOffsetsToTxnRequest)
	if !s.allowTxn(ctx, c, req.TransactionalID, auth.OpWrite) {
		return denied(req, errTransactionalIDAuth), nil
	}
	if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	tc, code := s.txnFor(req.TransactionalID) // NOT_COORDINATOR in a cell
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = code
		return resp, nil
	}
	return tc.AddOffsets(req, c.remote)
}
