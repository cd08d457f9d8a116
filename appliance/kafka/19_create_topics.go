package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// handleCreateTopics creates topics with their partition count and configs.
// One node means a replication factor of 1 (or -1, the default); in a cell
// the topic goes through the controller with a replication factor up to the
// cell's nodes (-1: topics.default_replication_factor) and the answer tells
// the committed assignment (cell_topics.go). validate_only checks everything
// and creates nothing.
func (s *Server) handleCreateTopics(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	count := map[string]int{}
	for _, t := range req.Topics {
		count[t.Topic]++
	}
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		var info broker.TopicInfo
		var err error
		if count[rt.Topic] > 1 {
			err = codeErrorf(errInvalidRequest, "topic %s is listed more than once in the request", rt.Topic)
		} else if !s.allowCluster(ctx, c, auth.OpCreate) && !s.allowTopic(ctx, c, rt.Topic, auth.OpCreate) {
			err = codeErrorf(errTopicAuthorizationFailed, "Authorization failed.") // Kafka: CREATE on the cluster or the topic
		} else {
			info, err = s.createTopic(ctx, c.remote, rt, req.ValidateOnly)
		}
		if err != nil {
			st.ErrorCode = errorCode(err)
			if req.Version >= 1 {
				st.ErrorMessage = errorMessage(err)
			}
		} else {
			st.TopicID = info.ID
			st.NumPartitions, st.ReplicationFactor = info.Partitions, s.replicationFactor(rt.ReplicationFactor)
			st.Configs = s.createdTopicConfigs(info.Config)
			if !req.ValidateOnly {
				s.log.Info("kafka topic created", "topic", info.Name, "partitions", info.Partitions)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}

// createTopic validates one topic request and, unless validateOnly, creates it.
// Internal names are refused: an existing internal topic answers
// TOPIC_ALREADY_EXISTS (as Kafka answers a create of __consumer_offsets),
// any other name starting with "__" or "." INVALID_TOPIC_EXCEPTION. A count
// past what one topic may have is INVALID_PARTITIONS; past the broker's
// topics.max_partitions, POLICY_VIOLATION.
func (s *Server) createTopic(ctx context.Context, client string, rt *kmsg.CreateTopicsRequestTopic, validateOnly bool) (broker.TopicInfo, error) {
	if err := broker.ValidTopicName(rt.Topic); err != nil {
		return broker.TopicInfo{}, err
	}
	if broker.InternalTopic(rt.Topic) {
		if _, err := s.b.Topic(rt.Topic); err == nil {
			s.limitRejected(broker.LimitInternalTopic, client, "create "+rt.Topic)
			return broker.TopicInfo{}, codeErrorf(errTopicAlreadyExists, "topic %s already exists (it is internal)", rt.Topic)
		}
		return broker.TopicInfo{}, s.internalTopicError(client, "create", rt.Topic)
	}
	n := rt.NumPartitions
	if len(rt.ReplicaAssignment) > 0 && s.cfg.Cell != nil {
		return broker.TopicInfo{}, codeErrorf(errInvalidReplicaAssignment, "a replica assignment is not taken in a cell yet: give a partition count and replication factor")
	}
	if len(rt.ReplicaAssignment) > 0 {
		if n != -1 || rt.ReplicationFactor != -1 {
			return broker.TopicInfo{}, codeErrorf(errInvalidRequest, "both a replica assignment and a partition count or replication factor were given")
		}
		n = int32(len(rt.ReplicaAssignment))
		for i, a := range rt.ReplicaAssignment {
			if a.Partition != int32(i) && !hasPartition(rt.ReplicaAssignment, int32(i)) {
				return broker.TopicInfo{}, codeErrorf(errInvalidReplicaAssignment, "replica assignment partitions must be 0..%d", n-1)
			}
			if len(a.Replicas) != 1 || a.Replicas[0] != nodeID {
				return broker.TopicInfo{}, codeErrorf(errInvalidReplicaAssignment, "partition %d: the only broker is node %d", a.Partition, nodeID)
			}
		}
	} else {
		if n == -1 {
			n = s.b.DefaultPartitions()
		}
		if n < 1 {
			return broker.TopicInfo{}, codeErrorf(errInvalidPartitions, "number of partitions must be at least 1, got %d", rt.NumPartitions)
		}
		if s.cfg.Cell != nil {
			if err := s.checkCellReplicationFactor(rt.ReplicationFactor); err != nil {
				return broker.TopicInfo{}, err
			}
		} else if rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1 {
			if rt.ReplicationFactor < 1 {
				return broker.TopicInfo{}, codeErrorf(errInvalidReplicationFactor, "replication factor must be at least 1, got %d", rt.ReplicationFactor)
			}
			return broker.TopicInfo{}, codeErrorf(errInvalidReplicationFactor, "replication factor %d is larger than the 1 available broker", rt.ReplicationFactor)
		}
	}
	if n > broker.MaxTopicPartitions {
		return broker.TopicInfo{}, codeErrorf(errInvalidPartitions, "number of partitions %d is more than a topic may have (%d)", n, broker.MaxTopicPartitions)
	}
	pairs := make([]configPair, len(rt.Configs))
	for i, kv := range rt.Configs {
		pairs[i] = configPair{kv.Name, kv.Value}
	}
	set, err := buildOverrides(pairs, errInvalidConfig)
	if err != nil {
		return broker.TopicInfo{}, err
	}
	cfg := broker.TopicConfig{Overrides: set}
	if s.cfg.Cell != nil {
		return s.cellCreateTopic(ctx, client, rt, n, cfg, validateOnly)
	}
	if _, err := s.b.Topic(rt.Topic); err == nil {
		return broker.TopicInfo{}, codeErrorf(errTopicAlreadyExists, "topic %s already exists", rt.Topic)
	}
	if validateOnly {
		if err := s.checkPartitionBudget(client, rt.Topic, n); err != nil {
			return broker.TopicInfo{}, err
		}
		return broker.TopicInfo{Name: rt.Topic, Partitions: n, Config: cfg}, nil
	}
	info, err := s.b.CreateTopic(rt.Topic, n, cfg)
	return info, s.topicAdminError(client, err)
}

func hasPartition(as []kmsg.CreateTopicsRequestTopicReplicaAssignment, p int32) bool {
	for _, a := range as {
		if a.Partition == p {
			return true
		}
	}
	return false
}

// createdTopicConfigs lists every config of a created topic (or of the topic
// validate_only would create) as CreateTopics v5+ returns them.
func (s *Server) createdTopicConfigs(cfg broker.TopicConfig) []kmsg.CreateTopicsResponseTopicConfig {
	vals := s.b.TopicConfigValues(cfg)
	out := make([]kmsg.CreateTopicsResponseTopicConfig, 0, len(vals))
	for _, v := range vals {
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		val := v.Value
		c.Name, c.Value = v.Def.Name, &val
		c.Source = int8(kmsg.ConfigSourceDefaultConfig)
		if v.Set {
			c.Source = int8(kmsg.ConfigSourceDynamicTopicConfig)
		}
		out = append(out, c)
	}
	return out
}
