package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// NodeInfo is one registered node of the cell, as the controller holds it.
type NodeInfo struct {
	// ID is the node id: the Kafka broker id and the raft server id.
	ID int32 `json:"id"`
	// PeerAddr is the node's advertised peer address.
	PeerAddr string `json:"peer_addr"`
	// KafkaAddr is the node's advertised Kafka address.
	KafkaAddr string `json:"kafka_addr"`
	// Rack is the node's Kafka rack.
	Rack string `json:"rack,omitempty"`
}

// PartitionInfo is one partition's placement and leadership.
type PartitionInfo struct {
	// Replicas are the node ids holding the partition, preferred leader first.
	Replicas []int32 `json:"replicas"`
	// Leader is the node id leading the partition (-1: none).
	Leader int32 `json:"leader"`
	// LeaderEpoch counts leadership changes (Kafka's leader epoch).
	LeaderEpoch int32 `json:"leader_epoch"`
	// ISR are the in-sync replicas.
	ISR []int32 `json:"isr"`
	// Target, while a reassignment is in flight, is the replica set
	// wanted; Adding are its replicas not in the set before
	// (metadata_reassign.go).
	Target []int32 `json:"target,omitempty"`
	Adding []int32 `json:"adding,omitempty"`
}

// TopicInfo is one topic of the cell.
type TopicInfo struct {
	// Partitions are the topic's partitions, by index.
	Partitions []PartitionInfo `json:"partitions"`
	// ReplicationFactor is how many replicas each partition has.
	ReplicationFactor int `json:"replication_factor"`
	// Configs are topic configs set explicitly (Kafka names).
	Configs map[string]string `json:"configs,omitempty"`
	// ID is the topic id (hex, 16 bytes) every node creates the topic's
	// logs with, so clients may address it by id anywhere; empty for
	// topics committed before ids were.
	ID string `json:"id,omitempty"`
}

// Metadata is the cluster metadata the controller replicates.
type Metadata struct {
	// Nodes by id.
	Nodes map[int32]NodeInfo `json:"nodes"`
	// Topics by name.
	Topics map[string]TopicInfo `json:"topics"`
	// Deleted are tombstones of deleted topics, by name, with their order of
	// deletion (metadata_topics.go).
	Deleted map[string]uint64 `json:"deleted,omitempty"`
	// ProducerIDsEnd is one past the last producer id handed out in the
	// cell (producer_ids.go).
	ProducerIDsEnd int64 `json:"producer_ids_end,omitempty"`
	// Removed are the node ids removed from the cell for good (remove_node,
	// metadata_nodes.go), with the unix time of their removal.
	Removed map[int32]int64 `json:"removed,omitempty"`
	// Fenced are the registered nodes the controller stopped hearing from
	// (fence_node, liveness.go), with the unix time in ms of their fencing:
	// they lead nothing and are never elected until unfenced.
	Fenced map[int32]int64 `json:"fenced,omitempty"`
	// UncleanElections counts leaders elected outside the ISR (topics with
	// unclean.leader.election.enable), metadata_replication.go.
	UncleanElections int64 `json:"unclean_elections,omitempty"`
	// Incarnations are each node's process run as the controller last
	// admitted it (liveness.go): a node heard with another one restarted
	// and is fenced before it may lead or count as in sync again.
	Incarnations map[int32]string `json:"incarnations,omitempty"`
	// Services are the owners of the cell's singleton services (the sync
	// link of a site, each plugin instance), by service name (services.go).
	Services map[string]ServiceOwner `json:"services,omitempty"`
}

// Command is one change to the metadata, one raft log entry.
type Command struct {
	// Op is register_node, create_topic, delete_topic, create_partitions,
	// allocate_producer_ids, change_isr, fence_node or unfence_node.
	Op string `json:"op"`
	// Node is the node registered.
	Node *NodeInfo `json:"node,omitempty"`
	// Topic names the topic created or deleted.
	Topic string `json:"topic,omitempty"`
	// TopicInfo is the topic created, its assignment already computed.
	TopicInfo *TopicInfo `json:"topic_info,omitempty"`
	// IDs is the producer id block allocated (producer_ids.go).
	IDs *IDBlock `json:"ids,omitempty"`
	// Partition, Leader, LeaderEpoch and ISR are a change_isr's
	// (metadata_replication.go): the leader's view it changes from, the ISR
	// it sets.
	Partition   int32   `json:"partition,omitempty"`
	Leader      int32   `json:"leader,omitempty"`
	LeaderEpoch int32   `json:"leader_epoch,omitempty"`
	ISR         []int32 `json:"isr,omitempty"`
	// NodeID is the node fenced or unfenced (fence_node, unfence_node).
	NodeID int32 `json:"node_id,omitempty"`
	// At is when the command was proposed (unix ms), for fence_node.
	At int64 `json:"at,omitempty"`
	// Replicas is a reassign_partition's target (nil: cancel).
	Replicas []int32 `json:"replicas,omitempty"`
	// Incarnation is the process run of the node an unfence_node admits
	// (liveness.go): recorded so a restart is noticed.
	Incarnation string `json:"incarnation,omitempty"`
	// Service and Epoch are a claim_service's or release_service's
	// (services.go): the service, and the owner epoch a release ends.
	Service string `json:"service,omitempty"`
	Epoch   int64  `json:"epoch,omitempty"`
}

