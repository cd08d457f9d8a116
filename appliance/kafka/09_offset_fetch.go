package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleOffsetFetch answers OffsetFetch (batched groups from v8). An unknown
// group or partition answers offset -1 with no error, as Kafka.
func (s *Server) handleOffsetFetch(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.OffsetFetchRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		for _, g := range req.Groups {
			resp.Groups = append(resp.Groups, kmsg.OffsetFetchResponseGroup{Group: g.Group, ErrorCode: errCoordinatorNotAvailable})
		}
		return resp, nil
	}
	return gc.FetchOffsets(req)
}
