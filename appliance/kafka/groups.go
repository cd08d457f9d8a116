package kafka

import (
	"context"
	"net"
	"time"

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

// groups returns the server's group coordinator, opening it (and replaying
// __consumer_offsets) on first use. A coordinator whose broker was closed
// stops by itself and is replaced on the next call.
func (s *Server) groups() (*group.Coordinator, error) {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	if s.gc != nil {
		select {
		case <-s.gc.Done():
			s.gc = nil
			if _, err := s.b.PartitionInfo(group.Topic, 0); err != nil {
				return nil, err
			}
		default:
			return s.gc, nil
		}
	}
	if s.gclosed {
		return nil, group.ErrClosed
	}
	gc, err := group.Open(s.b, group.Options{Config: s.cfg.State.Groups, Logger: s.log})
	if err != nil {
		s.log.Error("consumer group coordinator unavailable", "err", err)
		return nil, err
	}
	s.gc = gc
	return gc, nil
}

// closeGroups stops the server's group coordinator, if one was started; no
// new one is opened after it.
func (s *Server) closeGroups() {
	s.gmu.Lock()
	gc := s.gc
	s.gc, s.gclosed = nil, true
	s.gmu.Unlock()
	if gc != nil {
		gc.Close()
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

// Groups returns the server's group coordinator (opened on first use), for
// in-process members such as the HTTP API's REST proxy consumers.
func (s *Server) Groups() (*group.Coordinator, error) { return s.groups() }
