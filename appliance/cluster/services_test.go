package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// TestFSMServiceOwners steps the FSM through claims and releases: one owner
// per service, claims on a live owner refused, a fenced or removed owner's
// service claimed by another node with a new epoch, a release only by the
// owner of that epoch.
func TestFSMServiceOwners(t *testing.T) {
	f := newFSM()
	for _, id := range []int32{1, 2, 3} {
		if err := f.apply(Command{Op: "register_node", Node: &NodeInfo{ID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(node int32) error {
		return f.apply(Command{Op: opClaimService, Service: "sync/plant7", NodeID: node, At: 1})
	}
	want := func(node int32, epoch int64) {
		t.Helper()
		o, _ := f.service("sync/plant7", 1)
		if o.Node != node || o.Epoch != epoch {
			t.Fatalf("owner = %+v, want node %d epoch %d", o, node, epoch)
		}
	}
	if err := claim(2); err != nil {
		t.Fatal(err)
	}
	want(2, 1)
	if err := claim(2); err != nil { // again by the owner: nothing changes
		t.Fatal(err)
	}
	want(2, 1)
	if err := claim(1); !errors.Is(err, ErrServiceOwned) {
		t.Fatalf("claim on a live owner's service: %v, want ErrServiceOwned", err)
	}
	want(2, 1)
	if _, owns := f.ownsService("sync/plant7", 2); !owns {
		t.Fatal("node 2 does not own its service")
	}
	// The owner is fenced: it owns nothing, the next claim wins.
	f.md.Fenced = map[int32]int64{2: 5}
	if _, owns := f.ownsService("sync/plant7", 2); owns {
		t.Fatal("a fenced node owns a service")
	}
	if _, claimable := f.service("sync/plant7", 2); claimable {
		t.Fatal("a fenced node may claim")
	}
	if err := claim(2); err == nil {
		t.Fatal("a fenced node claimed")
	}
	if err := claim(3); err != nil {
		t.Fatal(err)
	}
	want(3, 2)
	if err := claim(1); !errors.Is(err, ErrServiceOwned) {
		t.Fatalf("second claim: %v", err)
	}
	// Unfenced, node 2 does not take it back.
	delete(f.md.Fenced, 2)
	if err := claim(2); !errors.Is(err, ErrServiceOwned) {
		t.Fatalf("claim by the returning old owner: %v", err)
	}
	// A release of an old epoch changes nothing; the owner's frees it.
	if err := f.apply(Command{Op: opReleaseService, Service: "sync/plant7", NodeID: 3, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	want(3, 2)
	if err := f.apply(Command{Op: opReleaseService, Service: "sync/plant7", NodeID: 3, Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	want(-1, 2)
	if err := claim(1); err != nil {
		t.Fatal(err)
	}
	want(1, 3)
	// A removed owner's service is free too; the snapshot copy keeps it.
	f.md.Removed = map[int32]int64{1: 1}
	if _, claimable := f.service("sync/plant7", 2); !claimable {
		t.Fatal("a removed owner's service is not claimable")
	}
	if got := f.view().Services["sync/plant7"]; got.Node != 1 || got.Epoch != 3 {
		t.Fatalf("view: %+v", got)
	}
	if err := f.apply(Command{Op: opClaimService, NodeID: 1}); err == nil {
		t.Fatal("claim without a service name accepted")
	}
}

// svcEvent is a service starting (on) or stopping on a node.
type svcEvent struct {
	node  int32
	on    bool
	epoch int64
}

// TestRunServiceMoves: three nodes run RunService for one service; it runs
// on exactly one of them; when that node closes (a dead node: no release) it
// runs on another once the controller fenced the closed one; when the owner
// stops the service cleanly it releases it and another node takes it
// without waiting for a fence. Never on two nodes at once.
func TestRunServiceMoves(t *testing.T) {
	const session = time.Second
	tc := startTestCell(t, 3, func(_ int, c *config.Cell) {
		c.HeartbeatInterval, c.SessionTimeout = 100*time.Millisecond, session
	})
	events := make(chan svcEvent, 64)
	var (
		mu      sync.Mutex
		running = map[int32]bool{}
		overlap bool
	)
	ctxs := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i, n := range tc.nodes {
		ctx, cancel := context.WithCancel(context.Background())
		ctxs[i] = cancel
		id := n.NodeID()
		wg.Go(func() {
			n.RunService(ctx, "plugin/archive", func(ctx context.Context, epoch int64) {
				mu.Lock()
				running[id] = true
				overlap = overlap || len(running) > 1
				mu.Unlock()
				events <- svcEvent{id, true, epoch}
				<-ctx.Done()
				mu.Lock()
				delete(running, id)
				mu.Unlock()
				events <- svcEvent{id, false, epoch}
			})
		})
	}
	defer func() {
		for _, c := range ctxs {
			c()
		}
		wg.Wait()
	}()
	next := func(what string) svcEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(session + 10*time.Second):
			t.Fatalf("timed out waiting for %s", what)
			return svcEvent{}
		}
	}
	first := next("the service to start")
	if !first.on || first.epoch != 1 {
		t.Fatalf("first event %+v, want a start in epoch 1", first)
	}
	// The owner dies (closed without releasing): the service stops there
	// with the node, and starts on another once it is fenced.
	t0 := time.Now()
	tc.stop(int(first.node - 1))
	if e := next("the dead owner's service to stop"); e.on || e.node != first.node {
		t.Fatalf("event %+v, want node %d stopping", e, first.node)
	}
	second := next("the service on another node")
	if !second.on || second.node == first.node || second.epoch != 2 {
		t.Fatalf("event %+v, want a start on another node in epoch 2", second)
	}
	t.Logf("service moved from node %d to node %d %v after the owner closed (session timeout %v)", first.node, second.node, time.Since(t0).Round(time.Millisecond), session)
	// A clean stop releases it: the third node takes it at once.
	t0 = time.Now()
	ctxs[second.node-1]()
	if e := next("the released service to stop"); e.on || e.node != second.node {
		t.Fatalf("event %+v, want node %d stopping", e, second.node)
	}
	third := next("the released service on the last node")
	if !third.on || third.node == first.node || third.node == second.node || third.epoch != 3 {
		t.Fatalf("event %+v, want a start on the third node in epoch 3", third)
	}
	if d := time.Since(t0); d >= session {
		t.Errorf("a released service took %v to move, no less than the session timeout", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("the service ran on two nodes at once")
	}
}

// TestReadPartitionFromLeader: a node reads a partition it holds no replica
// of from its leader over katka-rpc/1: the records below the leader's high
// watermark, its offsets, and out-of-range offsets as
// broker.ErrOffsetOutOfRange.
func TestReadPartitionFromLeader(t *testing.T) {
	tc := startTestCell(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tc.nodes[0].CreateTopic(ctx, "lines", 3, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the topic on every broker", func() bool {
		for _, b := range tc.brokers {
			if _, err := b.Topic("lines"); err != nil {
				return false
			}
		}
		return true
	})
	md := tc.nodes[0].Metadata()
	for p := range int32(3) {
		recs := make([]broker.Record, 20)
		for i := range recs {
			recs[i] = broker.Record{Key: []byte("k"), Value: fmt.Appendf(nil, "p%d-%d", p, i), Headers: []broker.Header{{Key: "h", Value: []byte("x")}}}
		}
		if _, err := tc.brokers[0].Produce(ctx, "lines", p, recs, broker.AcksAll); err != nil {
			t.Fatal(err)
		}
		leader := md.Topics["lines"].Partitions[p].Leader
		reader := tc.nodes[leader%3] // another node
		info, got, err := reader.ReadPartition(ctx, "lines", p, 5, 1<<20)
		if err != nil {
			t.Fatalf("read partition %d (leader %d) on node %d: %v", p, leader, reader.NodeID(), err)
		}
		if info.HighWatermark != 20 || info.LogStartOffset != 0 || len(got) != 15 || got[0].Offset != 5 ||
			string(got[0].Value) != fmt.Sprintf("p%d-5", p) || len(got[0].Headers) != 1 || string(got[0].Headers[0].Value) != "x" {
			t.Fatalf("read partition %d: info %+v, %d records (first %+v)", p, info, len(got), got[0])
		}
		if info, got, err := reader.ReadPartition(ctx, "lines", p, -1, 0); err != nil || len(got) != 0 || info.HighWatermark != 20 || info.Bytes == 0 {
			t.Fatalf("offsets of partition %d: %+v %d %v", p, info, len(got), err)
		}
		if _, _, err := reader.ReadPartition(ctx, "lines", p, 99, 1<<20); !errors.Is(err, broker.ErrOffsetOutOfRange) {
			t.Fatalf("read past the end of partition %d: %v, want ErrOffsetOutOfRange", p, err)
		}
	}
	if _, _, err := tc.nodes[0].ReadPartition(ctx, "nope", 0, 0, 1); err == nil {
		t.Fatal("read of an unknown topic succeeded")
	}
}
