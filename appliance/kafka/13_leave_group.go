package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleLeaveGroup answers LeaveGroup (a batch of members from v3).
func (s *Server) handleLeaveGroup(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.LeaveGroupRequest)
	if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = code
		return resp, nil
	}
	return gc.Leave(req)
}
