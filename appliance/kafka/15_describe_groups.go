package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleDescribeGroups answers DescribeGroups.
func (s *Server) handleDescribeGroups(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DescribeGroupsRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
		for _, g := range req.Groups {
			d := kmsg.NewDescribeGroupsResponseGroup()
			d.Group, d.ErrorCode = g, errCoordinatorNotAvailable
			resp.Groups = append(resp.Groups, d)
		}
		return resp, nil
	}
	var no []string
	req.Groups, no = s.splitGroups(ctx, c, req.Groups, auth.OpDescribe)
	var others []string // coordinated by another node of the cell (cell_route.go)
	req.Groups, others = s.splitCoordinated(req.Groups)
	resp, err := gc.DescribeGroups(req)
	if r := resp; err == nil && r != nil {
		for _, g := range others {
			d := kmsg.NewDescribeGroupsResponseGroup()
			d.Group, d.ErrorCode = g, errNotCoordinator
			r.Groups = append(r.Groups, d)
		}
		for _, g := range no {
			d := kmsg.NewDescribeGroupsResponseGroup()
			d.Group, d.ErrorCode = g, errGroupAuthorizationFailed
			r.Groups = append(r.Groups, d)
		}
	}
	return resp, err
}