// ErrTopicExists and ErrUnknownTopic are results of topic commands.
var (
	ErrTopicExists  = fmt.Errorf("topic already exists")
	ErrUnknownTopic = fmt.Errorf("unknown topic")
)

// fsm is the controller's raft state machine: a pure function of the commands
// applied, snapshotted as JSON.
type fsm struct {
	mu sync.RWMutex
	md Metadata
}

func newFSM() *fsm {
	return &fsm{md: Metadata{Nodes: map[int32]NodeInfo{}, Topics: map[string]TopicInfo{}}}
}

// apply changes the metadata by one command and returns an error result.
func (f *fsm) apply(c Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Op {
	case "register_node":
		if c.Node == nil {
			return fmt.Errorf("register_node without node")
		}
		f.md.Nodes[c.Node.ID] = *c.Node
	case "create_topic":
		if c.TopicInfo == nil || c.Topic == "" {
			return fmt.Errorf("create_topic without topic")
		}
		if _, ok := f.md.Topics[c.Topic]; ok {
			return ErrTopicExists
		}
		f.admitNew(c.Topic, *c.TopicInfo, 0)
		f.md.Topics[c.Topic] = *c.TopicInfo
		delete(f.md.Deleted, c.Topic)
	case "delete_topic":
		if _, ok := f.md.Topics[c.Topic]; !ok {
			return ErrUnknownTopic
		}
		delete(f.md.Topics, c.Topic)
		f.tombstone(c.Topic)
	case opClaimService, opReleaseService:
		return f.applyService(c)
	case opChangeISR, opFenceNode, opUnfenceNode, opReassign:
		_, err := f.applyReplication(c)
		return err
	default:
		return f.applyTopicOp(c)
	}
	return nil
}

// Apply is raft.FSM's: decode and apply one log entry; the result is the
// command's error (nil on success).
func (f *fsm) Apply(l *raft.Log) any {
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("controller: undecodable command at index %d: %w", l.Index, err)
	}
	return f.apply(c)
}

// Snapshot is raft.FSM's: a deep copy of the metadata, written as JSON.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := json.Marshal(f.md)
	if err != nil {
		return nil, fmt.Errorf("controller snapshot: %w", err)
	}
	return jsonSnapshot(data), nil
}

// Restore is raft.FSM's: replace the metadata by a snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	md := Metadata{}
	if err := json.NewDecoder(rc).Decode(&md); err != nil {
		return fmt.Errorf("controller restore: %w", err)
	}
	if md.Nodes == nil {
		md.Nodes = map[int32]NodeInfo{}
	}
	if md.Topics == nil {
		md.Topics = map[string]TopicInfo{}
	}
	f.mu.Lock()
	f.md = md
	f.mu.Unlock()
	return nil
}

// view returns a deep copy of the metadata.
func (f *fsm) view() Metadata {
	f.mu.RLock()
	defer f.mu.RUnlock()
	md := Metadata{Nodes: maps.Clone(f.md.Nodes), Topics: make(map[string]TopicInfo, len(f.md.Topics)), Deleted: maps.Clone(f.md.Deleted),
		ProducerIDsEnd: f.md.ProducerIDsEnd, Removed: maps.Clone(f.md.Removed), Fenced: maps.Clone(f.md.Fenced),
		UncleanElections: f.md.UncleanElections, Incarnations: maps.Clone(f.md.Incarnations),
		Services: maps.Clone(f.md.Services)}
	for n, t := range f.md.Topics {
		t.Partitions = slices.Clone(t.Partitions)
		for i := range t.Partitions {
			t.Partitions[i].Replicas = slices.Clone(t.Partitions[i].Replicas)
			t.Partitions[i].ISR = slices.Clone(t.Partitions[i].ISR)
			t.Partitions[i].Target = slices.Clone(t.Partitions[i].Target)
			t.Partitions[i].Adding = slices.Clone(t.Partitions[i].Adding)
		}
		t.Configs = maps.Clone(t.Configs)
		md.Topics[n] = t
	}
	return md
}

type jsonSnapshot []byte

func (s jsonSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("controller snapshot: %w", err)
	}
	return sink.Close()
}

func (s jsonSnapshot) Release() {}

// assign spreads partitions over nodes round robin: partition p's replicas are
// rf consecutive nodes starting at p (offset by start), so leaders (the first
// replica) spread evenly. It fails when rf exceeds the node count.
func assign(nodes []int32, partitions int32, rf int, start int) (TopicInfo, error) {
	if rf < 1 || rf > len(nodes) {
		return TopicInfo{}, fmt.Errorf("replication factor %d is out of range (allowed: 1..%d, the nodes of the cell)", rf, len(nodes))
	}
	ids := slices.Clone(nodes)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	t := TopicInfo{ReplicationFactor: rf, Partitions: make([]PartitionInfo, partitions)}
	for p := range int(partitions) {
		reps := make([]int32, rf)
		for r := range rf {
			reps[r] = ids[(start+p+r)%len(ids)]
		}
		t.Partitions[p] = PartitionInfo{Replicas: reps, Leader: reps[0], ISR: slices.Clone(reps)}
	}
	return t, nil
}
