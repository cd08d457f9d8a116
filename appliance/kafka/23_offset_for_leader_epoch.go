package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleOffsetForLeaderEpoch answers OffsetForLeaderEpoch (API 23): for each
// partition, the largest leader epoch at or below the asked one that this
// leader's log holds and the offset where it ends (KIP-101, KIP-279), so a
// consumer that saw a leader change can tell whether its position was
// truncated away (KIP-320). A replicated partition answers from its
// leader-epoch checkpoint; a partition with one replica has only ever had
// epoch 0 in its log, which ends at the log end. A current leader epoch
// other than the leader's answers FENCED_LEADER_EPOCH; a partition another
// node leads NOT_LEADER_OR_FOLLOWER.
func (s *Server) handleOffsetForLeaderEpoch(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	resp.Topics = make([]kmsg.OffsetForLeaderEpochResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.OffsetForLeaderEpochResponseTopicPartition, len(rt.Partitions))
		leaders := s.cellLeaders(rt.Topic)
		allowed := s.allowTopic(ctx, c, rt.Topic, auth.OpDescribe)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			if !allowed {
				sp.ErrorCode = errTopicAuthorizationFailed
				continue
			}
			if _, err := s.notLeader(rt.Topic, leaders, rp.Partition); err != nil {
				sp.ErrorCode = errorCode(err)
				continue
			}
			if _, ok := s.b.ReplicaState(rt.Topic, rp.Partition); ok {
				e, end, err := s.b.EndOffsetForEpoch(rt.Topic, rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch)
				if err != nil {
					sp.ErrorCode = errorCode(err)
					continue
				}
				sp.LeaderEpoch, sp.EndOffset = e, end
				continue
			}
			info, err := s.b.PartitionInfo(rt.Topic, rp.Partition)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				continue
			}
			epoch := int32(0)
			if p := rp.Partition; int(p) < len(leaders) && p >= 0 {
				epoch = leaders[p].LeaderEpoch
			}
			if rp.CurrentLeaderEpoch >= 0 && rp.CurrentLeaderEpoch != epoch {
				sp.ErrorCode = errFencedLeaderEpoch
				continue
			}
			if rp.LeaderEpoch >= 0 {
				sp.LeaderEpoch, sp.EndOffset = min(rp.LeaderEpoch, epoch), info.HighWatermark
			}
		}
	}
	return resp, nil
}
