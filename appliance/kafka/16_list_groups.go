package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleListGroups answers ListGroups (state filter v4, type filter v5): the
// groups of every coordinator of this node (in a cell, the groups of the
// __consumer_offsets partitions it leads, as each Kafka broker lists its own).
func (s *Server) handleListGroups(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	gcs := s.openGroups(true)
	if len(gcs) == 0 && s.cfg.Cell == nil {
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	for _, gc := range gcs {
		r, err := gc.ListGroups(req)
		if err != nil {
			continue // closed meanwhile: its groups are another node's now
		}
		resp.Groups = append(resp.Groups, r.Groups...)
	}
	s.authListGroups(ctx, c, resp)
	return resp, nil
}
