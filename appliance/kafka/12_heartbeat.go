package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleHeartbeat answers Heartbeat.
func (s *Server) handleHeartbeat(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.HeartbeatRequest)
	if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = code
		return resp, nil
	}
	return gc.Heartbeat(req)
}
