package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDeleteGroups answers DeleteGroups: only empty groups are deleted
// (NON_EMPTY_GROUP otherwise), with their committed offsets.
func (s *Server) handleDeleteGroups(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DeleteGroupsRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
		for _, g := range req.Groups {
			resp.Groups = append(resp.Groups, kmsg.DeleteGroupsResponseGroup{Group: g, ErrorCode: errCoordinatorNotAvailable})
		}
		return resp, nil
	}
	return gc.DeleteGroups(req)
}
