package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleTxnOffsetCommit holds a transaction's consumer offsets pending: the
// transaction coordinator checks the producer and its transaction, the group
// coordinator the member (v3+: member id, generation, instance id); the
// offsets become the group's committed offsets when the transaction commits
// and are dropped when it aborts. Until then OffsetFetch with require_stable
// answers UNSTABLE_OFFSET_COMMIT for them.
func (s *Server) handleTxnOffsetCommit(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req, addRefused := s.authTxnOffsetCommit(ctx, c, kr.(*kmsg.TxnOffsetCommitRequest))
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		return addRefused(txnOffsetCommitFailed(req, code), nil)
	}
	// In a cell the transaction's coordinator may be another node: the
	// member is checked here, the offsets are held pending there.
	if n, elsewhere := s.coordinatorElsewhere(1, req.TransactionalID); elsewhere {
		if code := gc.TxnMember(req); code != errNone {
			return addRefused(txnOffsetCommitFailed(req, code), nil)
		}
		return addRefused(s.txnOffsetCommitRemote(ctx, n, req, c.remote), nil)
	}
	tc, tok := s.txnsFor()
	if !tok {
		return addRefused(txnOffsetCommitFailed(req, errCoordinatorNotAvailable), nil)
	}
	return addRefused(tc.TxnOffsetCommit(req, gc.TxnMember, s.known, c.remote))
}
