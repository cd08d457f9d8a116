package kafka

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// coordSet holds a node's coordinators of one kind: group coordinators
// (one per partition of __consumer_offsets) or transaction coordinators
// (one per partition of __transaction_state). On a single node there is one,
// for partition 0. In a cell there is one per partition of the topic this
// node leads, opened on first use in the leader epoch it leads it in
// (replaying the partition then) and closed once the node no longer leads it
// in that epoch, so a coordinator moves with its partition's leadership and
// its new node reloads it from the replicated log, as in Kafka.
type coordSet[C coordinator] struct {
	topic string // the internal topic whose partitions the coordinators hold

	mu     sync.Mutex
	open   map[int32]*coordEntry[C]
	closed bool
	swept  time.Time // last sweep of coordinators this node no longer leads
}

// coordinator is what a coordSet needs of its coordinators.
type coordinator interface {
	Close() error
	// Done is closed when the coordinator stopped by itself (its broker
	// closed): it is then replaced.
	Done() <-chan struct{}
}

// coordEntry is one open coordinator and the leader epoch it was loaded in.
type coordEntry[C coordinator] struct {
	c     C
	epoch int32
}

// coordSweepEvery bounds how often coordinators of partitions this node no
// longer leads are looked for and closed.
const coordSweepEvery = time.Second

// errCoordinatorLoadInProgress is COORDINATOR_LOAD_IN_PROGRESS: the metadata
// names this node but it has not taken the partition over yet; clients retry.
const errCoordinatorLoadInProgress int16 = 14

// get returns the coordinator of partition p, opening it with open when
// this node coordinates p and none is open for the current leader epoch.
// The error code is for the client: NOT_COORDINATOR (another node leads p),
// COORDINATOR_LOAD_IN_PROGRESS (this node is named but has not taken p
// over), COORDINATOR_NOT_AVAILABLE.
func (cs *coordSet[C]) get(s *Server, p int32, open func(p int32) (C, error)) (C, int16) {
	var zero C
	epoch, code := s.coordLeadership(cs.topic, p)
	if code != errNone {
		return zero, code
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return zero, errCoordinatorNotAvailable
	}
	cs.sweep(s)
	if e := cs.open[p]; e != nil {
		select {
		case <-e.c.Done():
		default:
			if e.epoch == epoch {
				return e.c, errNone
			}
		}
		e.c.Close()
		delete(cs.open, p)
	}
	c, err := open(p)
	if err != nil {
		s.log.Warn("coordinator unavailable", "topic", cs.topic, "partition", p, "err", err)
		return zero, errCoordinatorNotAvailable
	}
	if cs.open == nil {
		cs.open = map[int32]*coordEntry[C]{}
	}
	cs.open[p] = &coordEntry[C]{c: c, epoch: epoch}
	return c, errNone
}

// sweep closes the coordinators of partitions this node no longer leads in
// the epoch they were loaded in, at most every coordSweepEvery; called with
// cs.mu held.
func (cs *coordSet[C]) sweep(s *Server) {
	if s.cfg.Cell == nil || time.Since(cs.swept) < coordSweepEvery {
		return
	}
	cs.swept = time.Now()
	for p, e := range cs.open {
		if epoch, code := s.coordLeadership(cs.topic, p); code != errNone || epoch != e.epoch {
			e.c.Close()
			delete(cs.open, p)
			s.log.Info("coordinator handed over", "topic", cs.topic, "partition", p, "epoch", e.epoch)
		}
	}
}

// all returns the coordinators open now, after a sweep; with open set it
// first opens one for every partition this node coordinates (a listing
// covers every group or transaction the node coordinates, loaded or not).
func (cs *coordSet[C]) all(s *Server, open func(p int32) (C, error)) []C {
	if open != nil {
		for _, p := range s.coordinatedPartitions(cs.topic) {
			cs.get(s, p, open)
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.sweep(s)
	out := make([]C, 0, len(cs.open))
	for _, p := range slices.Sorted(maps.Keys(cs.open)) {
		out = append(out, cs.open[p].c)
	}
	return out
}

// closeAll stops every coordinator; none is opened after.
func (cs *coordSet[C]) closeAll() {
	cs.mu.Lock()
	open := cs.open
	cs.open, cs.closed = nil, true
	cs.mu.Unlock()
	for _, e := range open {
		e.c.Close()
	}
}

// coordLeadership checks that this node coordinates partition p of an
// internal topic now and returns the leader epoch it does so in (0 on a
// single node).
func (s *Server) coordLeadership(topic string, p int32) (int32, int16) {
	if s.cfg.Cell == nil {
		return 0, errNone
	}
	parts, ok := s.cfg.Cell.Partitions(topic)
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
	if rs, ok := s.b.ReplicaState(topic, p); ok && (!rs.Leads() || rs.LeaderEpoch != cp.LeaderEpoch) {
		return 0, errCoordinatorLoadInProgress
	}
	return cp.LeaderEpoch, errNone
}

// coordinatedPartitions lists the partitions of an internal topic this node
// coordinates by the metadata: 0 on a single node.
func (s *Server) coordinatedPartitions(topic string) []int32 {
	if s.cfg.Cell == nil {
		return []int32{0}
	}
	parts, _ := s.cfg.Cell.Partitions(topic)
	var out []int32
	for i, cp := range parts {
		if cp.Leader == s.cfg.Cell.NodeID() {
			out = append(out, int32(i))
		}
	}
	return out
}

// keyPartition is the partition of an internal topic holding key (a group
// or a transactional id): 0 on a single node, Kafka's partitionFor over the
// cell's partitions in a cell (-1 while the cell has none).
func (s *Server) keyPartition(topic, key string) int32 {
	if s.cfg.Cell == nil {
		return 0
	}
	parts, ok := s.cfg.Cell.Partitions(topic)
	if !ok || len(parts) == 0 {
		return -1
	}
	return coordinatorPartition(key, int32(len(parts)))
}
