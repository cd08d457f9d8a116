package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleListTransactions lists transactional ids, filtered by state,
// producer id, running time (v1) and id pattern (v2).
func (s *Server) handleListTransactions(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ListTransactionsRequest)
	tc, ok := s.txnsFor()
	if !ok {
		resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	resp, err := tc.ListTransactions(req)
	s.authListTransactions(ctx, c, resp)
	return resp, err
}
