package cluster

import (
	"errors"
	"slices"
	"testing"
)

// TestFSMReassign moves a partition from nodes 1,2,3 to 2,3,4: node 4 is
// added first, the move finishes when node 4 joins the ISR (a new leader,
// since node 1 leaves), and cancel drops a replica being added.
func TestFSMReassign(t *testing.T) {
	f := replFSM(t, nil,
		PartitionInfo{Replicas: []int32{1, 2, 3}, Leader: 1, LeaderEpoch: 2, ISR: []int32{1, 2, 3}},
		PartitionInfo{Replicas: []int32{1, 2, 3}, Leader: 2, LeaderEpoch: 0, ISR: []int32{1, 2, 3}})
	if err := f.apply(Command{Op: "register_node", Node: &NodeInfo{ID: 4}}); err != nil {
		t.Fatal(err)
	}
	move := func(p int32, replicas ...int32) error {
		return f.apply(Command{Op: opReassign, Topic: "t", Partition: p, Replicas: replicas})
	}
	for name, err := range map[string]error{
		"unknown node": move(0, 2, 3, 9),
		"twice":        move(0, 2, 2, 4),
	} {
		if !errors.Is(err, ErrInvalidReplicas) {
			t.Errorf("%s: %v, want %v", name, err, ErrInvalidReplicas)
		}
	}
	if err := f.apply(Command{Op: opReassign, Topic: "t", Partition: 0}); !errors.Is(err, ErrNoReassignment) {
		t.Errorf("cancel without a move: %v", err)
	}
	if err := move(0, 2, 3, 4); err != nil {
		t.Fatal(err)
	}
	p := f.view().Topics["t"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{1, 2, 3, 4}) || !slices.Equal(p.Adding, []int32{4}) || !slices.Equal(p.Removing(), []int32{1}) || p.Leader != 1 {
		t.Fatalf("during the move: %+v removing %v", p, p.Removing())
	}
	// Node 4 caught up: the leader adds it to the ISR, which ends the move.
	if err := f.apply(Command{Op: opChangeISR, Topic: "t", Partition: 0, Leader: 1, LeaderEpoch: 2, ISR: []int32{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	p = f.view().Topics["t"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{2, 3, 4}) || p.Target != nil || p.Adding != nil {
		t.Fatalf("after the move: %+v", p)
	}
	wantPart(t, f, 0, 2, 3, 2, 3, 4) // node 1 left: node 2 leads in epoch 3

	// Partition 1: a move cancelled before node 4 caught up.
	if err := move(1, 1, 2, 4); err != nil {
		t.Fatal(err)
	}
	if err := f.apply(Command{Op: opReassign, Topic: "t", Partition: 1}); err != nil {
		t.Fatal(err)
	}
	p = f.view().Topics["t"].Partitions[1]
	if !slices.Equal(p.Replicas, []int32{1, 2, 3}) || p.Target != nil || p.Adding != nil || p.Leader != 2 || p.LeaderEpoch != 0 {
		t.Fatalf("after the cancel: %+v", p)
	}
	// A move to replicas already in sync finishes at once.
	if err := move(1, 3, 2); err != nil {
		t.Fatal(err)
	}
	p = f.view().Topics["t"].Partitions[1]
	if !slices.Equal(p.Replicas, []int32{3, 2}) || p.Leader != 2 {
		t.Fatalf("shrunk at once: %+v", p)
	}
}
