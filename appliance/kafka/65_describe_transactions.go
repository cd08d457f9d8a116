package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeTransactions describes transactional ids (each by its
// coordinator): state, producer id and epoch, timeout, start time and
// partitions.
func (s *Server) handleDescribeTransactions(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	failed := func(id string, code int16) {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID, st.ErrorCode = id, code
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	ids, no := s.splitTxns(ctx, c, req.TransactionalIDs)
	for _, id := range ids {
		tc, code := s.txnFor(id)
		if code != errNone {
			failed(id, code)
			continue
		}
		sub := *req
		sub.TransactionalIDs = []string{id}
		r, err := tc.DescribeTransactions(&sub)
		if err != nil {
			failed(id, errCoordinatorNotAvailable)
			continue
		}
		resp.TransactionStates = append(resp.TransactionStates, r.TransactionStates...)
	}
	for _, id := range no {
		failed(id, errTransactionalIDAuth)
	}
	return resp, nil
}
