package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// deleteRecordsHighWatermark is the DeleteRecords offset meaning "up to the
// high watermark" (DeleteRecordsRequest.HIGH_WATERMARK in Kafka).
const deleteRecordsHighWatermark = -1

// invalidLowWatermark is the low watermark Kafka answers with for a partition
// whose deletion failed (DeleteRecordsResponse.INVALID_LOW_WATERMARK).
const invalidLowWatermark = -1

// handleDeleteRecords moves the log start offset of partitions forward, as
// Kafka's DeleteRecords does: records below the requested offset can no longer
// be fetched, whole segments below it are removed, and the answer carries the
// new log start offset (the low watermark). An offset of -1 means the high
// watermark; an offset at or below the current start changes nothing and
// answers the current start. Per partition errors are Kafka's:
// UNKNOWN_TOPIC_OR_PARTITION for a topic or partition that does not exist and
// OFFSET_OUT_OF_RANGE for an offset past the high watermark or negative (other
// than -1); the low watermark of a failed partition is -1. With one replica
// there is nothing to wait for, so the request timeout is not used.
func (s *Server) handleDeleteRecords(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	resp.Topics = make([]kmsg.DeleteRecordsResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.DeleteRecordsResponseTopicPartition, len(rt.Partitions))
		leaders := s.cellLeaders(rt.Topic) // a cell: partitions other nodes lead (cell_route.go)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = invalidLowWatermark
			if !s.allowTopic(ctx, c, rt.Topic, auth.OpDelete) {
				sp.ErrorCode = errTopicAuthorizationFailed
				continue
			}
			if _, err := s.notLeader(rt.Topic, leaders, rp.Partition); err != nil {
				sp.ErrorCode = errorCode(err)
				continue
			}
			if rp.Offset < 0 && rp.Offset != deleteRecordsHighWatermark {
				sp.ErrorCode = errOffsetOutOfRange
				continue
			}
			start, err := s.b.DeleteRecords(rt.Topic, rp.Partition, rp.Offset)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				if sp.ErrorCode == errKafkaStorageError {
					s.log.Error("kafka delete records failed", "topic", rt.Topic, "partition", rp.Partition, "offset", rp.Offset, "err", err)
				}
				continue
			}
			sp.LowWatermark = start
			s.log.Info("kafka records deleted", "topic", rt.Topic, "partition", rp.Partition, "before", rp.Offset, "log_start_offset", start, "remote", c.remote)
		}
	}
	return resp, nil
}
