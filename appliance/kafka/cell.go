package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// errLeaderNotAvailable is Kafka's LEADER_NOT_AVAILABLE (5): retriable.
const errLeaderNotAvailable int16 = 5

// CellView is the cell (appliance/cluster) as the Kafka layer sees it. With a
// CellView, Metadata lists every node of the cell as a broker and takes each
// cell topic's partition leaders from the controller, requests for a
// partition another node leads get NOT_LEADER_OR_FOLLOWER, FindCoordinator
// names the node leading the key's partition of the internal topic, and
// topic changes go through the controller; nil keeps katka the single
// broker 0. Errors of the methods that change topics carry the Kafka error
// to answer (a *kerr.Error in their chain).
type CellView interface {
	// NodeID is this node's broker id.
	NodeID() int32
	// ControllerID is the controller leader's node id, -1 when there is none.
	ControllerID() int32
	// ClusterID is the cell's cluster id, the same on every node.
	ClusterID() string
	// Brokers lists the cell's registered nodes.
	Brokers() []CellBroker
	// Partitions returns a cell topic's partitions, false when the
	// controller does not know the topic (yet).
	Partitions(topic string) ([]CellPartition, bool)
	// Topics lists the names of the controller's topics.
	Topics() []string
	// DefaultReplicationFactor is topics.default_replication_factor.
	DefaultReplicationFactor() int16
	// CreateTopic creates a topic through the controller, rf replicas per
	// partition and configs (Kafka names), and returns the committed
	// assignment; every node then creates its local logs. It fails when
	// the topic exists.
	CreateTopic(ctx context.Context, name string, partitions int32, rf int16, configs map[string]string) ([]CellPartition, error)
	// CreatePartitions grows a topic through the controller to count
	// partitions; every node then grows its local logs.
	CreatePartitions(ctx context.Context, name string, count int32) error
	// DeleteTopic deletes a topic through the controller; every node then
	// deletes its local logs.
	DeleteTopic(ctx context.Context, name string) error
	// EnsureTopic returns the placement of an internal topic (consumer
	// offsets, transaction state), committing one over the cell's nodes
	// with n partitions when the controller has none yet.
	EnsureTopic(ctx context.Context, name string, n int32) ([]CellPartition, error)
	// AllocateProducerIDs takes a block of n producer ids, [start, end),
	// from the controller for this node to hand out.
	AllocateProducerIDs(ctx context.Context, n int64) (start, end int64, err error)
	// PeerCall makes a call of kind on node id of the cell (mutual TLS), in
	// and out as JSON: the Kafka layer's calls between nodes for
	// transactions (txn_cell.go), served there by Server.HandlePeerCall.
	PeerCall(ctx context.Context, id int32, kind string, in, out any) error
	// ProducerIDIssued reports whether a producer id was handed out by any
	// node of the cell.
	ProducerIDIssued(ctx context.Context, id int64) bool
	// TopicID is the id the controller committed for a topic (false: the
	// topic is unknown, or was committed without one).
	TopicID(topic string) ([16]byte, bool)
	// Reassign moves a partition's replicas to replicas through the
	// controller (nil: cancel the move in flight); the move ends by itself
	// when the new replicas have caught up.
	Reassign(ctx context.Context, topic string, partition int32, replicas []int32) error
}

// cellAutoCreate auto-creates a topic in a cell: through the controller, so
// two nodes asked at once cannot create it twice. The answer is
// LEADER_NOT_AVAILABLE either way; the client asks again and finds it once
// the local logs exist.
func (s *Server) cellAutoCreate(ctx context.Context, name string) error {
	if _, err := s.cfg.Cell.CreateTopic(ctx, name, s.b.DefaultPartitions(), s.cfg.Cell.DefaultReplicationFactor(), nil); err != nil {
		s.log.Debug("kafka cell auto-create", "topic", name, "err", err)
	}
	return codeErrorf(errLeaderNotAvailable, "topic %s is being created in the cell", name)
}

// CellBroker is one node of the cell as a Kafka broker.
type CellBroker struct {
	NodeID int32
	Host   string
	Port   int32
	Rack   string
	// Fenced is true while the controller has the node fenced (it stopped
	// hearing from it): it leads nothing, and Metadata leaves it out.
	Fenced bool
}

