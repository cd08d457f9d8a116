package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleInitProducerID gives an idempotent producer a fresh id at epoch 0,
// from a block made durable first (producers.go), so the id stays valid
// across a restart. As in Kafka, a non-transactional producer always gets a
// new id, even when it sends its old one. A transactional id goes to the
// transaction coordinator (txn.go), which bumps the id's epoch (fencing an
// older producer of that id and aborting its open transaction) or, for a new
// id, issues a producer id from the same blocks.
func (s *Server) handleInitProducerID(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil && !s.allowTxn(ctx, c, *req.TransactionalID, auth.OpWrite) {
		return denied(req, errTransactionalIDAuth), nil
	}
	if req.TransactionalID == nil && !s.allowIdempotent(ctx, c) {
		return denied(req, errClusterAuthorizationFailed), nil
	}
	if req.TransactionalID != nil {
		tc, code := s.txnFor(*req.TransactionalID) // NOT_COORDINATOR in a cell
		if code != errNone {
			resp.ErrorCode = code
			resp.ProducerID, resp.ProducerEpoch = -1, -1
			return resp, nil
		}
		return tc.InitProducerID(req, c.remote)
	}
	id, err := s.producers.issue(ctx, s)
	if err != nil {
		// The id block could not be made durable: the client retries.
		s.log.Warn("producer id not issued", "err", err)
		resp.ErrorCode = errCoordinatorNotAvailable
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp, nil
}
