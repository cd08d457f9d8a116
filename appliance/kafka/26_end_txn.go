package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleEndTxn commits or aborts a producer's transaction: answered once the
// decision (PrepareCommit/PrepareAbort) is durable in __transaction_state;
// the markers are written into the partitions in the background (txn.go),
// and until they are the transaction holds back the last stable offset of
// its partitions, and a next transaction of the same id gets
// CONCURRENT_TRANSACTIONS, which clients retry.
func (s *Server) handleEndTxn(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.EndTxnRequest)
	if !s.allowTxn(ctx, c, req.TransactionalID, auth.OpWrite) {
		return denied(req, errTransactionalIDAuth), nil
	}
	tc, code := s.txnFor(req.TransactionalID) // NOT_COORDINATOR in a cell
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil
	}
	return tc.EndTxn(req, c.remote)
}
