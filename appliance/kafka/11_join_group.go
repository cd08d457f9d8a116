package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleJoinGroup answers JoinGroup. The answer waits until the rebalance
// completes (every member rejoined or the rebalance timeout passed).
func (s *Server) handleJoinGroup(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.JoinGroupRequest)
	if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, req.MemberID
		return resp, nil
	}
	return gc.Join(ctx, req, clientID(c), clientHost(c))
}
