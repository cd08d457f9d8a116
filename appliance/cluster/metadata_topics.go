package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// Topic commands beyond create_topic and delete_topic (metadata.go):
// create_partitions grows a topic, its new partitions' assignment computed by
// the proposer. delete_topic leaves a tombstone (Metadata.Deleted) so that a
// node that still holds the topic's local logs deletes them instead of
// proposing the topic again; create_topic of the name clears it.
const (
	opCreatePartitions = "create_partitions"
	// maxTombstones bounds Metadata.Deleted: the oldest names are forgotten
	// (a node away for that many deletions may propose one again).
	maxTombstones = 1024
)

// Errors of topic commands, besides ErrTopicExists and ErrUnknownTopic.
var (
	// ErrReplicationFactor is a replication factor below 1 or above the
	// registered nodes (Kafka: INVALID_REPLICATION_FACTOR).
	ErrReplicationFactor = errors.New("invalid replication factor")
	// ErrInvalidPartitions is a partition count that does not grow the topic
	// (Kafka: INVALID_PARTITIONS).
	ErrInvalidPartitions = errors.New("invalid partition count")
)

// applyTopicOp applies the topic commands of this file; f.mu is held.
func (f *fsm) applyTopicOp(c Command) error {
	switch c.Op {
	case opAllocateProducerIDs:
		return f.allocateProducerIDs(c.IDs)
	case opCreatePartitions:
		old, ok := f.md.Topics[c.Topic]
		if !ok {
			return ErrUnknownTopic
		}
		if c.TopicInfo == nil || len(c.TopicInfo.Partitions) <= len(old.Partitions) {
			return fmt.Errorf("%w: topic %s has %d partitions", ErrInvalidPartitions, c.Topic, len(old.Partitions))
		}
		// The existing partitions stay as they are (their leaders may have
		// changed since the proposer looked); only the new ones are taken.
		n := len(old.Partitions)
		old.Partitions = append(old.Partitions, c.TopicInfo.Partitions[n:]...)
		f.admitNew(c.Topic, old, n)
		f.md.Topics[c.Topic] = old
		return nil
	}
	return fmt.Errorf("unknown command %q", c.Op)
}

// tombstone records a deleted topic; f.mu is held.
func (f *fsm) tombstone(name string) {
	if f.md.Deleted == nil {
		f.md.Deleted = map[string]uint64{}
	}
	var seq uint64
	for _, v := range f.md.Deleted {
		seq = max(seq, v)
	}
	f.md.Deleted[name] = seq + 1
	if len(f.md.Deleted) <= maxTombstones {
		return
	}
	oldest, first := "", true
	for n, seq := range f.md.Deleted {
		if first || seq < f.md.Deleted[oldest] {
			oldest, first = n, false
		}
	}
	delete(f.md.Deleted, oldest)
}

// nodeIDs lists the registered nodes, lowest first.
func (md Metadata) nodeIDs() []int32 {
	ids := make([]int32, 0, len(md.Nodes))
	for id := range md.Nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// CreateTopicAssigned assigns a new topic's partitions over the registered
// nodes (rf replicas each, leaders spread) and commits it through the
// controller; it returns the committed assignment. Replicas beyond the
// leader are metadata only until replication (issue 16) copies data.
// configs are the topic's configs (Kafka names), created with it on every node.
func (n *Node) CreateTopicAssigned(ctx context.Context, name string, partitions int32, rf int, configs map[string]string) (TopicInfo, error) {
	return n.CreateTopicID(ctx, name, partitions, rf, configs, "")
}

// CreateTopicID is CreateTopicAssigned with the topic id given (hex; ""
// makes a new random one): a topic a node already holds is proposed under
// its own id.
func (n *Node) CreateTopicID(ctx context.Context, name string, partitions int32, rf int, configs map[string]string, id string) (TopicInfo, error) {
	if id == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return TopicInfo{}, fmt.Errorf("create topic %s: topic id: %w", name, err)
		}
		id = hex.EncodeToString(b[:])
	}
	md := n.fsm.view()
	ids := md.placeable()
	if rf < 1 || rf > len(ids) {
		return TopicInfo{}, fmt.Errorf("%w: %d (allowed: 1..%d, the registered nodes of the cell that are not fenced)", ErrReplicationFactor, rf, len(ids))
	}
	ti, err := assign(ids, partitions, rf, len(md.Topics)) // rotate where topics start, so leaders spread
	if err != nil {
		return TopicInfo{}, err
	}
	ti.Configs, ti.ID = maps.Clone(configs), id
	if err := remoteError(n.Apply(ctx, Command{Op: "create_topic", Topic: name, TopicInfo: &ti})); err != nil {
		return TopicInfo{}, err
	}
	n.awaitApplied(ctx, func(md *Metadata) bool { _, ok := md.Topics[name]; return ok })
	return ti, nil
}

