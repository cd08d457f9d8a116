package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleHeartbeat answers Heartbeat.
func (s *Server) handleHeartbeat(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.HeartbeatRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		return resp, nil
	}
	return gc.Heartbeat(req)
}
