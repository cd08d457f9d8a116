package cluster

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// LocalTopic is one topic of this node's broker.
type LocalTopic struct {
	Name string
	// ID is the topic's id on this node (hex).
	ID         string
	Partitions int32
	// Internal is true for katka's and Kafka's internal topics, which stay
	// on every node (consumer offsets, transaction state).
	Internal bool
	// Empty is true while no partition holds a record.
	Empty bool
}

// LocalTopics is this node's broker as the reconciler needs it: the broker
// stays the only owner of partition logs.
type LocalTopics interface {
	// Topics lists the broker's topics.
	Topics() []LocalTopic
	// CreateTopic creates a topic with n partitions, the topic configs
	// (Kafka names) and the cell's topic id (hex; "" for a new one) on this
	// node.
	CreateTopic(name string, n int32, configs map[string]string, id string) error
	// CreatePartitions grows a topic of this node to n partitions.
	CreatePartitions(name string, n int32) error
	// DeleteTopic deletes a topic's logs on this node.
	DeleteTopic(name string) error
}

// reconcileInterval is how often the local broker and the controller's
// topics are compared.
const reconcileInterval = 250 * time.Millisecond

// Reconcile keeps the local broker and the controller's topics in step until
// the node closes: a topic the controller holds is created locally with its
// partition count, and grown when the controller's count grows; a topic the
// controller deleted (a tombstone in the metadata) is deleted locally; katka's
// internal topics (consumer offsets, transaction state) are placed by the
// controller but their logs stay this node's own; a topic created locally (Kafka CreateTopics or auto-create
// on this node) is proposed to the controller, its partitions spread over the
// cell when they are still empty, or all led by this node when it already
// holds records (the records stay where they are). Until the controller has
// it, Kafka clients are told LEADER_NOT_AVAILABLE and ask again.
func (n *Node) Reconcile(local LocalTopics) {
	n.goLoop(func() {
		tick := time.NewTicker(reconcileInterval)
		defer tick.Stop()
		warned := map[string]bool{}
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-tick.C:
			}
			if n.ControllerID() < 0 {
				continue
			}
			n.reconcileOnce(local, warned)
		}
	})
}

func (n *Node) reconcileOnce(local LocalTopics, warned map[string]bool) {
	md := n.fsm.view()
	have := map[string]LocalTopic{}
	for _, t := range local.Topics() {
		have[t.Name] = t
	}
	for name, t := range md.Topics {
		if !broker.CellReplicated(name) {
			continue // katka's own internal topics: each node keeps its own log (README)
		}
		lt, ok := have[name]
		switch {
		case !ok:
			if err := local.CreateTopic(name, int32(len(t.Partitions)), t.Configs, t.ID); err != nil && !warned[name] {
				warned[name] = true
				n.log.Warn("cell: creating a cell topic on this node failed", "topic", name, "err", err)
			}
		case lt.Partitions < int32(len(t.Partitions)):
			if err := local.CreatePartitions(name, int32(len(t.Partitions))); err != nil && !warned[name] {
				warned[name] = true
				n.log.Warn("cell: growing a cell topic on this node failed", "topic", name, "err", err)
			}
		case lt.Partitions != int32(len(t.Partitions)) && !warned[name]:
			warned[name] = true
			n.log.Warn("cell: local topic's partition count differs from the cell's", "topic", name,
				"local", lt.Partitions, "cell", len(t.Partitions))
		}
	}
	// Asked only when a local topic is to be proposed, not on every tick.
	registered := sync.OnceValue(func() bool { return n.membersRegistered(md) })
	for name, lt := range have {
		if _, ok := md.Topics[name]; ok || lt.Internal {
			continue
		}
		if _, gone := md.Deleted[name]; gone {
			if err := local.DeleteTopic(name); err != nil && !warned["delete "+name] {
				warned["delete "+name] = true
				n.log.Warn("cell: deleting a topic the cell deleted failed", "topic", name, "err", err)
			} else if err == nil {
				n.log.Info("cell: topic deleted on this node", "topic", name)
			}
			continue
		}
		if !registered() {
			continue // the cell is still forming: spread over every member, next tick
		}
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		var err error
		if lt.Empty {
			_, err = n.CreateTopicID(ctx, name, lt.Partitions, 1, nil, lt.ID)
		} else {
			err = n.adoptTopic(ctx, name, lt.Partitions, lt.ID)
		}
		cancel()
		if err != nil && !errors.Is(err, ErrTopicExists) && !strings.Contains(err.Error(), ErrTopicExists.Error()) && !warned["propose "+name] {
			warned["propose "+name] = true
			n.log.Warn("cell: proposing a local topic to the controller failed", "topic", name, "err", err)
		}
	}
}

// adoptTopic commits a topic whose partitions all stay on this node.
func (n *Node) adoptTopic(ctx context.Context, name string, partitions int32, id string) error {
	ti, err := assign([]int32{n.cred.NodeID}, partitions, 1, 0)
	if err != nil {
		return err
	}
	ti.ID = id
	return n.Apply(ctx, Command{Op: "create_topic", Topic: name, TopicInfo: &ti})
}

// membersRegistered reports whether every server of the raft configuration
// is in the metadata's node table. Right after a cell forms, the leader
// registers the members one by one; a local topic proposed before that would
// be spread over the members registered so far only (an input writing from
// the first second put all of a 6-partition topic on two of three nodes).
func (n *Node) membersRegistered(md Metadata) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		id, err := strconv.Atoi(string(s.ID))
		if err != nil {
			return false
		}
		if _, ok := md.Nodes[int32(id)]; !ok {
			return false
		}
	}
	return true
}
