package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeTransactions describes transactional ids: state, producer id
// and epoch, timeout, start time and partitions.
func (s *Server) handleDescribeTransactions(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DescribeTransactionsRequest)
	tc, ok := s.txnsFor()
	if !ok {
		resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
		for _, id := range req.TransactionalIDs {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode = id, errCoordinatorNotAvailable
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
		return resp, nil
	}
	var no []string
	req.TransactionalIDs, no = s.splitTxns(ctx, c, req.TransactionalIDs)
	resp, err := tc.DescribeTransactions(req)
	if err == nil && resp != nil {
		for _, id := range no {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode = id, errTransactionalIDAuth
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
	}
	return resp, err
}
