package kafka

import (
	"context"
	"net"
	"sync"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
)

// groupHandlers returns the consumer-group API handlers (FindCoordinator,
// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ...),
// added to the handler table at init. The coordinator itself is the group
// package; these files translate requests and wait for parked answers.
func groupHandlers() map[int16]handler {
	return map[int16]handler{
		8:  {0, 8, (*Server).handleOffsetCommit},
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
	}
}

// coordinators holds one group coordinator per broker, created on first use
// (or by StartGroups), because the Server has no field for it yet.
var coordinators sync.Map // *broker.Broker -> *coordinatorEntry

type coordinatorEntry struct {
	once sync.Once
	c    *group.Coordinator
	err  error
}

// groups returns the broker's group coordinator, opening it (and replaying
// __consumer_offsets) on first use. A coordinator whose broker was closed
// stops by itself and is replaced on the next call.
func (s *Server) groups() (*group.Coordinator, error) {
	for {
		v, _ := coordinators.LoadOrStore(s.b, &coordinatorEntry{})
		e := v.(*coordinatorEntry)
		e.once.Do(func() {
			e.c, e.err = group.Open(s.b, group.Options{Logger: s.log})
			if e.err != nil {
				s.log.Error("consumer group coordinator unavailable", "err", e.err)
			}
		})
		if e.err != nil {
			coordinators.CompareAndDelete(s.b, e)
			return nil, e.err
		}
		select {
		case <-e.c.Done():
			coordinators.CompareAndDelete(s.b, e)
			if _, err := s.b.PartitionInfo(group.Topic, 0); err != nil {
				return nil, err
			}
			continue
		default:
			return e.c, nil
		}
	}
}

// StartGroups opens the group coordinator of s's broker now, so
// __consumer_offsets is replayed at start rather than at the first request.
func StartGroups(s *Server) error {
	_, err := s.groups()
	return err
}

// CloseGroups stops the group coordinator of b, if one was started.
func CloseGroups(b *broker.Broker) {
	if v, ok := coordinators.LoadAndDelete(b); ok {
		e := v.(*coordinatorEntry)
		e.once.Do(func() { e.err = group.ErrClosed })
		if e.c != nil {
			e.c.Close()
		}
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

// groupsFor returns the coordinator, or false when it cannot be opened (the
// broker is closing, __consumer_offsets cannot be read): callers then answer
// COORDINATOR_NOT_AVAILABLE, which clients retry.
func (s *Server) groupsFor(_ context.Context) (*group.Coordinator, bool) {
	gc, err := s.groups()
	if err != nil {
		return nil, false
	}
	return gc, true
}

// errCoordinatorNotAvailable is COORDINATOR_NOT_AVAILABLE: clients retry.
const errCoordinatorNotAvailable int16 = 15
