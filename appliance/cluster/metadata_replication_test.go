package cluster

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// replFSM is an FSM with nodes 1..3 and topic "t" holding parts (configs
// optional).
func replFSM(t *testing.T, configs map[string]string, parts ...PartitionInfo) *fsm {
	t.Helper()
	f := newFSM()
	for id := int32(1); id <= 3; id++ {
		if err := f.apply(Command{Op: "register_node", Node: &NodeInfo{ID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	ti := TopicInfo{ReplicationFactor: len(parts[0].Replicas), Partitions: parts, Configs: configs}
	if err := f.apply(Command{Op: "create_topic", Topic: "t", TopicInfo: &ti}); err != nil {
		t.Fatal(err)
	}
	return f
}

// wantPart checks partition i of topic t.
func wantPart(t *testing.T, f *fsm, i int, leader, epoch int32, isr ...int32) {
	t.Helper()
	p := f.view().Topics["t"].Partitions[i]
	if p.Leader != leader || p.LeaderEpoch != epoch || !slices.Equal(p.ISR, isr) {
		t.Fatalf("partition %d: leader %d epoch %d isr %v, want leader %d epoch %d isr %v", i, p.Leader, p.LeaderEpoch, p.ISR, leader, epoch, isr)
	}
}

func fence(t *testing.T, f *fsm, id int32, at int64) {
	t.Helper()
	if err := f.apply(Command{Op: opFenceNode, NodeID: id, At: at}); err != nil {
		t.Fatalf("fence %d: %v", id, err)
	}
}

func unfence(t *testing.T, f *fsm, id int32) {
	t.Helper()
	if err := f.apply(Command{Op: opUnfenceNode, NodeID: id}); err != nil {
		t.Fatalf("unfence %d: %v", id, err)
	}
}

func TestTopicMinInsyncAndUnclean(t *testing.T) {
	for _, c := range []struct {
		rf      int
		configs map[string]string
		want    int
	}{
		{1, nil, 1}, {2, nil, 1}, {3, nil, 2}, {5, nil, 2},
		{3, map[string]string{configMinInsync: "3"}, 3},
		{3, map[string]string{configMinInsync: "1"}, 1},
		{3, map[string]string{configMinInsync: "x"}, 2},
		{3, map[string]string{configMinInsync: "0"}, 2},
	} {
		if got := (TopicInfo{ReplicationFactor: c.rf, Configs: c.configs}).MinInsync(); got != c.want {
			t.Errorf("rf %d configs %v: min insync %d, want %d", c.rf, c.configs, got, c.want)
		}
	}
	if (TopicInfo{}).UncleanElection() || (TopicInfo{Configs: map[string]string{configUnclean: "false"}}).UncleanElection() {
		t.Error("unclean election on by default or when false")
	}
	if !(TopicInfo{Configs: map[string]string{configUnclean: "true"}}).UncleanElection() {
		t.Error("unclean election off when true")
	}
}

func TestFSMChangeISR(t *testing.T) {
	f := replFSM(t, nil,
		PartitionInfo{Replicas: []int32{1, 2, 3}, Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 2, 3}})
	isr := func(leader, epoch int32, isr ...int32) error {
		return f.apply(Command{Op: opChangeISR, Topic: "t", Partition: 0, Leader: leader, LeaderEpoch: epoch, ISR: isr})
	}
	for name, c := range map[string]struct {
		err  error
		fail error
	}{
		"old epoch":        {ErrStaleEpoch, isr(1, 3, 1, 2)},
		"newer epoch":      {ErrStaleEpoch, isr(1, 5, 1, 2)},
		"not the leader":   {ErrStaleEpoch, isr(2, 4, 1, 2)},
		"lacks the leader": {ErrInvalidISR, isr(1, 4, 2, 3)},
		"empty":            {ErrInvalidISR, isr(1, 4)},
		"not a replica":    {ErrInvalidISR, isr(1, 4, 1, 7)},
		"repeated":         {ErrInvalidISR, isr(1, 4, 1, 2, 2)},
	} {
		if !errors.Is(c.fail, c.err) {
			t.Errorf("%s: %v, want %v", name, c.fail, c.err)
		}
	}
	wantPart(t, f, 0, 1, 4, 1, 2, 3) // nothing changed by the refusals
	if err := isr(1, 4, 3, 1); err != nil {
		t.Fatal(err)
	}
	wantPart(t, f, 0, 1, 4, 1, 3) // replica order, epoch kept
	if err := f.apply(Command{Op: opChangeISR, Topic: "u", Leader: 1, LeaderEpoch: 4, ISR: []int32{1}}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("unknown topic: %v", err)
	}
	if err := f.apply(Command{Op: opChangeISR, Topic: "t", Partition: 1, Leader: 1, LeaderEpoch: 4, ISR: []int32{1}}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("unknown partition: %v", err)
	}
	// A fenced node does not rejoin the ISR (KIP-841); one already in it
	// may stay.
	fence(t, f, 2, 1)
	if err := isr(1, 4, 1, 2, 3); !errors.Is(err, ErrIneligibleReplica) {
		t.Fatalf("expansion by a fenced node: %v, want %v", err, ErrIneligibleReplica)
	}
	unfence(t, f, 2)
	if err := isr(1, 4, 1, 2, 3); err != nil {
		t.Fatalf("expansion after unfencing: %v", err)
	}
	wantPart(t, f, 0, 1, 4, 1, 2, 3)
}

func TestFSMFenceMovesLeaders(t *testing.T) {
	f := replFSM(t, nil,
		PartitionInfo{Replicas: []int32{1, 2, 3}, Leader: 1, ISR: []int32{1, 2, 3}},
		PartitionInfo{Replicas: []int32{1, 3, 2}, Leader: 1, LeaderEpoch: 2, ISR: []int32{1, 2}},
		PartitionInfo{Replicas: []int32{2, 1, 3}, Leader: 2, ISR: []int32{2, 1, 3}},
		PartitionInfo{Replicas: []int32{2, 3}, Leader: 2, ISR: []int32{2, 3}},
	)
	fence(t, f, 1, 1700000000123)
	wantPart(t, f, 0, 2, 1, 2, 3) // first replica in the ISR
	wantPart(t, f, 1, 2, 3, 2)    // 3 is a replica but not in sync: never elected
	wantPart(t, f, 2, 2, 0, 2, 3) // a follower leaves the ISR, the leader and epoch stay
	wantPart(t, f, 3, 2, 0, 2, 3)
	if at := f.view().Fenced[1]; at != 1700000000123 {
		t.Fatalf("fenced at %d", at)
	}
	fence(t, f, 1, 9) // idempotent; the first time is kept
	if at := f.view().Fenced[1]; at != 1700000000123 {
		t.Fatalf("fenced again: at %d", at)
	}
	wantPart(t, f, 0, 2, 1, 2, 3)
	// Node 2 goes too: partition 0 moves to 3, partition 1 (ISR [2]) has
	// its last replica standing fenced and goes offline, keeping it.
	fence(t, f, 2, 2)
	wantPart(t, f, 0, 3, 2, 3)
	wantPart(t, f, 1, -1, 4, 2)
	wantPart(t, f, 3, 3, 1, 3)
	if err := f.apply(Command{Op: opFenceNode, NodeID: 9}); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("fencing an unknown node: %v", err)
	}
	// Node 1 comes back: it is not in partition 1's ISR, so nothing moves
	// there; node 2 comes back and leads it again.
	unfence(t, f, 1)
	wantPart(t, f, 1, -1, 4, 2)
	if _, fenced := f.view().Fenced[1]; fenced {
		t.Fatal("node 1 still fenced")
	}
	unfence(t, f, 2)
	wantPart(t, f, 1, 2, 5, 2)
	wantPart(t, f, 0, 3, 2, 3) // a live partition is not moved back
	if md := f.view(); len(md.Fenced) != 0 || md.UncleanElections != 0 {
		t.Fatalf("fenced %v unclean %d", md.Fenced, md.UncleanElections)
	}
}

// TestFSMLastReplicaStanding: KIP-966's case. ISR [1,2]; 2 dies (ISR [1]);
// 1 dies (offline, ISR kept [1]); 2 returns first: it lacks records 1
// acknowledged alone, so the partition stays offline until 1 returns.
func TestFSMLastReplicaStanding(t *testing.T) {
	f := replFSM(t, nil, PartitionInfo{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}})
	fence(t, f, 2, 1)
	wantPart(t, f, 0, 1, 0, 1)
	fence(t, f, 1, 2)
	wantPart(t, f, 0, -1, 1, 1)
	unfence(t, f, 2)
	wantPart(t, f, 0, -1, 1, 1)
	fence(t, f, 2, 3) // and again: an offline partition gets no new epoch
	wantPart(t, f, 0, -1, 1, 1)
	unfence(t, f, 2)
	unfence(t, f, 1)
	wantPart(t, f, 0, 1, 2, 1)
}

// TestFSMFencedNeverElected: an ISR member that is fenced (it stayed in as
// the last replica standing, then the ISR grew) is passed over.
func TestFSMFencedNeverElected(t *testing.T) {
	f := replFSM(t, nil, PartitionInfo{Replicas: []int32{2, 1, 3}, Leader: 1, ISR: []int32{2, 1, 3}})
	fence(t, f, 2, 1)
	wantPart(t, f, 0, 1, 0, 1, 3)
	fence(t, f, 1, 2)
	wantPart(t, f, 0, 3, 1, 3) // 2 comes first in replica order but is fenced
	// Put fenced node 2 into an ISR by hand (a snapshot of an older rule):
	// the election still skips it.
	f = replFSM(t, nil, PartitionInfo{Replicas: []int32{2, 1}, Leader: 1, ISR: []int32{2, 1}})
	f.md.Fenced = map[int32]int64{2: 1}
	fence(t, f, 1, 2)
	wantPart(t, f, 0, -1, 1, 2)
	unfence(t, f, 2)
	wantPart(t, f, 0, 2, 2, 2)
}

func TestFSMUncleanElection(t *testing.T) {
	parts := []PartitionInfo{{Replicas: []int32{1, 2, 3}, Leader: 1, ISR: []int32{1}}}
	// Off (the default): the partition waits for its ISR.
	f := replFSM(t, nil, slices.Clone(parts)...)
	fence(t, f, 1, 1)
	wantPart(t, f, 0, -1, 1, 1)
	// On: the first live replica leads at once, the ISR is reduced to it
	// and the election is counted.
	f = replFSM(t, map[string]string{configUnclean: "true"}, PartitionInfo{Replicas: []int32{1, 2, 3}, Leader: 1, ISR: []int32{1}})
	var res replicationResult
	f.mu.Lock()
	res, err := f.applyReplication(Command{Op: opFenceNode, NodeID: 1, At: 1})
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	wantPart(t, f, 0, 2, 1, 2)
	if len(res.Elections) != 1 || !res.Elections[0].Unclean || res.Elections[0].To != 2 || res.Elections[0].LeaderEpoch != 1 {
		t.Fatalf("elections %+v", res.Elections)
	}
	wantUnclean(t, f, 1)
	// With no live replica the partition goes offline; the first replica
	// to return leads it, uncleanly, when it is not in the ISR.
	fence(t, f, 2, 2)
	wantPart(t, f, 0, 3, 2, 3) // unclean again: 3 was never in the ISR
	fence(t, f, 3, 3)
	wantPart(t, f, 0, -1, 3, 3)
	unfence(t, f, 1)
	wantPart(t, f, 0, 1, 4, 1)
	wantUnclean(t, f, 3)
	// A returning ISR member is a clean election.
	fence(t, f, 1, 4)
	wantPart(t, f, 0, -1, 5, 1)
	unfence(t, f, 1)
	wantPart(t, f, 0, 1, 6, 1)
	wantUnclean(t, f, 3)
}

func wantUnclean(t *testing.T, f *fsm, n int64) {
	t.Helper()
	if got := f.view().UncleanElections; got != n {
		t.Fatalf("unclean elections %d, want %d", got, n)
	}
}

// TestFSMRemoveFencedNodes: remove_node never elects a fenced node, clears
// the removed node's fence and leaves no partition without a way back.
func TestFSMRemoveFencedNodes(t *testing.T) {
	f := replFSM(t, nil,
		PartitionInfo{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}},
		PartitionInfo{Replicas: []int32{3, 1}, Leader: 3, ISR: []int32{3, 1}},
	)
	fence(t, f, 2, 1)
	fence(t, f, 1, 2) // partition 0 offline with ISR [1]
	wantPart(t, f, 0, -1, 1, 1)
	wantPart(t, f, 1, 3, 0, 3)
	// Node 1 is removed for good, its data with it: partition 0 goes on
	// from the remaining replica 2 once 2 is back (fenced now: offline).
	if err := f.removeNode(nodeCommand{Op: opRemoveNode, NodeID: 1, Live: []int32{3}}); err != nil {
		t.Fatal(err)
	}
	md := f.view()
	if _, ok := md.Fenced[1]; ok {
		t.Fatal("removed node 1 still fenced")
	}
	p := md.Topics["t"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{3, 2}) || p.Leader != 3 || !slices.Equal(p.ISR, []int32{3}) {
		// 3 took node 1's place and is the only live replica: it leads.
		t.Fatalf("partition 0 after removal: %+v", p)
	}
	f = replFSM(t, nil, PartitionInfo{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}})
	fence(t, f, 2, 1)
	fence(t, f, 1, 2)
	if err := f.removeNode(nodeCommand{Op: opRemoveNode, NodeID: 1, Live: nil}); err != nil {
		t.Fatal(err)
	}
	wantPart(t, f, 0, -1, 1, 2) // only fenced 2 left: offline, ISR [2]
	unfence(t, f, 2)
	wantPart(t, f, 0, 2, 2, 2)
}

