package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/group"
)

// Groups is where the HTTP API finds consumer groups: the Kafka listener's
// group coordinators on this node (kafka.Server). On a single node one
// coordinator holds every group; in a cell each node runs the coordinators
// of the __consumer_offsets partitions it leads, and a group is served by
// the node coordinating it.
type Groups interface {
	// GroupCoordinator returns the coordinator of group g on this node. A
	// group another node coordinates fails with an error that errors.Is
	// kerr.NotCoordinator and, when it knows the node, has a method
	// CoordinatorNode() (id int32, kafkaAddr string); a coordinator not
	// ready yet fails with a retriable kerr error.
	GroupCoordinator(g string) (*group.Coordinator, error)
	// Coordinators returns every coordinator this node runs (opening those
	// of the partitions it coordinates): the listings merge their groups,
	// as Kafka's ListGroups answers each broker's own. It fails when this
	// node cannot serve groups at all.
	Coordinators() ([]*group.Coordinator, error)
}

// groupsRef boxes a Groups for the atomic pointer.
type groupsRef struct{ g Groups }

// SetGroups gives the REST proxy's v2 and v3 consumer groups and the
// console's group views the Kafka listener's group coordinators, so REST
// consumers are members of the same groups Kafka clients see; nil (as
// without the Kafka listener) answers 503 not_running.
func (s *Server) SetGroups(g Groups) {
	if g == nil {
		s.rp.groups.Store(nil)
		return
	}
	s.rp.groups.Store(&groupsRef{g})
}

// groupsSource is the Groups given by SetGroups, nil without a Kafka
// listener.
func (s *Server) groupsSource() Groups {
	if s.rp == nil {
		return nil
	}
	if ref := s.rp.groups.Load(); ref != nil {
		return ref.g
	}
	return nil
}

// groupCoordinator returns the coordinator of group g on this node, or
// errNoGroups without a Kafka listener.
func (s *Server) groupCoordinator(g string) (*group.Coordinator, error) {
	src := s.groupsSource()
	if src == nil {
		return nil, errNoGroups
	}
	return src.GroupCoordinator(g)
}

// groupCoordinators returns every coordinator this node runs, or errNoGroups
// without a Kafka listener.
func (s *Server) groupCoordinators() ([]*group.Coordinator, error) {
	src := s.groupsSource()
	if src == nil {
		return nil, errNoGroups
	}
	return src.Coordinators()
}

// coordinatorRef names the node coordinating a group this node does not.
type coordinatorRef struct {
	NodeID    int32  `json:"node_id"`
	KafkaAddr string `json:"kafka_addr,omitempty"`
}

// misdirected reports whether err is a group another node of the cell
// coordinates, and that node when the error names it.
func misdirected(err error) (*coordinatorRef, bool) {
	if !errors.Is(err, kerr.NotCoordinator) {
		return nil, false
	}
	var named interface{ CoordinatorNode() (int32, string) }
	if errors.As(err, &named) {
		id, addr := named.CoordinatorNode()
		if id >= 0 {
			return &coordinatorRef{NodeID: id, KafkaAddr: addr}, true
		}
	}
	return nil, true
}

// groupUnavailable answers a console group request whose coordinator this
// node cannot give: 421 not_coordinator with the coordinating node when
// another node of the cell coordinates the group (sending the same request
// here again cannot succeed: ask that node), else 503 (not_running without
// the Kafka listener, unavailable while the coordinator loads or closes).
func groupUnavailable(w http.ResponseWriter, err error) {
	if ref, ok := misdirected(err); ok {
		writeJSON(w, http.StatusMisdirectedRequest, apiError{Error: err.Error(), Code: "not_coordinator", Coordinator: ref})
		return
	}
	if errors.Is(err, errNoGroups) {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "consumer groups need the Kafka listener, which is off", Code: "not_running"})
		return
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "group coordinator: " + err.Error(), Code: "unavailable"})
}

// groupFailure is the REST proxy's answer to a group coordinator error it
// knows (restFailure): 421 with 42101 and the coordinating node in the
// message for another node's group, 503 with 50003 for one not ready yet.
func groupFailure(err error) (int, restError, bool) {
	if ref, ok := misdirected(err); ok {
		msg := err.Error()
		if ref != nil {
			msg = fmt.Sprintf("%s: send the request to node %d's HTTP API", msg, ref.NodeID)
		}
		return http.StatusMisdirectedRequest, restError{codeNotCoordinator, msg}, true
	}
	if errors.Is(err, kerr.CoordinatorLoadInProgress) || errors.Is(err, kerr.CoordinatorNotAvailable) {
		return http.StatusServiceUnavailable, restError{codeKafkaRetriable, err.Error()}, true
	}
	return 0, restError{}, false
}
