package kafka

import (
	"context"
	"errors"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// replicationFactor is the replication factor a created topic has: rf, or
// the default for -1 (topics.default_replication_factor in a cell, 1 on a
// single node).
func (s *Server) replicationFactor(rf int16) int16 {
	if rf != -1 {
		return rf
	}
	if s.cfg.Cell != nil {
		return s.cfg.Cell.DefaultReplicationFactor()
	}
	return 1
}

// checkCellReplicationFactor refuses a replication factor below 1 or above
// the cell's registered nodes with INVALID_REPLICATION_FACTOR and Kafka's
// message. Replicas beyond the leader are metadata only until replication
// (issue 16) copies data to them.
func (s *Server) checkCellReplicationFactor(rf int16) error {
	rf = s.replicationFactor(rf)
	if rf < 1 {
		return codeErrorf(errInvalidReplicationFactor, "Replication factor must be larger than 0, or -1 to use the default value.")
	}
	if nodes := len(s.cfg.Cell.Brokers()); int(rf) > nodes {
		return codeErrorf(errInvalidReplicationFactor, "Unable to replicate the partition %d time(s): The target replication factor of %d cannot be reached because only %d broker(s) are registered.", rf, rf, nodes)
	}
	return nil
}

// cellCreateTopic creates a validated topic through the controller, then its
// local logs on this node at once (the other nodes create theirs within a
// reconcile interval).
func (s *Server) cellCreateTopic(ctx context.Context, client string, rt *kmsg.CreateTopicsRequestTopic, n int32, cfg broker.TopicConfig, validateOnly bool) (broker.TopicInfo, error) {
	if _, ok := s.cfg.Cell.Partitions(rt.Topic); ok {
		return broker.TopicInfo{}, codeErrorf(errTopicAlreadyExists, "Topic '%s' already exists.", rt.Topic)
	}
	if validateOnly {
		return broker.TopicInfo{Name: rt.Topic, Partitions: n, Config: cfg}, nil
	}
	if _, err := s.cfg.Cell.CreateTopic(ctx, rt.Topic, n, s.replicationFactor(rt.ReplicationFactor), cfg.Overrides); err != nil {
		return broker.TopicInfo{}, err
	}
	id, _ := s.cfg.Cell.TopicID(rt.Topic) // this node's logs carry the cell's id
	info, err := s.b.CreateTopicID(rt.Topic, n, cfg, id)
	if errors.Is(err, broker.ErrTopicExists) {
		info, err = s.b.Topic(rt.Topic) // the reconciler was first
	}
	if err != nil {
		// Committed in the cell: the reconciler retries the local logs.
		s.log.Warn("kafka cell topic created, its local logs not yet", "topic", rt.Topic, "err", s.topicAdminError(client, err))
		return broker.TopicInfo{Name: rt.Topic, Partitions: n, Config: cfg}, nil
	}
	return info, nil
}

// cellCreatePartitions grows a topic through the controller, then its local
// logs on this node.
func (s *Server) cellCreatePartitions(ctx context.Context, topic string, count int32) error {
	if err := s.cfg.Cell.CreatePartitions(ctx, topic, count); err != nil {
		return err
	}
	if err := s.b.CreatePartitions(topic, count); err != nil && !errors.Is(err, broker.ErrInvalidPartitions) {
		s.log.Warn("kafka cell partitions created, the local logs not yet", "topic", topic, "err", err)
	}
	return nil
}

// cellDeleteTopic deletes a topic through the controller, then its local
// logs on this node.
func (s *Server) cellDeleteTopic(ctx context.Context, topic string) error {
	if err := s.cfg.Cell.DeleteTopic(ctx, topic); err != nil {
		return err
	}
	if err := s.b.DeleteTopic(topic); err != nil && !errors.Is(err, broker.ErrUnknownTopic) {
		s.log.Warn("kafka cell topic deleted, its local logs not yet", "topic", topic, "err", err)
	}
	return nil
}

// cellTopicPartitions returns a topic's partitions in the controller, false
// outside a cell or when the controller does not hold the topic.
func (s *Server) cellTopicPartitions(name string) ([]CellPartition, bool) {
	if s.cfg.Cell == nil {
		return nil, false
	}
	return s.cfg.Cell.Partitions(name)
}
