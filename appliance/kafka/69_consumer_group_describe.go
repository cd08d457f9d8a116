package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/group"
)

// handleConsumerGroupDescribe answers ConsumerGroupDescribe (KIP-848): the
// group's epochs, assignor and each member's assignment and target. Unknown
// and classic groups get GROUP_ID_NOT_FOUND, as Kafka.
func (s *Server) handleConsumerGroupDescribe(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.ConsumerGroupDescribeRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	failed := func(g string, code int16) {
		d := kmsg.NewConsumerGroupDescribeResponseGroup()
		d.Group, d.ErrorCode = g, code
		resp.Groups = append(resp.Groups, d)
	}
	topics := s.groupTopics()
	s.eachAuthorizedCoordinator(ctx, c, req.Groups, auth.OpDescribe, func(gc *group.Coordinator, share []string) error {
		sub := *req
		sub.Groups = share
		r, err := gc.ConsumerDescribe(&sub, topics)
		if err == nil {
			resp.Groups = append(resp.Groups, r.Groups...)
		}
		return err
	}, failed)
	return resp, nil
}
