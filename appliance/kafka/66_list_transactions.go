package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleListTransactions lists the transactional ids of every coordinator of
// this node (in a cell, each node lists its own, as Kafka brokers do),
// filtered by state, producer id, running time (v1) and id pattern (v2).
func (s *Server) handleListTransactions(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	tcs := s.allTxns(true)
	if len(tcs) == 0 && s.cfg.Cell == nil {
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	for _, tc := range tcs {
		r, err := tc.ListTransactions(req)
		if err != nil {
			continue // closed meanwhile: its transactions are another node's now
		}
		if r.ErrorCode != errNone {
			resp.ErrorCode = r.ErrorCode
		}
		resp.UnknownStateFilters = r.UnknownStateFilters
		resp.TransactionStates = append(resp.TransactionStates, r.TransactionStates...)
	}
	s.authListTransactions(ctx, c, resp)
	return resp, nil
}
