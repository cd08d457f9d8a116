package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleConsumerGroupHeartbeat answers ConsumerGroupHeartbeat (KIP-848, the
// consumer group protocol of Kafka 4 clients): join with member epoch 0,
// heartbeat and acknowledge revocations, leave with -1 (-2: a static member
// that will come back). The coordinator assigns partitions itself (the
// "uniform" and "range" server assignors); see appliance/group/README.md.
func (s *Server) handleConsumerGroupHeartbeat(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ConsumerGroupHeartbeatRequest)
	if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		return denied(req, errGroupAuthorizationFailed), nil
	}
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		resp.ErrorCode = code
		return resp, nil
	}
	return gc.ConsumerHeartbeat(req, clientID(c), clientHost(c), s.groupTopics())
}
