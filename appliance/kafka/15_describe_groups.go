package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/group"
)

// handleDescribeGroups answers DescribeGroups, each group from the
// coordinator holding it (groups.go).
func (s *Server) handleDescribeGroups(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	failed := func(g string, code int16) {
		d := kmsg.NewDescribeGroupsResponseGroup()
		d.Group, d.ErrorCode = g, code
		resp.Groups = append(resp.Groups, d)
	}
	s.eachAuthorizedCoordinator(ctx, c, req.Groups, auth.OpDescribe, func(gc *group.Coordinator, share []string) error {
		sub := *req
		sub.Groups = share
		r, err := gc.DescribeGroups(&sub)
		if err == nil {
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return err
	}, failed)
	return resp, nil
}
