package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/cluster"
	"github.com/katka-io/katka/appliance/kafka"
)

// runningCellRF is topics.default_replication_factor of the running cell.
var runningCellRF int16 = 1

// cellPartitions turns a controller topic into the Kafka layer's partitions.
func cellPartitions(t cluster.TopicInfo) []kafka.CellPartition {
	out := make([]kafka.CellPartition, len(t.Partitions))
	for i, p := range t.Partitions {
		out[i] = kafka.CellPartition{Leader: p.Leader, LeaderEpoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.ISR, Adding: p.Adding, Removing: p.Removing()}
	}
	return out
}

// kafkaCellError gives a controller error the Kafka error clients get for
// it: NOT_CONTROLLER while no controller leader is reachable (a minority
// partition, an election), and Kafka's codes for the topic errors.
func kafkaCellError(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range []struct {
		err  error
		kerr *kerr.Error
	}{
		{cluster.ErrTopicExists, kerr.TopicAlreadyExists},
		{cluster.ErrUnknownTopic, kerr.UnknownTopicOrPartition},
		{cluster.ErrReplicationFactor, kerr.InvalidReplicationFactor},
		{cluster.ErrInvalidPartitions, kerr.InvalidPartitions},
		{cluster.ErrNoController, kerr.NotController},
		{cluster.ErrInvalidReplicas, kerr.InvalidReplicaAssignment},
		{cluster.ErrNoReassignment, kerr.NoReassignmentInProgress},
	} {
		if errors.Is(err, m.err) {
			return fmt.Errorf("%w: %v", m.kerr, err)
		}
	}
	return fmt.Errorf("%w: %v", kerr.RequestTimedOut, err) // the controller did not answer
}

func (v cellView) DefaultReplicationFactor() int16 { return v.rf }

func (v cellView) CreateTopic(ctx context.Context, name string, partitions int32, rf int16, configs map[string]string) ([]kafka.CellPartition, error) {
	t, err := v.n.CreateTopicAssigned(ctx, name, partitions, int(rf), configs)
	if err != nil {
		return nil, kafkaCellError(err)
	}
	return cellPartitions(t), nil
}

func (v cellView) CreatePartitions(ctx context.Context, name string, count int32) error {
	_, err := v.n.CreatePartitions(ctx, name, count)
	return kafkaCellError(err)
}

func (v cellView) TopicID(topic string) ([16]byte, bool) {
	var id [16]byte
	t, ok := v.n.Topic(topic)
	if !ok {
		return id, false
	}
	b, err := hex.DecodeString(t.ID)
	if err != nil || len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

func (v cellView) Reassign(ctx context.Context, topic string, partition int32, replicas []int32) error {
	return kafkaCellError(v.n.Reassign(ctx, topic, partition, replicas))
}

func (v cellView) DeleteTopic(ctx context.Context, name string) error {
	return kafkaCellError(v.n.DeleteTopic(ctx, name))
}

func (v cellView) EnsureTopic(ctx context.Context, name string, n int32) ([]kafka.CellPartition, error) {
	t, err := v.n.EnsureTopic(ctx, name, n)
	if err != nil {
		return nil, kafkaCellError(err)
	}
	return cellPartitions(t), nil
}

func (l brokerTopics) CreatePartitions(name string, n int32) error {
	return l.b.CreatePartitions(name, n)
}

func (l brokerTopics) DeleteTopic(name string) error {
	return l.b.DeleteTopic(name)
}

func (v cellView) Topics() []string {
	md := v.n.Metadata()
	out := make([]string, 0, len(md.Topics))
	for name := range md.Topics {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func (v cellView) AllocateProducerIDs(ctx context.Context, n int64) (int64, int64, error) {
	b, err := v.n.AllocateProducerIDs(ctx, n)
	if err != nil {
		return 0, 0, kafkaCellError(err)
	}
	return b.Start, b.End, nil
}

func (v cellView) PeerCall(ctx context.Context, id int32, kind string, in, out any) error {
	return v.n.PeerCall(ctx, id, kind, in, out)
}

func (v cellView) ProducerIDIssued(ctx context.Context, id int64) bool {
	return v.n.ProducerIDIssued(ctx, id)
}
