package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleInitProducerID gives an idempotent producer a fresh id at epoch 0.
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
	resp.ProducerID = s.producers.newID()
	resp.ProducerEpoch = 0
	return resp, nil
}
