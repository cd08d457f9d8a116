package kafka

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/group"
)

// groupHandlers returns the consumer-group API handlers (FindCoordinator,
// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ...),
// added to the handler table at init. The coordinator itself is the group
// package; these files translate requests and wait for parked answers.
func groupHandlers() map[int16]handler {
	return map[int16]handler{
		8:  {0, 9, (*Server).handleOffsetCommit},
		9:  {0, 8, (*Server).handleOffsetFetch},
		10: {0, 4, (*Server).handleFindCoordinator},
		11: {0, 9, (*Server).handleJoinGroup},
		12: {0, 4, (*Server).handleHeartbeat},
		13: {0, 5, (*Server).handleLeaveGroup},
		14: {0, 5, (*Server).handleSyncGroup},
		15: {0, 5, (*Server).handleDescribeGroups},
		16: {0, 5, (*Server).handleListGroups},
		42: {0, 2, (*Server).handleDeleteGroups},
		47: {0, 0, (*Server).handleOffsetDelete},
		68: {0, 1, (*Server).handleConsumerGroupHeartbeat},
		69: {0, 1, (*Server).handleConsumerGroupDescribe},
	}
}

// StateConfig bounds the state the Kafka server keeps for its clients:
// consumer groups (the coordinator's limits and timings: see group.Config,
// whose zero fields take Kafka's defaults) and idempotent producer ids.
type StateConfig struct {
	// Groups configures the group coordinator: InitialRebalanceDelay (0 is
	// Kafka's 3 s, negative none), OffsetsRetention, MaxGroups, MaxMembers.
	Groups group.Config
	// ProducerIDExpiration forgets the state of a producer id idle this long
	// (producer.id.expiration.ms); 0 is 24 h.
	ProducerIDExpiration time.Duration
	// MaxProducerIDs bounds the producer ids with state; the longest idle is
	// forgotten first. 0 is 10,000.
	MaxProducerIDs int
}

// groupPartition is the partition of __consumer_offsets holding group g
// (coordset.go).
func (s *Server) groupPartition(g string) int32 { return s.keyPartition(group.Topic, g) }

// groupCoordinator returns the coordinator of partition p of
// __consumer_offsets, opening (replaying) it when this node coordinates p
// and none is open for the current leader epoch (coordset.go), or the error
// code for the client.
func (s *Server) groupCoordinator(p int32) (*group.Coordinator, int16) {
	return s.groupSet.get(s, p, s.openGroup)
}

// openGroup opens the group coordinator of partition p.
func (s *Server) openGroup(p int32) (*group.Coordinator, error) {
	return group.Open(s.b, group.Options{Config: s.cfg.State.Groups, Logger: s.log, Partition: p, External: s.cfg.Cell != nil})
}

// openGroups returns the group coordinators open now; with load it first
// opens one for every partition this node coordinates (ListGroups lists
// every group the node coordinates, loaded or not).
func (s *Server) openGroups(load bool) []*group.Coordinator {
	if load {
		return s.groupSet.all(s, s.openGroup)
	}
	return s.groupSet.all(s, nil)
}

// groupsOf splits groups by the coordinator holding each; a group this node
// cannot serve gets its error code in failed.
func (s *Server) groupsOf(groups []string) (split map[*group.Coordinator][]string, failed map[string]int16) {
	split, failed = map[*group.Coordinator][]string{}, map[string]int16{}
	for _, g := range groups {
		gc, code := s.groupFor(g)
		if code != errNone {
			failed[g] = code
			continue
		}
		split[gc] = append(split[gc], g)
	}
	return split, failed
}

// closeGroups stops the server's group coordinators; none is opened after.
func (s *Server) closeGroups() { s.groupSet.closeAll() }

// clientHost is the address the client connected from, for DescribeGroups.
func clientHost(c *conn) string {
	if c == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(c.remote); err == nil {
		return "/" + h
	}
	return c.remote
}

// clientID is the request header's client id: member ids start with it, as in Kafka.
func clientID(c *conn) string { return c.clientID }

// groupTopics is the broker's topics as the KIP-848 coordinator sees them
// (names, ids, partition counts). As in Kafka, a subscription regex matches
// internal topics too.
func (s *Server) groupTopics() group.Topics {
	ts := s.b.Topics()
	out := make(group.Topics, len(ts))
	for _, t := range ts {
		out[t.Name] = group.TopicMeta{Name: t.Name, ID: t.ID, Partitions: t.Partitions}
	}
	return out
}

// errCoordinatorNotAvailable is COORDINATOR_NOT_AVAILABLE: clients retry.
const errCoordinatorNotAvailable int16 = 15

