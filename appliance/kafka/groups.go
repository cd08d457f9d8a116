package kafka

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

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

// groupSet holds a node's group coordinators: one per partition of
// __consumer_offsets it coordinates (partition 0 only on a single node; in a
// cell each partition this node leads, opened on first use in the leader
// epoch it leads, replaying the partition then, and closed when the node
// stops leading it). So a group moves with its partition's leadership and
// its new coordinator reloads it from the replicated log, as in Kafka.
type groupSet struct {
	mu     sync.Mutex
	open   map[int32]*groupCoord
	closed bool
	swept  time.Time // last sweep of coordinators this node no longer leads
}

// groupCoord is one open coordinator and the leader epoch it was loaded in.
type groupCoord struct {
	gc    *group.Coordinator
	epoch int32
}

// groupSweepEvery bounds how often coordinators of partitions this node no
// longer leads are looked for and closed.
const groupSweepEvery = time.Second

// errCoordinatorLoadInProgress is COORDINATOR_LOAD_IN_PROGRESS: the metadata
// names this node but it has not taken the partition over yet; clients retry.
const errCoordinatorLoadInProgress int16 = 14

// groupPartition is the partition of __consumer_offsets holding group g: 0
// on a single node, Kafka's partitionFor over the cell's partitions in a
// cell (-1 while the cell has none).
func (s *Server) groupPartition(g string) int32 {
	if s.cfg.Cell == nil {
		return 0
	}
	parts, ok := s.cfg.Cell.Partitions(group.Topic)
	if !ok || len(parts) == 0 {
		return -1
	}
	return coordinatorPartition(g, int32(len(parts)))
}

// groupCoordinator returns the coordinator of partition p of
// __consumer_offsets, opening it when this node coordinates p and none is
// open for the current leader epoch. The error code is for the client:
// NOT_COORDINATOR (another node leads p), COORDINATOR_LOAD_IN_PROGRESS (this
// node is named but has not taken p over), COORDINATOR_NOT_AVAILABLE.
func (s *Server) groupCoordinator(p int32) (*group.Coordinator, int16) {
	epoch, code := s.groupLeadership(p)
	if code != errNone {
		return nil, code
	}
	gs := &s.groupSet
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.closed {
		return nil, errCoordinatorNotAvailable
	}
	s.sweepGroups()
	if e := gs.open[p]; e != nil {
		select {
		case <-e.gc.Done():
		default:
			if e.epoch == epoch {
				return e.gc, errNone
			}
		}
		e.gc.Close()
		delete(gs.open, p)
	}
	gc, err := group.Open(s.b, group.Options{Config: s.cfg.State.Groups, Logger: s.log, Partition: p, External: s.cfg.Cell != nil})
	if err != nil {
		s.log.Warn("consumer group coordinator unavailable", "partition", p, "err", err)
		return nil, errCoordinatorNotAvailable
	}
	if gs.open == nil {
		gs.open = map[int32]*groupCoord{}
	}
	gs.open[p] = &groupCoord{gc: gc, epoch: epoch}
	return gc, errNone
}

// groupLeadership checks that this node coordinates partition p of
// __consumer_offsets now and returns the leader epoch it does so in (0 on a
// single node).
func (s *Server) groupLeadership(p int32) (int32, int16) {
	if s.cfg.Cell == nil {
		return 0, errNone
	}
	parts, ok := s.cfg.Cell.Partitions(group.Topic)
	if !ok || p < 0 || int(p) >= len(parts) {
		return 0, errCoordinatorNotAvailable
	}
	cp := parts[p]
	if cp.Leader != s.cfg.Cell.NodeID() {
		return 0, errNotCoordinator
	}
	// A replicated partition is coordinated once the broker leads it in
	// this epoch (the replica manager took it over): before, writes would
	// be refused and the log may still be catching up.
	if rs, ok := s.b.ReplicaState(group.Topic, p); ok && (!rs.Leads() || rs.LeaderEpoch != cp.LeaderEpoch) {
		return 0, errCoordinatorLoadInProgress
	}
	return cp.LeaderEpoch, errNone
}

// sweepGroups closes the coordinators of partitions this node no longer
// leads in the epoch they were loaded in, at most every groupSweepEvery;
// called with gs.mu held.
func (s *Server) sweepGroups() {
	gs := &s.groupSet
	if s.cfg.Cell == nil || time.Since(gs.swept) < groupSweepEvery {
		return
	}
	gs.swept = time.Now()
	for p, e := range gs.open {
		if epoch, code := s.groupLeadership(p); code != errNone || epoch != e.epoch {
			e.gc.Close()
			delete(gs.open, p)
			s.log.Info("consumer group coordinator handed over", "partition", p, "epoch", e.epoch)
		}
	}
}

// openGroups returns the coordinators open now, after a sweep; with load it
// first opens one for every partition this node coordinates (ListGroups
// lists every group the node coordinates, loaded or not).
func (s *Server) openGroups(load bool) []*group.Coordinator {
	if load {
		for _, p := range s.coordinatedGroupPartitions() {
			s.groupCoordinator(p)
		}
	}
	gs := &s.groupSet
	gs.mu.Lock()
	defer gs.mu.Unlock()
	s.sweepGroups()
	out := make([]*group.Coordinator, 0, len(gs.open))
	for _, p := range slices.Sorted(maps.Keys(gs.open)) {
		out = append(out, gs.open[p].gc)
	}
	return out
}

// coordinatedGroupPartitions lists the partitions of __consumer_offsets this
// node coordinates by the metadata: 0 on a single node.
func (s *Server) coordinatedGroupPartitions() []int32 {
	if s.cfg.Cell == nil {
		return []int32{0}
	}
	parts, _ := s.cfg.Cell.Partitions(group.Topic)
	var out []int32
	for i, cp := range parts {
		if cp.Leader == s.cfg.Cell.NodeID() {
			out = append(out, int32(i))
		}
	}
	return out
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
func (s *Server) closeGroups() {
	gs := &s.groupSet
	gs.mu.Lock()
	open := gs.open
	gs.open, gs.closed = nil, true
	gs.mu.Unlock()
	for _, e := range open {
		e.gc.Close()
	}
}

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
