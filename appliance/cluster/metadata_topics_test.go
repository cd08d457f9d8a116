package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// TestFSMTopicCommands steps the FSM through create_partitions and
// delete_topic: growing keeps the existing partitions and appends the new
// ones; a shrink or an unknown topic is refused; a delete leaves a tombstone
// that survives a snapshot and a re-create clears; tombstones are bounded.
func TestFSMTopicCommands(t *testing.T) {
	f := newFSM()
	ti, _ := assign([]int32{1, 2, 3}, 2, 1, 0)
	if err := f.apply(Command{Op: "create_topic", Topic: "orders", TopicInfo: &ti}); err != nil {
		t.Fatal(err)
	}
	grown, _ := assign([]int32{1, 2, 3}, 5, 1, 0)
	grown.Partitions[0].Leader = 3 // the proposer's view of old partitions is ignored
	if err := f.apply(Command{Op: opCreatePartitions, Topic: "orders", TopicInfo: &grown}); err != nil {
		t.Fatal(err)
	}
	parts := f.view().Topics["orders"].Partitions
	if len(parts) != 5 || parts[0].Leader != 1 || parts[3].Leader != 1 || parts[4].Leader != 2 {
		t.Fatalf("grown topic %+v", parts)
	}
	if err := f.apply(Command{Op: opCreatePartitions, Topic: "orders", TopicInfo: &ti}); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("shrink: %v, want %v", err, ErrInvalidPartitions)
	}
	if err := f.apply(Command{Op: opCreatePartitions, Topic: "nope", TopicInfo: &grown}); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("grow unknown: %v", err)
	}
	if err := f.apply(Command{Op: "delete_topic", Topic: "orders"}); err != nil {
		t.Fatal(err)
	}
	g := snapshotRoundTrip(t, f)
	if _, ok := g.view().Deleted["orders"]; !ok {
		t.Fatalf("tombstone lost in the snapshot: %+v", g.view())
	}
	if err := g.apply(Command{Op: "create_topic", Topic: "orders", TopicInfo: &ti}); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.view().Deleted["orders"]; ok {
		t.Fatal("re-created topic still has a tombstone")
	}
	for i := range maxTombstones + 10 {
		name := fmt.Sprintf("t%d", i)
		g.apply(Command{Op: "create_topic", Topic: name, TopicInfo: &ti})
		g.apply(Command{Op: "delete_topic", Topic: name})
	}
	d := g.view().Deleted
	if len(d) != maxTombstones {
		t.Fatalf("%d tombstones, want the limit %d", len(d), maxTombstones)
	}
	if _, ok := d["t0"]; ok {
		t.Fatal("the oldest tombstone was kept over the limit")
	}
	if _, ok := d[fmt.Sprintf("t%d", maxTombstones+9)]; !ok {
		t.Fatal("the newest tombstone was dropped")
	}
}

// snapshotRoundTrip persists f's snapshot and restores it into a new FSM.
func snapshotRoundTrip(t *testing.T, f *fsm) *fsm {
	t.Helper()
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	snap.Persist(&bufSink{Buffer: &buf})
	g := newFSM()
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestRemoteErrorKeepsSentinels(t *testing.T) {
	for _, s := range []error{ErrTopicExists, ErrUnknownTopic, ErrReplicationFactor, ErrInvalidPartitions, ErrNoController} {
		err := remoteError(fmt.Errorf("rpc apply to 10.0.0.1:9093: %s: x", s.Error()))
		if !errors.Is(err, s) {
			t.Errorf("%v lost its sentinel %v", err, s)
		}
	}
	if remoteError(nil) != nil {
		t.Fatal("nil became an error")
	}
}

// checkTopicCommands grows and deletes a topic through a follower of a
// formed 3-node cell (TestSeedsFormCell): errors keep their sentinels across
// the forwarding, and every node sees the result.
func checkTopicCommands(t *testing.T, ctx context.Context, follower *Node, nodes []*Node) {
	t.Helper()
	grown, err := follower.CreatePartitions(ctx, "orders", 9)
	if err != nil {
		t.Fatalf("create partitions through follower %d: %v", follower.NodeID(), err)
	}
	led := map[int32]int{}
	for _, p := range grown.Partitions {
		led[p.Leader]++
	}
	if len(grown.Partitions) != 9 || led[1] != 3 || led[2] != 3 || led[3] != 3 {
		t.Errorf("grown to %d partitions, leaders %v; want 9, 3 on each node", len(grown.Partitions), led)
	}
	if _, err := follower.CreatePartitions(ctx, "orders", 9); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("no growth: %v, want %v", err, ErrInvalidPartitions)
	}
	if _, err := follower.CreateTopicAssigned(ctx, "orders", 1, 1, nil); !errors.Is(err, ErrTopicExists) {
		t.Errorf("create existing: %v, want %v", err, ErrTopicExists)
	}
	if _, err := follower.CreateTopicAssigned(ctx, "wide", 1, 4, nil); !errors.Is(err, ErrReplicationFactor) {
		t.Errorf("replication factor 4 of 3 nodes: %v, want %v", err, ErrReplicationFactor)
	}
	rf3, err := follower.CreateTopicAssigned(ctx, "rf3", 3, 3, map[string]string{"retention.ms": "1000"})
	if err != nil || len(rf3.Partitions[2].Replicas) != 3 || rf3.Configs["retention.ms"] != "1000" {
		t.Errorf("replication factor 3: %+v, %v", rf3, err)
	}
	if err := follower.DeleteTopic(ctx, "rf3"); err != nil {
		t.Errorf("delete through follower: %v", err)
	}
	if err := follower.DeleteTopic(ctx, "rf3"); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("delete twice: %v, want %v", err, ErrUnknownTopic)
	}
	waitFor(t, 10*time.Second, "growth and delete on every node", func() bool {
		for _, n := range nodes {
			md := n.Metadata()
			if _, ok := md.Topics["rf3"]; ok || len(md.Topics["orders"].Partitions) != 9 {
				return false
			}
			if _, ok := md.Deleted["rf3"]; !ok {
				return false
			}
		}
		return true
	})
}
