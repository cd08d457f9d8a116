package kafka

import (
	"context"
	"math"
	"unicode/utf16"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
	"github.com/katka-io/katka/appliance/txn"
)

// Kafka error codes of a cell.
const (
	errNotCoordinator int16 = 16
	errNotController  int16 = 41
)

// internalTopicPartitions is the partition count of the cell's placement of
// __consumer_offsets and __transaction_state: Kafka's defaults of
// offsets.topic.num.partitions and transaction.state.log.num.partitions.
const internalTopicPartitions = 50

// newRedirects is katka_kafka_cell_redirects_total: requests a node of a cell
// answered with NOT_LEADER_OR_FOLLOWER or NOT_COORDINATOR (clients with stale
// metadata, or following a leader change), per partition or group.
func newRedirects() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "katka_kafka_cell_redirects_total",
		Help: "Partitions and groups of Kafka requests this node of a cell sent elsewhere: NOT_LEADER_OR_FOLLOWER (error not_leader) or NOT_COORDINATOR (error not_coordinator).",
	}, []string{"error"})
}

// cellLeaders returns the controller's partitions of a topic for the leader
// checks of a request, nil when this node serves every partition of it: no
// cell, an internal topic (written in process by its coordinators, never by clients), or a topic the
// controller does not know yet (created locally, about to be proposed).
func (s *Server) cellLeaders(topic string) []CellPartition {
	if s.cfg.Cell == nil || broker.InternalTopic(topic) {
		return nil
	}
	parts, ok := s.cfg.Cell.Partitions(topic)
	if !ok {
		return nil
	}
	return parts
}

// notLeader returns NOT_LEADER_OR_FOLLOWER, and the partition's leadership,
// when another node of the cell leads partition p (parts from cellLeaders).
// Kafka answers so to Produce, Fetch, ListOffsets and DeleteRecords, and
// clients refresh their metadata and go to the leader.
func (s *Server) notLeader(topic string, parts []CellPartition, p int32) (CellPartition, error) {
	cp := CellPartition{Leader: -1, LeaderEpoch: -1}
	if p >= 0 && int(p) < len(parts) {
		cp = parts[p]
		if cp.Leader != s.cfg.Cell.NodeID() {
			s.redirects.WithLabelValues("not_leader").Inc()
			return cp, codeErrorf(errNotLeaderOrFollower, "this is node %d; partition %d of %s is led by node %d (leader epoch %d)",
				s.cfg.Cell.NodeID(), p, topic, cp.Leader, cp.LeaderEpoch)
		}
	}
	// The metadata says this node leads, or does not know the topic (yet):
	// served only once the broker holds the leadership too (a replicated
	// partition after the replica manager took it in this epoch; in a cell
	// every partition is gated until the cell said who leads it), so a
	// restarted node replaying the cell's metadata never serves from a log
	// it no longer leads.
	if rs, ok := s.b.ReplicaState(topic, p); ok && (!rs.Leads() || (len(cp.Replicas) > 1 && rs.LeaderEpoch != cp.LeaderEpoch)) {
		s.redirects.WithLabelValues("not_leader").Inc()
		return cp, codeErrorf(errNotLeaderOrFollower, "this is node %d; it does not lead partition %d of %s yet (leader epoch %d): retry",
			s.cfg.Cell.NodeID(), p, topic, cp.LeaderEpoch)
	}
	return CellPartition{}, nil
}

// cellBroker finds a node of the cell among its registered brokers.
func (s *Server) cellBroker(id int32) (CellBroker, bool) {
	for _, b := range s.cfg.Cell.Brokers() {
		if b.NodeID == id {
			return b, true
		}
	}
	return CellBroker{}, false
}

// leaderEndpoints lists the brokers named as current leaders, for the
// NodeEndpoints of Produce v10+ and Fetch v16+ (KIP-951).
func (s *Server) leaderEndpoints(ids map[int32]bool) []CellBroker {
	var out []CellBroker
	for id := range ids {
		if b, ok := s.cellBroker(id); ok {
			out = append(out, b)
		}
	}
	return out
}

// coordinatorTopic is the internal topic whose partition leaders coordinate
// groups (key type 0) and transactional ids (1).
func coordinatorTopic(keyType int8) string {
	if keyType == 1 {
		return txn.Topic
	}
	return group.Topic
}

// coordinatorPartition is Kafka's partitionFor: abs(key.hashCode()) % n,
// with Java's String.hashCode over UTF-16 code units, so a group maps to the
// partition a Kafka cluster of n offsets partitions would give it.
func coordinatorPartition(key string, n int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(key)) {
		h = 31*h + int32(u)
	}
	if h == math.MinInt32 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % n
}

// cellCoordinator returns the node coordinating key in a cell: the leader of
// the key's partition of the internal topic, whose placement the controller
// commits on first use (as Kafka creates __consumer_offsets on the first
// FindCoordinator).
func (s *Server) cellCoordinator(ctx context.Context, keyType int8, key string) (CellBroker, error) {
	parts, err := s.cfg.Cell.EnsureTopic(ctx, coordinatorTopic(keyType), internalTopicPartitions)
	if err != nil || len(parts) == 0 {
		return CellBroker{}, codeErrorf(errCoordinatorNotAvailable, "the cell has no placement of %s yet: %v", coordinatorTopic(keyType), err)
	}
	leader := parts[coordinatorPartition(key, int32(len(parts)))].Leader
	b, ok := s.cellBroker(leader)
	if !ok {
		return CellBroker{}, codeErrorf(errCoordinatorNotAvailable, "coordinator node %d is not registered", leader)
	}
	return b, nil
}

// produceEndpoints fills a Produce v10+ answer's NodeEndpoints.
func (s *Server) produceEndpoints(resp *kmsg.ProduceResponse, ids map[int32]bool) {
	resp.Brokers = endpointsOf(s.leaderEndpoints(ids), func(b CellBroker, rack *string) kmsg.ProduceResponseBroker {
		return kmsg.ProduceResponseBroker{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: rack}
	})
}

// fetchEndpoints fills a Fetch v16+ answer's NodeEndpoints.
func (s *Server) fetchEndpoints(resp *kmsg.FetchResponse, ids map[int32]bool) {
	resp.Brokers = endpointsOf(s.leaderEndpoints(ids), func(b CellBroker, rack *string) kmsg.FetchResponseBroker {
		return kmsg.FetchResponseBroker{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: rack}
	})
}

// endpointsOf turns brokers into one response type's endpoints (a rack only
// when the broker has one).
func endpointsOf[T any](bs []CellBroker, mk func(CellBroker, *string) T) []T {
	out := make([]T, 0, len(bs))
	for _, b := range bs {
		var rack *string
		if b.Rack != "" {
			r := b.Rack
			rack = &r
		}
		out = append(out, mk(b, rack))
	}
	return out
}

// groupFor returns the group coordinator for group g, or the error to answer:
// NOT_COORDINATOR when another node of the cell coordinates g,
// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE while it cannot
// be served here yet (groups.go).
func (s *Server) groupFor(g string) (*group.Coordinator, int16) {
	p := s.groupPartition(g)
	if p < 0 {
		return nil, errCoordinatorNotAvailable
	}
	gc, code := s.groupCoordinator(p)
	if code == errNotCoordinator {
		s.redirects.WithLabelValues("not_coordinator").Inc()
	}
	return gc, code
}
