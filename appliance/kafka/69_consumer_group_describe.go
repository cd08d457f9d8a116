package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleConsumerGroupDescribe answers ConsumerGroupDescribe (KIP-848): the
// group's epochs, assignor and each member's assignment and target. Unknown
// and classic groups get GROUP_ID_NOT_FOUND, as Kafka.
func (s *Server) handleConsumerGroupDescribe(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ConsumerGroupDescribeRequest)
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
		for _, g := range req.Groups {
			d := kmsg.NewConsumerGroupDescribeResponseGroup()
			d.Group, d.ErrorCode = g, errCoordinatorNotAvailable
			resp.Groups = append(resp.Groups, d)
		}
		return resp, nil
	}
	var no []string
	req.Groups, no = s.splitGroups(ctx, c, req.Groups, auth.OpDescribe)
	var others []string // coordinated by another node of the cell (cell_route.go)
	req.Groups, others = s.splitCoordinated(req.Groups)
	resp, err := gc.ConsumerDescribe(req, s.groupTopics())
	if r := resp; err == nil && r != nil {
		for _, g := range others {
			d := kmsg.NewConsumerGroupDescribeResponseGroup()
			d.Group, d.ErrorCode = g, errNotCoordinator
			r.Groups = append(r.Groups, d)
		}
		for _, g := range no {
			d := kmsg.NewConsumerGroupDescribeResponseGroup()
			d.Group, d.ErrorCode = g, errGroupAuthorizationFailed
			r.Groups = append(r.Groups, d)
		}
	}
	return resp, err
}