// TestFSMReplicationThroughRaft: the commands decode from raft entries, the
// elections come back as the raft result, and a view shares no map with
// the FSM.
func TestFSMReplicationThroughRaft(t *testing.T) {
	f := replFSM(t, nil, PartitionInfo{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}})
	c := newCellFSM(f, nil)
	entry := func(cmd Command) *raft.Log {
		data, _ := json.Marshal(cmd)
		return &raft.Log{Index: 9, Data: data}
	}
	changed := c.changes()
	res, ok := c.Apply(entry(Command{Op: opFenceNode, NodeID: 1, At: 5})).(replicationResult)
	if !ok || len(res.Elections) != 1 || res.Elections[0] != (Election{Topic: "t", Partition: 0, From: 1, To: 2, LeaderEpoch: 1}) {
		t.Fatalf("fence result %+v", res)
	}
	select {
	case <-changed:
	default:
		t.Fatal("no change signalled")
	}
	if err, _ := c.Apply(entry(Command{Op: opChangeISR, Topic: "t", Leader: 2, LeaderEpoch: 0, ISR: []int32{2}})).(error); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("stale change_isr through raft: %v", err)
	}
	if err, _ := c.Apply(entry(Command{Op: opChangeISR, Topic: "t", Leader: 2, LeaderEpoch: 1, ISR: []int32{2}})).(error); err != nil {
		t.Fatalf("change_isr through raft: %v", err)
	}
	md := f.view()
	md.Fenced[7] = 1
	md.Topics["t"].Partitions[0].ISR[0] = 7
	if again := f.view(); again.Fenced[7] != 0 || again.Topics["t"].Partitions[0].ISR[0] != 2 {
		t.Fatal("a view shares state with the FSM")
	}
	restored := snapshotRoundTrip(t, f).view()
	if restored.Fenced[1] != 5 || restored.Topics["t"].Partitions[0].Leader != 2 {
		t.Fatalf("restored %+v", restored)
	}
}