// CellPartition is one partition's leadership in the cell.
type CellPartition struct {
	Leader      int32
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
	// Adding and Removing are the replicas a reassignment in flight adds
	// and takes away (both nil when none is).
	Adding, Removing []int32
}

// cellBrokers is the Metadata broker list of a cell: its live nodes, as
// Kafka lists only its unfenced brokers, so that clients stop dialing a node
// the cell has fenced (a dead one); DescribeCluster v2 asks for the fenced ones
// too (includeFenced). This node is listed with the address the client
// reached it on if it is not registered yet.
func (s *Server) cellBrokers(c *conn, includeFenced bool) []CellBroker {
	self := s.cfg.Cell.NodeID()
	var out []CellBroker
	found := false
	for _, b := range s.cfg.Cell.Brokers() {
		if b.Fenced && !includeFenced && b.NodeID != self {
			continue
		}
		found = found || b.NodeID == self
		out = append(out, b)
	}
	if !found {
		out = append(out, CellBroker{NodeID: self, Host: s.advHostFor(c), Port: s.advPortFor(c)})
	}
	return out
}

// metadataBrokers is the broker list of a Metadata response in a cell.
func (s *Server) metadataBrokers(c *conn) []kmsg.MetadataResponseBroker {
	var out []kmsg.MetadataResponseBroker
	for _, b := range s.cellBrokers(c, false) {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = b.NodeID, b.Host, b.Port
		if b.Rack != "" {
			rack := b.Rack
			mb.Rack = &rack
		}
		out = append(out, mb)
	}
	return out
}

// cellTopic fills a topic's partitions from the cell: the controller's
// partitions and leaders for a cell topic (also when this node's logs of it
// lag: a topic created or grown a moment ago); a topic the controller does not
// know yet answers LEADER_NOT_AVAILABLE, as Kafka does right after an
// auto-create, and the client asks again; katka's internal topics stay on
// this node.
func (s *Server) cellTopic(mt *kmsg.MetadataResponseTopic) {
	if mt.ErrorCode != errNone || mt.Topic == nil {
		return
	}
	self := s.cfg.Cell.NodeID()
	// The controller's topic id, when this node's logs carry it too (a
	// topic committed before ids were, or created here under another id, is
	// told without one: clients then address it by name, Produce/Fetch v12).
	mt.TopicID = [16]byte{}
	if id, ok := s.cfg.Cell.TopicID(*mt.Topic); ok {
		if info, err := s.b.Topic(*mt.Topic); err == nil && info.ID == id {
			mt.TopicID = id
		}
	}
	if mt.IsInternal {
		for i := range mt.Partitions {
			p := &mt.Partitions[i]
			p.Leader, p.Replicas, p.ISR = self, []int32{self}, []int32{self}
		}
		return
	}
	parts, ok := s.cfg.Cell.Partitions(*mt.Topic)
	if !ok {
		mt.ErrorCode = errLeaderNotAvailable
		mt.Partitions = nil
		return
	}
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, len(parts))
	for i, cp := range parts {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = int32(i)
		p.Leader, p.LeaderEpoch, p.Replicas, p.ISR = cp.Leader, cp.LeaderEpoch, cp.Replicas, cp.ISR
		p.OfflineReplicas = []int32{}
		if cp.Leader < 0 {
			// Offline: no in-sync replica is alive (Kafka's answer; clients retry).
			p.ErrorCode = errLeaderNotAvailable
		}
		mt.Partitions[i] = p
	}
}

// cellOnlyTopics lists the cell's topics this node has no logs of yet, for
// Metadata of all topics.
func (s *Server) cellOnlyTopics() []broker.TopicInfo {
	if s.cfg.Cell == nil {
		return nil
	}
	var out []broker.TopicInfo
	for _, name := range s.cfg.Cell.Topics() {
		if _, err := s.b.Topic(name); err != nil && !broker.InternalTopic(name) {
			if parts, ok := s.cfg.Cell.Partitions(name); ok {
				out = append(out, broker.TopicInfo{Name: name, Partitions: int32(len(parts))})
			}
		}
	}
	return out
}
