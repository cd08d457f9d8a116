package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// handleCreatePartitions grows topics to a new partition count.
func (s *Server) handleCreatePartitions(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	count := map[string]int{}
	for _, t := range req.Topics {
		count[t.Topic]++
	}
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		err := s.authTopic(ctx, c, rt.Topic, auth.OpAlter, nil)
		if err == nil {
			err = s.createPartitions(ctx, c.remote, rt, req.ValidateOnly, count[rt.Topic] > 1)
		}
		if err != nil {
			st.ErrorCode = errorCode(err)
			st.ErrorMessage = errorMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// createPartitions checks one topic's increase and, unless validateOnly,
// makes it. Internal topics answer INVALID_TOPIC_EXCEPTION, a count past what
// one topic may have INVALID_PARTITIONS, and an increase past the broker's
// topics.max_partitions POLICY_VIOLATION. In a cell the increase goes
// through the controller (cell_topics.go).
func (s *Server) createPartitions(ctx context.Context, client string, rt *kmsg.CreatePartitionsRequestTopic, validateOnly, dup bool) error {
	if dup {
		return codeErrorf(errInvalidRequest, "topic %s is listed more than once in the request", rt.Topic)
	}
	if broker.InternalTopic(rt.Topic) {
		return s.internalTopicError(client, "add partitions to", rt.Topic)
	}
	info, err := s.b.Topic(rt.Topic)
	if err != nil {
		return err
	}
	if rt.Count <= info.Partitions {
		return codeErrorf(errInvalidPartitions, "topic %s has %d partitions; the new count %d must be larger", rt.Topic, info.Partitions, rt.Count)
	}
	if rt.Count > broker.MaxTopicPartitions {
		return codeErrorf(errInvalidPartitions, "partition count %d is more than a topic may have (%d)", rt.Count, broker.MaxTopicPartitions)
	}
	cell := false
	if s.cfg.Cell != nil {
		if parts, ok := s.cfg.Cell.Partitions(rt.Topic); ok {
			cell, info.Partitions = true, int32(len(parts))
			if rt.Count <= info.Partitions {
				return codeErrorf(errInvalidPartitions, "topic %s has %d partitions; the new count %d must be larger", rt.Topic, info.Partitions, rt.Count)
			}
		}
	}
	if rt.Assignment != nil && cell {
		return codeErrorf(errInvalidReplicaAssignment, "a replica assignment is not taken in a cell yet: give the new count only")
	}
	if rt.Assignment != nil {
		if len(rt.Assignment) != int(rt.Count-info.Partitions) {
			return codeErrorf(errInvalidReplicaAssignment, "%d assignments given for %d new partitions", len(rt.Assignment), rt.Count-info.Partitions)
		}
		for _, a := range rt.Assignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != nodeID {
				return codeErrorf(errInvalidReplicaAssignment, "the only broker is node %d", nodeID)
			}
		}
	}
	if validateOnly {
		return s.checkPartitionBudget(client, rt.Topic, rt.Count-info.Partitions)
	}
	if cell {
		if err := s.cellCreatePartitions(ctx, rt.Topic, rt.Count); err != nil {
			return err
		}
	} else if err := s.b.CreatePartitions(rt.Topic, rt.Count); err != nil {
		return s.topicAdminError(client, err)
	}
	s.log.Info("kafka partitions created", "topic", rt.Topic, "partitions", rt.Count)
	return nil
}