// TestFSMNewPartitionsAvoidFencedNodes: a topic or partitions whose
// assignment names a node fenced before the commit get a live leader and an
// ISR without the fenced node; placement skips fenced nodes.
func TestFSMNewPartitionsAvoidFencedNodes(t *testing.T) {
	f := replFSM(t, nil, PartitionInfo{Replicas: []int32{1, 2}, Leader: 1, ISR: []int32{1, 2}})
	fence(t, f, 2, 1)
	if got := f.view().placeable(); !slices.Equal(got, []int32{1, 3}) {
		t.Fatalf("placeable %v, want [1 3]", got)
	}
	ti := TopicInfo{ReplicationFactor: 2, Partitions: []PartitionInfo{
		{Replicas: []int32{2, 3}, Leader: 2, ISR: []int32{2, 3}},
		{Replicas: []int32{3, 2}, Leader: 3, ISR: []int32{3, 2}},
	}}
	if err := f.apply(Command{Op: "create_topic", Topic: "u", TopicInfo: &ti}); err != nil {
		t.Fatal(err)
	}
	u := f.view().Topics["u"].Partitions
	if u[0].Leader != 3 || u[0].LeaderEpoch != 1 || !slices.Equal(u[0].ISR, []int32{3}) {
		t.Errorf("partition 0 led by fenced 2 at creation: %+v, want leader 3 epoch 1 ISR [3]", u[0])
	}
	if u[1].Leader != 3 || u[1].LeaderEpoch != 0 || !slices.Equal(u[1].ISR, []int32{3}) {
		t.Errorf("partition 1: %+v, want leader 3 epoch 0 ISR [3]", u[1])
	}
	grown := TopicInfo{ReplicationFactor: 2, Partitions: append(slices.Clone(ti.Partitions),
		PartitionInfo{Replicas: []int32{2, 1}, Leader: 2, ISR: []int32{2, 1}})}
	if err := f.apply(Command{Op: opCreatePartitions, Topic: "u", TopicInfo: &grown}); err != nil {
		t.Fatal(err)
	}
	if p := f.view().Topics["u"].Partitions[2]; p.Leader != 1 || !slices.Equal(p.ISR, []int32{1}) {
		t.Errorf("new partition 2: %+v, want leader 1 ISR [1]", p)
	}
}
