package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
)

// testGroups is a Groups of fixed coordinators, as a node of a cell leading
// several partitions of __consumer_offsets has: owner maps a group to the
// index of its coordinator (0 when missing), elsewhere to the node that
// coordinates it instead of this one.
type testGroups struct {
	gcs       []*group.Coordinator
	owner     map[string]int
	elsewhere map[string]int32
}

// oneCoordinator is a single node's Groups: gc holds every group.
func oneCoordinator(gc *group.Coordinator) *testGroups {
	return &testGroups{gcs: []*group.Coordinator{gc}}
}

func (tg *testGroups) GroupCoordinator(g string) (*group.Coordinator, error) {
	if id, ok := tg.elsewhere[g]; ok {
		return nil, &testNotCoordinator{group: g, node: id}
	}
	return tg.gcs[tg.owner[g]], nil
}

func (tg *testGroups) Coordinators() ([]*group.Coordinator, error) { return tg.gcs, nil }

// testNotCoordinator is kafka.NotCoordinatorError's shape.
type testNotCoordinator struct {
	group string
	node  int32
}

func (e *testNotCoordinator) Error() string {
	return fmt.Sprintf("group %s is coordinated by node %d of the cell (kafka %s), not this node", e.group, e.node, e.addr())
}
func (e *testNotCoordinator) addr() string                     { return fmt.Sprintf("gw%d.local:9092", e.node) }
func (e *testNotCoordinator) Unwrap() error                    { return kerr.NotCoordinator }
func (e *testNotCoordinator) CoordinatorNode() (int32, string) { return e.node, e.addr() }