// GroupCoordinator returns the coordinator of group g on this node (opened
// on first use), for in-process members such as the HTTP API's REST proxy
// consumers and console views; on a single node every group has the one
// coordinator. In a cell it first commits the placement of
// __consumer_offsets when there is none yet (as FindCoordinator does, so
// REST consumers work in a cell no Kafka client used yet, waiting at most
// groupPlacementTimeout for the controller). A group another node
// coordinates fails with a *NotCoordinatorError naming that node; a
// coordinator this node cannot serve yet fails with a retriable kerr error
// (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE) that errors.Is
// finds.
func (s *Server) GroupCoordinator(g string) (*group.Coordinator, error) {
	if s.cfg.Cell != nil && s.groupPartition(g) < 0 {
		// No placement of __consumer_offsets yet (no Kafka client asked
		// FindCoordinator): commit one, as FindCoordinator does.
		ctx, cancel := context.WithTimeout(context.Background(), groupPlacementTimeout)
		_, err := s.cellCoordinator(ctx, 0, g)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("group %s: %w: %v", g, kerr.CoordinatorNotAvailable, err)
		}
	}
	gc, code := s.groupFor(g)
	switch code {
	case errNone:
		return gc, nil
	case errNotCoordinator:
		return nil, s.notCoordinatorError(g)
	}
	return nil, fmt.Errorf("group %s: %w", g, kerr.ErrorForCode(code))
}

// Coordinators returns every group coordinator this node runs, after
// opening one for each partition of __consumer_offsets it coordinates (as
// ListGroups does): the one coordinator on a single node, which fails when it
// cannot open; in a cell the coordinators of the partitions this node leads,
// none when it leads none. A listing of the node's groups merges them.
func (s *Server) Coordinators() ([]*group.Coordinator, error) {
	gcs := s.openGroups(true)
	if len(gcs) == 0 && s.cfg.Cell == nil {
		return nil, fmt.Errorf("consumer groups: %w", kerr.CoordinatorNotAvailable)
	}
	return gcs, nil
}

// groupPlacementTimeout bounds GroupCoordinator's wait for the controller
// to place __consumer_offsets.
const groupPlacementTimeout = 10 * time.Second

// NotCoordinatorError is GroupCoordinator's error for a group another node
// of the cell coordinates: NOT_COORDINATOR (errors.Is kerr.NotCoordinator),
// with the node the controller's placement names, as FindCoordinator would.
type NotCoordinatorError struct {
	// Group is the group asked for.
	Group string
	// NodeID is the coordinating node's id, -1 when the placement names
	// none (yet).
	NodeID int32
	// Addr is the node's advertised Kafka address (host:port), empty when
	// the node is not registered.
	Addr string
}

// Error names the group and its coordinating node.
func (e *NotCoordinatorError) Error() string {
	switch {
	case e.NodeID < 0:
		return fmt.Sprintf("group %s: no node of the cell coordinates it yet", e.Group)
	case e.Addr == "":
		return fmt.Sprintf("group %s is coordinated by node %d of the cell, not this node", e.Group, e.NodeID)
	}
	return fmt.Sprintf("group %s is coordinated by node %d of the cell (kafka %s), not this node", e.Group, e.NodeID, e.Addr)
}

// Unwrap is kerr.NotCoordinator.
func (e *NotCoordinatorError) Unwrap() error { return kerr.NotCoordinator }

// CoordinatorNode is the coordinating node's id and Kafka address, for
// callers that do not import this package (the HTTP API).
func (e *NotCoordinatorError) CoordinatorNode() (int32, string) { return e.NodeID, e.Addr }

// notCoordinatorError names the node coordinating g by the controller's
// placement now (it may have moved since groupFor looked: a hint).
func (s *Server) notCoordinatorError(g string) *NotCoordinatorError {
	e := &NotCoordinatorError{Group: g, NodeID: -1}
	if s.cfg.Cell == nil {
		return e
	}
	parts, _ := s.cfg.Cell.Partitions(group.Topic)
	p := s.groupPartition(g)
	if p < 0 || int(p) >= len(parts) {
		return e
	}
	e.NodeID = parts[p].Leader
	if b, ok := s.cellBroker(e.NodeID); ok {
		e.Addr = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	return e
}

// eachCoordinator runs one batched group request on this node's
// coordinators: do gets each coordinator's share of groups (the request's
// groups, split by the coordinator holding them); fail gets every group no
// coordinator here could answer, with its error code (NOT_COORDINATOR in a
// cell for another node's groups).
func (s *Server) eachCoordinator(groups []string, do func(gc *group.Coordinator, share []string) error, fail func(g string, code int16)) {
	split, failed := s.groupsOf(groups)
	for gc, share := range split {
		if err := do(gc, share); err != nil {
			for _, g := range share {
				failed[g] = errCoordinatorNotAvailable
			}
		}
	}
	for _, g := range groups {
		if code, ok := failed[g]; ok {
			fail(g, code)
		}
	}
}

// eachAuthorizedCoordinator is eachCoordinator for the groups the client
// may op on; the others get GROUP_AUTHORIZATION_FAILED.
func (s *Server) eachAuthorizedCoordinator(ctx context.Context, c *conn, groups []string, op auth.Operation, do func(gc *group.Coordinator, share []string) error, fail func(g string, code int16)) {
	groups, no := s.splitGroups(ctx, c, groups, op)
	s.eachCoordinator(groups, do, fail)
	for _, g := range no {
		fail(g, errGroupAuthorizationFailed)
	}
}
