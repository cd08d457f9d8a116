package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleInitProducerID gives an idempotent producer a fresh id at epoch 0,
// from a block made durable first (producers.go), so the id stays valid
// across a restart.
// As in Kafka, a non-transactional producer always gets a new id, even when it
// sends its old one. Transactional ids are refused: katka has no transaction
// coordinator.
func (s *Server) handleInitProducerID(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil {
		resp.ErrorCode = errTransactionalIDAuth
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil
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
