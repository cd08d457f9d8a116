package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/katka-io/katka/appliance/config"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// otherThan returns the first running node of tc that is not n.
func otherThan(tc *testCell, n *Node) *Node {
	for _, o := range tc.nodes {
		if o != nil && o != n {
			return o
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
	follower := otherThan(tc, ctl)
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

// TestFencingFailsOver: in a cell of three, a follower of the controller is
// closed: the controller fences it within the session timeout, the
// partitions it led move to an in-sync replica with the next leader epoch,
// it leaves every ISR; restarted, it is unfenced at its next heartbeat.
// Then the controller leader itself leaves: the new one fences it only after
// a full session timeout of grace and never fences the live node.
func TestFencingFailsOver(t *testing.T) {
	const session = time.Second
	tc := startTestCell(t, 3, func(_ int, c *config.Cell) {
		c.HeartbeatInterval, c.SessionTimeout = 100*time.Millisecond, session
	})
	ctl := controllerOf(tc)
	victim := otherThan(tc, ctl)
	vid := victim.NodeID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ctl.CreateTopic(ctx, "orders", 6, 3); err != nil {
		t.Fatal(err)
	}
	before := ctl.Metadata().Topics["orders"]
	led := 0
	for _, p := range before.Partitions {
		if p.Leader == vid {
			led++
		}
	}
	if led == 0 {
		t.Fatalf("node %d leads no partition: %+v", vid, before)
	}
	// Let every node's heartbeats reach the controller before the kill, so
	// the fencing below is measured from a heard node, not the grace.
	awaitHeartbeats(t, ctl, tc)

	opts := victim.opts
	opts.PeerListener = nil
	t0 := time.Now()
	tc.stop(int(vid - 1))
	awaitMetadata(t, ctl, session+3*time.Second, fmt.Sprintf("node %d fenced", vid), func(md Metadata) bool {
		_, ok := md.Fenced[vid]
		return ok
	})
	t.Logf("node %d fenced %v after it was closed (session timeout %v)", vid, time.Since(t0).Round(time.Millisecond), session)
	after := ctl.Metadata().Topics["orders"]
	for i, p := range after.Partitions {
		old := before.Partitions[i]
		switch {
		case old.Leader == vid:
			if p.Leader == vid || p.Leader < 0 || !slices.Contains(old.ISR, p.Leader) || p.LeaderEpoch != old.LeaderEpoch+1 {
				t.Errorf("partition %d led by %d at epoch %d: now leader %d epoch %d, want an in-sync replica at epoch %d",
					i, old.Leader, old.LeaderEpoch, p.Leader, p.LeaderEpoch, old.LeaderEpoch+1)
			}
		case p.Leader != old.Leader || p.LeaderEpoch != old.LeaderEpoch:
			t.Errorf("partition %d not led by %d moved: %+v -> %+v", i, vid, old, p)
		}
		if slices.Contains(p.ISR, vid) || len(p.ISR) != 2 {
			t.Errorf("partition %d: ISR %v, want the two live nodes", i, p.ISR)
		}
	}
	// Counted once the fence's commit returned to the fencing loop, a
	// moment after the FSM applied it.
	waitFor(t, 5*time.Second, fmt.Sprintf("%d leader elections counted", led), func() bool {
		return testutil.ToFloat64(ctl.live.elections) >= float64(led)
	})
	if got := testutil.ToFloat64(ctl.live.elections); got != float64(led) {
		t.Errorf("leader elections counted %v, want %d", got, led)
	}
	if got := ctl.fsm.replicationCounts(); got.fenced != 1 || got.underReplicated != 6 || got.offline != 0 {
		t.Errorf("counts %+v, want 1 fenced, 6 under-replicated, 0 offline", got)
	}
	st := ctl.Status()
	for _, m := range st.Members {
		if m.Fenced != (m.NodeID == vid) || (m.NodeID == vid && m.PartitionsLed != 0) {
			t.Errorf("GET /v1/cell member %+v, want only node %d fenced, leading nothing", m, vid)
		}
	}
	if len(st.Replication.UnderReplicated) != 6 || len(st.Replication.Offline) != 0 {
		t.Errorf("GET /v1/cell: %d under-replicated, %d offline partitions, want 6 and 0", len(st.Replication.UnderReplicated), len(st.Replication.Offline))
	}

	restarted, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[vid-1] = restarted
	awaitMetadata(t, ctl, 10*time.Second, fmt.Sprintf("node %d unfenced", vid), func(md Metadata) bool {
		_, ok := md.Fenced[vid]
		return !ok
	})
	awaitMetadata(t, restarted, 10*time.Second, fmt.Sprintf("node %d seeing itself unfenced", vid), func(md Metadata) bool {
		_, ok := md.Fenced[vid]
		return !ok && len(md.Topics["orders"].Partitions) == 6
	})

	// The controller leader leaves (Close hands leadership over): the new
	// leader fences it a session timeout after raft last heard from it, and
	// never fences the live follower, which it had not heard from when it
	// was elected (the grace).
	awaitHeartbeats(t, ctl, tc)
	oldCtl := ctl.NodeID()
	closed := time.Now()
	tc.stop(int(oldCtl - 1))
	var newCtl *Node
	waitFor(t, 10*time.Second, "a new controller leader", func() bool {
		id := otherThan(tc, nil).ControllerID()
		if id > 0 && id != oldCtl {
			newCtl = tc.nodes[id-1]
		}
		return newCtl != nil
	})
	elected := time.Now()
	follower := otherThan(tc, newCtl)
	awaitMetadata(t, newCtl, session+5*time.Second, fmt.Sprintf("node %d fenced", oldCtl), func(md Metadata) bool {
		_, ok := md.Fenced[oldCtl]
		return ok
	})
	t.Logf("controller node %d fenced %v after it was closed, by node %d", oldCtl, time.Since(closed).Round(time.Millisecond), newCtl.NodeID())
	// The marker: the new controller hears the follower a session timeout
	// after its election; a fence without the grace would have come before.
	waitFor(t, 10*time.Second, "a heartbeat a session timeout after the election", func() bool {
		newCtl.live.mu.Lock()
		defer newCtl.live.mu.Unlock()
		return newCtl.live.heard[follower.NodeID()].at.After(elected.Add(session))
	})
	if md := newCtl.Metadata(); len(md.Fenced) != 1 {
		t.Fatalf("fenced %v, want only node %d", md.Fenced, oldCtl)
	}
	waitFor(t, 5*time.Second, "the new controller's leader elections counted", func() bool {
		return testutil.ToFloat64(newCtl.live.elections) >= 1
	})
}

// awaitHeartbeats waits until the controller ctl has heard every running
// node of tc but itself.
func awaitHeartbeats(t *testing.T, ctl *Node, tc *testCell) {
	t.Helper()
	t0 := time.Now()
	waitFor(t, 10*time.Second, "heartbeats from every node", func() bool {
		ctl.live.mu.Lock()
		defer ctl.live.mu.Unlock()
		for _, n := range tc.nodes {
			if n != nil && n != ctl && ctl.live.heard[n.NodeID()].at.Before(t0) {
				return false
			}
		}
		return true
	})
}

// TestHeartbeatStreamLimits: on a one-node cell's controller, a heartbeat
// stream answers each heartbeat and records it; a line longer than
// maxHeartbeatLine closes the stream. The controller lifts a fence on itself
// (one an earlier leader committed) and never fences itself.
func TestHeartbeatStreamLimits(t *testing.T) {
	dirs := issue(t, "plant7", 2)
	c := config.Default().Cell
	ln := boundPeerPort(t)
	c.Name, c.CredentialDir, c.PeerAddr, c.MDNS, c.BootstrapExpect = "plant7", dirs[0], ln.Addr().String(), false, 1
	fast := RaftTimeouts{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond}
	n, err := Start(Options{Cell: c, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Raft: &fast, PeerListener: ln})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitFor(t, 10*time.Second, "the node leading", func() bool { return n.ControllerID() == 1 })
	// Raft's pipelined replication is off (node.go: it can deadlock raft's
	// shutdown after a deposed leader meets a newer term).
	if _, err := n.trans.AppendEntriesPipeline("2", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("raft pipeline: %v, want %v", err, raft.ErrPipelineReplicationNotSupported)
	}
	other, err := LoadCredential(dirs[1])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tc, err := dialPeer(ctx, other, ln.Addr().String(), alpnRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write([]byte(`{"op":"heartbeat"}` + "\n" + `{"applied":7}` + "\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	if line, err := br.ReadString('\n'); err != nil || line != "{}\n" {
		t.Fatalf("heartbeat answer %q, %v; want {}", line, err)
	}
	n.live.mu.Lock()
	h := n.live.heard[2]
	n.live.mu.Unlock()
	if h.applied != 7 || h.at.IsZero() {
		t.Fatalf("heartbeat of node 2 recorded as %+v", h)
	}
	long := append([]byte(`{"applied":1,"pad":"`), bytes.Repeat([]byte("x"), maxHeartbeatLine)...)
	if _, err := tc.Write(append(long, "\"}\n"...)); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("a %d-byte heartbeat was answered %q, want the stream closed", len(long), line)
	}

	if err := n.Apply(ctx, Command{Op: "register_node", Node: &NodeInfo{ID: 1, PeerAddr: ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(ctx, Command{Op: opFenceNode, NodeID: 1, At: 1}); err != nil {
		t.Fatal(err)
	}
	awaitMetadata(t, n, 5*time.Second, "the controller's fence on itself lifted", func(md Metadata) bool { return len(md.Fenced) == 0 })
}
