package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleOffsetDelete answers OffsetDelete: offsets of topics the group is not
// subscribed to are deleted (GROUP_SUBSCRIBED_TO_TOPIC otherwise).
func (s *Server) handleOffsetDelete(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.OffsetDeleteRequest)
	if !s.allowGroup(ctx, c, req.Group, auth.OpDelete) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = code
		return resp, nil
	}
	addRefused := s.authOffsetDelete(ctx, c, req)
	return addRefused(gc.OffsetDelete(req))
}
