package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/group"
)

// handleDeleteGroups answers DeleteGroups: only empty groups are deleted
// (NON_EMPTY_GROUP otherwise), with their committed offsets, each by the
// coordinator holding it (groups.go).
func (s *Server) handleDeleteGroups(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	failed := func(g string, code int16) {
		resp.Groups = append(resp.Groups, kmsg.DeleteGroupsResponseGroup{Group: g, ErrorCode: code})
	}
	s.eachAuthorizedCoordinator(ctx, c, req.Groups, auth.OpDelete, func(gc *group.Coordinator, share []string) error {
		sub := *req
		sub.Groups = share
		r, err := gc.DeleteGroups(&sub)
		if err == nil {
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return err
	}, failed)
	return resp, nil
}
