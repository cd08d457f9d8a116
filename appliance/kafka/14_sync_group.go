package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleSyncGroup answers SyncGroup; followers wait for the leader's
// assignment.
func (s *Server) handleSyncGroup(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.SyncGroupRequest)
	if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = code
		return resp, nil
	}
	return gc.Sync(ctx, req)
}