// CreatePartitions grows a topic to count partitions through the controller;
// the new partitions continue the topic's round robin over the registered
// nodes with the topic's replication factor. It returns the topic as
// committed (as this node's copy of the metadata will hold it).
func (n *Node) CreatePartitions(ctx context.Context, name string, count int32) (TopicInfo, error) {
	md := n.fsm.view()
	t, ok := md.Topics[name]
	if !ok {
		return TopicInfo{}, ErrUnknownTopic
	}
	if count <= int32(len(t.Partitions)) {
		return TopicInfo{}, fmt.Errorf("%w: topic %s has %d partitions, the new count %d must be larger", ErrInvalidPartitions, name, len(t.Partitions), count)
	}
	ids := md.placeable()
	rf := max(t.ReplicationFactor, 1)
	if rf > len(ids) {
		return TopicInfo{}, fmt.Errorf("%w: topic %s has %d replicas, the cell %d nodes", ErrReplicationFactor, name, rf, len(ids))
	}
	// Start where partition 0's leader stands in the node list, so partition
	// p is led by the node assign gave it when the topic was created.
	start := 0
	if len(t.Partitions) > 0 {
		if i := slices.Index(ids, t.Partitions[0].Replicas[0]); i >= 0 {
			start = i
		}
	}
	grown, err := assign(ids, count, rf, start)
	if err != nil {
		return TopicInfo{}, err
	}
	copy(grown.Partitions, t.Partitions)
	grown.ReplicationFactor, grown.Configs = t.ReplicationFactor, t.Configs
	if err := remoteError(n.Apply(ctx, Command{Op: opCreatePartitions, Topic: name, TopicInfo: &grown})); err != nil {
		return TopicInfo{}, err
	}
	n.awaitApplied(ctx, func(md *Metadata) bool { return len(md.Topics[name].Partitions) >= int(count) })
	return grown, nil
}

// DeleteTopic deletes a topic through the controller; every node then
// deletes its local logs (Reconcile).
func (n *Node) DeleteTopic(ctx context.Context, name string) error {
	if err := remoteError(n.Apply(ctx, Command{Op: "delete_topic", Topic: name})); err != nil {
		return err
	}
	n.awaitApplied(ctx, func(md *Metadata) bool { _, ok := md.Topics[name]; return !ok })
	return nil
}

// offsetsReplicationFactor is the replication factor of the cell's
// __consumer_offsets where the cell has that many nodes: Kafka's default
// offsets.topic.replication.factor.
const offsetsReplicationFactor = 3

// ErrCellForming is returned by EnsureTopic for __consumer_offsets while not
// every member of the cell has registered: its replicas are placed once, over
// all of them (Kafka likewise refuses to create the topic while fewer brokers
// than its replication factor are up). Callers answer
// COORDINATOR_NOT_AVAILABLE and clients retry.
var ErrCellForming = errors.New("the cell is still forming: not every member has registered")

// EnsureTopic returns a topic of the controller, creating it with partitions
// spread over the registered nodes when it does not exist yet: katka's
// internal topics. __consumer_offsets is replicated (min(3, nodes) replicas,
// min.insync.replicas as for any topic, no retention: the group
// coordinator compacts it), placed once every member of the cell has
// registered; __transaction_state is a placement of one replica per
// partition that only decides which node coordinates a transactional id.
func (n *Node) EnsureTopic(ctx context.Context, name string, partitions int32) (TopicInfo, error) {
	if t, ok := n.fsm.topic(name); ok {
		return t, nil
	}
	rf, configs := 1, map[string]string(nil)
	if name == broker.OffsetsTopic {
		md := n.fsm.view()
		if !n.membersRegistered(md) {
			return TopicInfo{}, fmt.Errorf("place %s: %w", name, ErrCellForming)
		}
		rf = min(offsetsReplicationFactor, len(md.placeable()))
		configs = map[string]string{"retention.ms": "-1", "retention.bytes": "-1"}
	}
	ti, err := n.CreateTopicAssigned(ctx, name, partitions, rf, configs)
	if errors.Is(err, ErrTopicExists) {
		// Created by another node meanwhile: the committed one counts,
		// which this node may not have applied yet.
		n.awaitApplied(ctx, func(md *Metadata) bool { _, ok := md.Topics[name]; return ok })
		if t, ok := n.fsm.topic(name); ok {
			return t, nil
		}
	}
	return ti, err
}

// applyWait bounds how long a node waits for its own copy of the metadata to
// show a change the controller leader committed (a follower learns of the
// commit with the leader's next append or heartbeat, tens of milliseconds).
const applyWait = 2 * time.Second

// awaitApplied waits until this node's copy of the metadata satisfies cond,
// at most applyWait: a change made through this node is then visible on it
// (read your writes), as Kafka clients expect from the broker that answered.
func (n *Node) awaitApplied(ctx context.Context, cond func(*Metadata) bool) {
	n.awaitAppliedFor(ctx, applyWait, cond)
}

// awaitAppliedFor is awaitApplied waiting at most d.
func (n *Node) awaitAppliedFor(ctx context.Context, d time.Duration, cond func(*Metadata) bool) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n.fsm.mu.RLock()
		ok := cond(&n.fsm.md)
		n.fsm.mu.RUnlock()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// remoteError gives an error forwarded from the controller leader (a string
// over the RPC) its sentinel back, so errors.Is works on every node.
func remoteError(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrTopicExists, ErrUnknownTopic, ErrReplicationFactor, ErrInvalidPartitions, ErrNoController, errStaleBlock,
		ErrStaleEpoch, ErrInvalidISR, ErrIneligibleReplica, ErrInvalidReplicas, ErrNoReassignment} {
		if !errors.Is(err, s) && strings.Contains(err.Error(), s.Error()) {
			return fmt.Errorf("%w (%v)", s, err)
		}
	}
	return err
}

// Topic returns one topic of this node's copy of the metadata (a follower's
// copy may lag the leader's by a heartbeat).
func (n *Node) Topic(name string) (TopicInfo, bool) {
	return n.fsm.topic(name)
}

// topic returns a deep copy of one topic.
func (f *fsm) topic(name string) (TopicInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.md.Topics[name]
	if !ok {
		return TopicInfo{}, false
	}
	t.Partitions = slices.Clone(t.Partitions)
	for i := range t.Partitions {
		t.Partitions[i].Replicas = slices.Clone(t.Partitions[i].Replicas)
		t.Partitions[i].ISR = slices.Clone(t.Partitions[i].ISR)
	}
	t.Configs = maps.Clone(t.Configs)
	return t, true
}
