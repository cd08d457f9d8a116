package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// roles returns node id -> "voter"/"non_voter" from n's raft configuration.
func roles(n *Node) map[int32]string {
	out := map[int32]string{}
	for _, s := range n.Status().Servers {
		out[s.NodeID] = s.Role
	}
	return out
}

// TestAwayVoterReplacedThenRemoved: in a cell of 4 (3 voters, 1 non-voter)
// a voter that stops is replaced by the live non-voter after
// cell.voter_replace_after; writes to its partitions fail as offline; `remove
// node` through a follower then takes it out of raft and the metadata for
// good, its partitions get live leaders (writes reach them again), and it is
// never registered again.
func TestAwayVoterReplacedThenRemoved(t *testing.T) {
	tc := startTestCell(t, 4, func(i int, c *config.Cell) {
		c.PeerTTL, c.VoterReplaceAfter = 2*time.Second, 3*time.Second
	})
	a := tc.nodes[0]
	var spare int32
	waitFor(t, 20*time.Second, "3 voters and 1 non-voter", func() bool {
		voters := 0
		for id, r := range roles(a) {
			switch r {
			case "voter":
				voters++
			case "non_voter":
				spare = id
			}
		}
		return voters == 3 && spare != 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.CreateTopic(ctx, "spread", 8, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the topic on every broker", func() bool {
		for _, b := range tc.brokers {
			if _, err := b.Topic("spread"); err != nil {
				return false
			}
		}
		return true
	})
	// stop a voter that is neither the controller leader nor node 1 (the writer)
	leader := a.ControllerID()
	victim := int32(-1)
	for id, r := range roles(a) {
		if r == "voter" && id != leader && id != 1 {
			victim = id
		}
	}
	if victim < 0 {
		t.Fatalf("no voter to stop besides the leader %d and node 1: %v", leader, roles(a))
	}
	var victimParts []int32
	for p, pi := range a.Metadata().Topics["spread"].Partitions {
		if pi.Leader == victim {
			victimParts = append(victimParts, int32(p))
		}
	}
	if len(victimParts) == 0 {
		t.Fatalf("node %d leads no partition of %v", victim, a.Metadata().Topics["spread"].Partitions)
	}
	tc.stop(int(victim - 1))
	stopped := time.Now()

	short, cancelShort := context.WithTimeout(ctx, time.Second)
	_, err := tc.brokers[0].Produce(short, "spread", victimParts[0], []broker.Record{{Value: []byte("lost")}}, broker.AcksAll)
	cancelShort()
	if err == nil {
		t.Fatal("a write to a partition of the stopped node succeeded")
	}

	live := tc.nodes[0]
	if leader == 1 {
		live = tc.nodes[spare-1] // remove through a follower
	}
	waitFor(t, 20*time.Second, fmt.Sprintf("node %d a voter, the stopped node %d a non-voter", spare, victim), func() bool {
		r := roles(live)
		return r[spare] == "voter" && r[victim] == "non_voter"
	})
	// The away time counts from the last hello (at most a third of peer_ttl
	// plus a tick before the stop): never earlier than this.
	if took := time.Since(stopped); took < 3*time.Second-2*time.Second {
		t.Errorf("voter replaced %v after it stopped, well before voter_replace_after (3s)", took)
	}
	ctl := controllerOf(tc)
	elected := testutil.ToFloat64(ctl.live.elections)
	if err := live.RemoveNode(ctx, victim); err != nil {
		t.Fatalf("remove node %d: %v", victim, err)
	}
	if now := controllerOf(tc); now != ctl {
		t.Logf("the controller moved from node %d to %d: leader elections of the removal not checked", ctl.NodeID(), now.NodeID())
	} else if got := testutil.ToFloat64(ctl.live.elections) - elected; got != float64(len(victimParts)) {
		t.Errorf("the removal counted %v leader elections, want %d (the partitions node %d led)", got, len(victimParts), victim)
	}
	if err := live.RemoveNode(ctx, 99); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("removing an unknown node: %v, want %v", err, ErrUnknownNode)
	}
	waitFor(t, 10*time.Second, "the node gone from raft and metadata everywhere", func() bool {
		for _, n := range tc.nodes {
			if n == nil {
				continue
			}
			md := n.Metadata()
			if _, ok := md.Nodes[victim]; ok || roles(n)[victim] != "" {
				return false
			}
			if _, ok := md.Removed[victim]; !ok {
				return false
			}
		}
		return true
	})
	md := a.Metadata()
	for p, pi := range md.Topics["spread"].Partitions {
		if pi.Leader == victim || pi.Leader < 0 || slices.Contains(pi.Replicas, victim) || slices.Contains(pi.ISR, victim) {
			t.Errorf("partition %d still on the removed node or leaderless: %+v", p, pi)
		}
		// Epoch 1 for the new leader, or 2 when the controller fenced the
		// stopped node first (its partitions went offline: epoch 1).
		if slices.Contains(victimParts, int32(p)) && pi.LeaderEpoch != 1 && pi.LeaderEpoch != 2 {
			t.Errorf("partition %d: leader epoch %d after a new leader, want 1 or 2 (fenced first)", p, pi.LeaderEpoch)
		}
	}
	for _, p := range victimParts {
		if _, err := tc.brokers[0].Produce(ctx, "spread", p, []broker.Record{{Value: []byte("after")}}, broker.AcksAll); err != nil {
			t.Errorf("write to partition %d after its reassignment: %v", p, err)
		}
	}
	// registering the removed id is refused by the state machine
	err = live.Apply(ctx, Command{Op: "register_node", Node: &NodeInfo{ID: victim, PeerAddr: "127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), ErrNodeRemoved.Error()) {
		t.Errorf("registering the removed node: %v, want %v", err, ErrNodeRemoved)
	}
	if live.raft.State() != raft.Leader && live.ControllerID() < 0 {
		t.Error("no controller leader after the removal")
	}
}

// TestFSMRemoveNode: remove_node takes the node out of the node table, keeps
// its id in Removed, gives each of its replicas to the least loaded live node
// not already holding the partition, moves leadership to a remaining in-sync
// replica (else the first remaining one) with a bumped epoch, and is
// idempotent; without a live node a partition just loses the replica.
func TestFSMRemoveNode(t *testing.T) {
	f := newFSM()
	for id := range int32(3) {
		f.apply(Command{Op: "register_node", Node: &NodeInfo{ID: id + 1}})
	}
	ti := TopicInfo{ReplicationFactor: 2, Partitions: []PartitionInfo{
		{Replicas: []int32{3, 1}, Leader: 3, ISR: []int32{3, 1}},
		{Replicas: []int32{1, 3}, Leader: 1, ISR: []int32{1, 3}},
		{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}},
	}}
	f.apply(Command{Op: "create_topic", Topic: "t", TopicInfo: &ti})
	if err := f.removeNode(nodeCommand{Op: opRemoveNode, NodeID: 3, Live: []int32{1, 2, 3}, At: 7}); err != nil {
		t.Fatal(err)
	}
	md := f.view()
	if _, ok := md.Nodes[3]; ok || md.Removed[3] != 7 {
		t.Fatalf("nodes %v removed %v", md.Nodes, md.Removed)
	}
	want := []PartitionInfo{
		{Replicas: []int32{2, 1}, Leader: 1, LeaderEpoch: 1, ISR: []int32{1}},
		{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1}},
		{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}},
	}
	for i, p := range md.Topics["t"].Partitions {
		if !slices.Equal(p.Replicas, want[i].Replicas) || p.Leader != want[i].Leader || p.LeaderEpoch != want[i].LeaderEpoch || !slices.Equal(p.ISR, want[i].ISR) {
			t.Errorf("partition %d: %+v, want %+v", i, p, want[i])
		}
	}
	if err := f.removeNode(nodeCommand{Op: opRemoveNode, NodeID: 3}); err != nil {
		t.Errorf("second removal: %v", err)
	}
	if err := f.removeNode(nodeCommand{Op: opRemoveNode, NodeID: 9}); err == nil {
		t.Error("removing an unknown node succeeded")
	}
	// node 1 removed with no live node left to take its replicas
	if err := f.removeNode(nodeCommand{Op: opRemoveNode, NodeID: 1}); err != nil {
		t.Fatal(err)
	}
	for i, p := range f.view().Topics["t"].Partitions {
		if p.Leader != 2 || !slices.Equal(p.Replicas, []int32{2}) || !slices.Equal(p.ISR, []int32{2}) {
			t.Errorf("partition %d after removing node 1 with no live node: %+v, want only node 2", i, p)
		}
	}
}
