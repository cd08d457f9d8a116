package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleOffsetCommit answers OffsetCommit: offsets are acknowledged once they
// are fsynced in __consumer_offsets. Unknown topics or partitions get
// UNKNOWN_TOPIC_OR_PARTITION, as Kafka.
func (s *Server) handleOffsetCommit(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req, addRefused := s.authOffsetCommit(ctx, c, kr.(*kmsg.OffsetCommitRequest))
	gc, code := s.groupFor(req.Group) // NOT_COORDINATOR in a cell (cell_route.go)
	if code != errNone {
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range req.Topics {
			rt := kmsg.OffsetCommitResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code})
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil
	}
	counts := map[string]int32{}
	for _, t := range req.Topics {
		if _, seen := counts[t.Topic]; !seen {
			counts[t.Topic] = -1
			if info, err := s.b.Topic(t.Topic); err == nil {
				counts[t.Topic] = info.Partitions
			}
		}
	}
	known := func(topic string, p int32) bool { return p >= 0 && p < counts[topic] }
	return addRefused(gc.Commit(req, known, c.remote))
}
