package cluster

import (
	"errors"
	"testing"
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
