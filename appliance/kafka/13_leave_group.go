package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleLeaveGroup answers LeaveGroup (a batch of members from v3).
func (s *Server) handleLeaveGroup(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.LeaveGroupRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	return gc.Leave(req)
}