// TestGroupsOfTwoCoordinators: a node running two coordinators (a cell node
// leading two partitions of __consumer_offsets) lists the groups of both in
// /v1/groups, /v1/overview and the v3 consumer-groups, and serves each
// group from its own coordinator (offset resets, v3 group pages); a group
// another node coordinates answers 421 naming that node, on the console API
// and on the REST proxy, whose v2 consumers are refused rather than joined
// to a coordinator that does not hold the group.
func TestGroupsOfTwoCoordinators(t *testing.T) {
	v := newViewServer(t)
	if err := v.b.CreatePartitions(group.Topic, 2); err != nil {
		t.Fatal(err)
	}
	second, err := group.Open(v.b, group.Options{Config: group.Config{InitialRebalanceDelay: -1}, Partition: 1, External: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	v.s.SetGroups(&testGroups{gcs: []*group.Coordinator{v.gc, second},
		owner: map[string]int{"alpha": 0, "beta": 1}, elsewhere: map[string]int32{"remote": 2}})
	if _, err := v.b.CreateTopic("orders", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	v.produce(t, "orders", 0, broker.Record{Value: []byte("a")}, broker.Record{Value: []byte("b")})

	// Each reset commits through the group's own coordinator.
	v.call(t, "POST", "/v1/groups/alpha/offsets", "", `{"topic":"orders","to":"earliest"}`, 200, nil)
	v.call(t, "POST", "/v1/groups/beta/offsets", "", `{"topic":"orders","to":"latest"}`, 200, nil)
	if n, m := len(v.gc.Stats()), len(second.Stats()); n != 1 || m != 1 {
		t.Fatalf("coordinators hold %d and %d groups, want 1 each (alpha on the first, beta on the second)", n, m)
	}

	var groups []groupJSON
	v.call(t, "GET", "/v1/groups", "", "", 200, &groups)
	if len(groups) != 2 || groups[0].Group != "alpha" || groups[0].Lag != 2 || groups[1].Group != "beta" || groups[1].Lag != 0 {
		t.Fatalf("/v1/groups: %+v; want alpha (lag 2) and beta (lag 0), merged from both coordinators", groups)
	}
	var ov overviewJSON
	v.call(t, "GET", "/v1/overview", "", "", 200, &ov)
	if ov.Groups != 2 || !ov.GroupsAvailable {
		t.Errorf("/v1/overview: %d groups (available %v), want 2", ov.Groups, ov.GroupsAvailable)
	}
	v3 := "/v3/clusters/" + v.b.ClusterID() + "/consumer-groups"
	var list struct {
		Data []struct {
			ConsumerGroupID string `json:"consumer_group_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(v.call(t, "GET", v3, "", "", 200, nil)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 2 || list.Data[0].ConsumerGroupID != "alpha" || list.Data[1].ConsumerGroupID != "beta" {
		t.Fatalf("v3 consumer groups: %+v; want alpha and beta", list.Data)
	}
	var sum struct {
		TotalLag int64 `json:"total_lag"`
	}
	if err := json.Unmarshal([]byte(v.call(t, "GET", v3+"/alpha/lag-summary", "", "", 200, nil)), &sum); err != nil || sum.TotalLag != 2 {
		t.Errorf("v3 lag summary of alpha: %+v %v; want total lag 2", sum, err)
	}
	v.call(t, "GET", v3+"/beta", "", "", 200, nil)

	// Node 2's group: 421 with the node, everywhere.
	var e apiError
	body := v.call(t, "POST", "/v1/groups/remote/offsets", "", `{"topic":"orders","to":"earliest"}`, 421, nil)
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Code != "not_coordinator" || e.Coordinator == nil || e.Coordinator.NodeID != 2 || e.Coordinator.KafkaAddr != "gw2.local:9092" {
		t.Errorf("reset of node 2's group: %s; want 421 not_coordinator naming node 2", body)
	}
	if body := v.call(t, "GET", v3+"/remote", "", "", 421, nil); !strings.Contains(body, "node 2") || !strings.Contains(body, `"error_code":421`) {
		t.Errorf("v3 group of node 2: %s", body)
	}
	body = v.call(t, "POST", "/consumers/remote", "", `{"name":"c1"}`, 421, nil)
	if !strings.Contains(body, "42101") || !strings.Contains(body, "node 2") {
		t.Errorf("v2 consumer of node 2's group: %s; want 42101 naming node 2", body)
	}
	if n, m := len(v.gc.Stats()), len(second.Stats()); n != 1 || m != 1 {
		t.Errorf("node 2's group reached a coordinator here: %d and %d groups", n, m)
	}
	v.s.rp.mu.Lock()
	open := len(v.s.rp.instances)
	v.s.rp.mu.Unlock()
	if open != 0 {
		t.Errorf("%d v2 instances open after the refused create, want 0", open)
	}
}

// TestGroupsSourceErrors: a coordinator that is loading answers 503 on the
// console and 503 with 50003 on the REST proxy; a NOT_COORDINATOR that names
// no node still answers 421 (42101).
func TestGroupsSourceErrors(t *testing.T) {
	v := newViewServer(t)
	v.s.SetGroups(failingGroups{fmt.Errorf("group x: %w", kerr.CoordinatorLoadInProgress)})
	v.call(t, "GET", "/v1/groups", "", "", 503, nil)
	v.call(t, "POST", "/v1/groups/x/offsets", "", `{"topic":"__consumer_offsets","to":"earliest"}`, 503, nil)
	if body := v.call(t, "GET", "/v3/clusters/"+v.b.ClusterID()+"/consumer-groups/x", "", "", 503, nil); !strings.Contains(body, "50003") {
		t.Errorf("v3 group while loading: %s; want 50003", body)
	}
	v.s.SetGroups(failingGroups{fmt.Errorf("group x: %w", kerr.NotCoordinator)})
	if body := v.call(t, "POST", "/consumers/x", "", `{}`, 421, nil); !strings.Contains(body, "42101") {
		t.Errorf("v2 consumer of a group with no coordinator here: %s", body)
	}
}

// failingGroups answers err to everything.
type failingGroups struct{ err error }

func (f failingGroups) GroupCoordinator(string) (*group.Coordinator, error) { return nil, f.err }
func (f failingGroups) Coordinators() ([]*group.Coordinator, error)         { return nil, f.err }
