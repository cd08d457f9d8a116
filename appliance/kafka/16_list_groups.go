package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleListGroups answers ListGroups (state filter v4, type filter v5).
func (s *Server) handleListGroups(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ListGroupsRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	resp, err := gc.ListGroups(req)
	s.authListGroups(ctx, c, resp)
	return resp, err
}
