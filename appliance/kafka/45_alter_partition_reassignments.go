package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleAlterPartitionReassignments starts or cancels partition
// reassignments (KIP-455) through the cell's controller: the new replicas
// are added, catch up from the leader, join the ISR, and then the replicas
// not wanted any more are dropped (a new leader is elected if the old one
// leaves). Null replicas cancel a move in flight. It needs ALTER on the
// cluster. Single-node katka has no other node to move to:
// INVALID_REPLICA_ASSIGNMENT unless the target is node 0 alone.
func (s *Server) handleAlterPartitionReassignments(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterPartitionAssignmentsRequest)
	resp := req.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	if !s.allowCluster(ctx, c, auth.OpAlter) {
		resp.ErrorCode = errClusterAuthorizationFailed
		return resp, nil
	}
	for _, rt := range req.Topics {
		st := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			sp.Partition = rp.Partition
			var err error
			switch {
			case s.cfg.Cell != nil:
				err = s.cfg.Cell.Reassign(ctx, rt.Topic, rp.Partition, rp.Replicas)
			case len(rp.Replicas) == 1 && rp.Replicas[0] == 0:
				_, err = s.b.PartitionInfo(rt.Topic, rp.Partition) // already there
			case rp.Replicas == nil:
				err = codeErrorf(errNoReassignmentInProgress, "no reassignment in progress for %s-%d", rt.Topic, rp.Partition)
			default:
				err = codeErrorf(errInvalidReplicaAssignment, "single-node katka has only broker 0: replicas %v", rp.Replicas)
			}
			if err != nil {
				sp.ErrorCode, sp.ErrorMessage = errorCode(err), errorMessage(err)
			} else {
				s.log.Info("kafka partition reassignment", "topic", rt.Topic, "partition", rp.Partition, "replicas", rp.Replicas, "remote", c.remote)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
