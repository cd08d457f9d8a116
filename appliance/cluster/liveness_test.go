package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// controllerOf returns the controller leader of tc as its first running
// node sees it.
func controllerOf(tc *testCell) *Node {
	for _, n := range tc.nodes {
		if n != nil {
			if id := n.ControllerID(); id > 0 {
				return tc.nodes[id-1]
			}
		}
	}
	return nil
}

// awaitMetadata waits, on the metadata change events of n, until cond holds
// for its copy of the metadata; it fails the test after d.
func awaitMetadata(t *testing.T, n *Node, d time.Duration, what string, cond func(Metadata) bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		changed := n.MetadataChanged()
		if cond(n.Metadata()) {
			return time.Since(t0)
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("node %d: timed out after %v waiting for %s", n.NodeID(), d, what)
		}
	}
}

// TestChangeISRThroughController: a partition leader shrinks and grows its
// ISR through the controller, from a follower of the controller and from the
// controller itself; a stale epoch, a node that does not lead and an ISR
// without the leader are refused with errors.Is-able sentinels on every node.
func TestChangeISRThroughController(t *testing.T) {
	tc := startTestCell(t, 3, nil)
	ctl := controllerOf(tc)
	var follower *Node
	for _, n := range tc.nodes {
		if n != ctl {
			follower = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := follower.CreateTopic(ctx, "orders", 3, 3); err != nil {
		t.Fatal(err)
	}
	for _, leader := range []*Node{follower, ctl} {
		md := leader.Metadata()
		var part int32 = -1
		var p PartitionInfo
		for i, pi := range md.Topics["orders"].Partitions {
			if pi.Leader == leader.NodeID() {
				part, p = int32(i), pi
			}
		}
		if part < 0 {
			t.Fatalf("node %d leads no partition of %+v", leader.NodeID(), md.Topics["orders"])
		}
		other := p.Replicas[0]
		if other == leader.NodeID() {
			other = p.Replicas[1]
		}
		shrunk := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return r == other })
		if err := leader.ChangeISR(ctx, "orders", part, p.LeaderEpoch, shrunk); err != nil {
			t.Fatalf("node %d shrinking the ISR of orders/%d: %v", leader.NodeID(), part, err)
		}
		if got := leader.Metadata().Topics["orders"].Partitions[part]; len(got.ISR) != 2 || slices.Contains(got.ISR, other) || got.LeaderEpoch != p.LeaderEpoch {
			t.Fatalf("node %d right after ChangeISR: %+v, want ISR %v at epoch %d", leader.NodeID(), got, shrunk, p.LeaderEpoch)
		}
		if err := leader.ChangeISR(ctx, "orders", part, p.LeaderEpoch+1, p.ISR); !errors.Is(err, ErrStaleEpoch) {
			t.Errorf("node %d: a newer epoch: %v, want %v", leader.NodeID(), err, ErrStaleEpoch)
		}
		if err := tc.nodes[other-1].ChangeISR(ctx, "orders", part, p.LeaderEpoch, p.ISR); !errors.Is(err, ErrStaleEpoch) {
			t.Errorf("node %d, not the leader: %v, want %v", other, err, ErrStaleEpoch)
		}
		if err := leader.ChangeISR(ctx, "orders", part, p.LeaderEpoch, []int32{other}); !errors.Is(err, ErrInvalidISR) {
			t.Errorf("node %d: ISR without the leader: %v, want %v", leader.NodeID(), err, ErrInvalidISR)
		}
		if err := leader.ChangeISR(ctx, "orders", part, p.LeaderEpoch, p.ISR); err != nil {
			t.Fatalf("node %d growing the ISR back: %v", leader.NodeID(), err)
		}
		if got := leader.Metadata().Topics["orders"].Partitions[part]; len(got.ISR) != 3 {
			t.Fatalf("node %d after growing: %+v", leader.NodeID(), got)
		}
	}
}
