package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
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
	var no []string
	req.Groups, no = s.splitGroups(ctx, c, req.Groups, auth.OpDelete)
	var others []string // coordinated by another node of the cell (cell_route.go)
	req.Groups, others = s.splitCoordinated(req.Groups)
	resp, err := gc.DeleteGroups(req)
	if r := resp; err == nil && r != nil {
		for _, g := range others {
			r.Groups = append(r.Groups, kmsg.DeleteGroupsResponseGroup{Group: g, ErrorCode: errNotCoordinator})
		}
		for _, g := range no {
			r.Groups = append(r.Groups, kmsg.DeleteGroupsResponseGroup{Group: g, ErrorCode: errGroupAuthorizationFailed})
		}
	}
	return resp, err
}
