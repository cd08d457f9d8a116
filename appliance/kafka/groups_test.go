package kafka

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/katka-io/katka/appliance/group"
)

// TestCellCoordinators: in a cell, Coordinators lists one coordinator per
// partition of __consumer_offsets this node leads (node 1 leads every other
// one of the fake cell's 50), GroupCoordinator returns the one among them
// holding a group node 1 coordinates and a *NotCoordinatorError naming node 2
// and its address for one node 2 coordinates; when node 2 takes every
// partition over, the coordinators are closed and none is listed.
func TestCellCoordinators(t *testing.T) {
	e, f := newCellEnv(t)
	if _, err := f.EnsureTopic(ctxT(t), group.Topic, internalTopicPartitions); err != nil {
		t.Fatal(err)
	}
	mine, theirs := groupOn(1), groupOn(2)
	gcs, err := e.srv.Coordinators()
	if err != nil || len(gcs) != internalTopicPartitions/2 {
		t.Fatalf("Coordinators: %d, %v; want %d (the partitions node 1 leads)", len(gcs), err, internalTopicPartitions/2)
	}
	gc, err := e.srv.GroupCoordinator(mine)
	if err != nil || !slices.Contains(gcs, gc) {
		t.Fatalf("GroupCoordinator(%s): %p, %v; want one of the listed coordinators", mine, gc, err)
	}
	if again, _ := e.srv.Coordinators(); !slices.Equal(again, gcs) {
		t.Error("a second Coordinators opened new coordinators")
	}

	_, err = e.srv.GroupCoordinator(theirs)
	var nc *NotCoordinatorError
	if !errors.Is(err, kerr.NotCoordinator) || !errors.As(err, &nc) || nc.NodeID != 2 || nc.Addr != "127.0.0.1:1" {
		t.Fatalf("GroupCoordinator(%s): %v; want NOT_COORDINATOR naming node 2 at 127.0.0.1:1", theirs, err)
	}

	// Node 2 takes every partition over: the next sweep closes node 1's
	// coordinators (the sweep's one-second pacing is reset, not waited).
	f.place(group.Topic, internalTopicPartitions, 1, 2)
	e.srv.groupSet.mu.Lock()
	e.srv.groupSet.swept = time.Time{}
	e.srv.groupSet.mu.Unlock()
	if gcs, err := e.srv.Coordinators(); err != nil || len(gcs) != 0 {
		t.Fatalf("Coordinators after node 2 took over: %d, %v; want none", len(gcs), err)
	}
	select {
	case <-gc.Done():
	default:
		t.Error("the coordinator of a partition node 1 no longer leads is still open")
	}
	if _, err := e.srv.GroupCoordinator(mine); !errors.As(err, &nc) || nc.NodeID != 2 {
		t.Errorf("GroupCoordinator(%s) after the handover: %v; want node 2", mine, err)
	}
}

// TestCellGroupCoordinatorPlaces: GroupCoordinator (the HTTP API's REST
// consumers) commits the placement of __consumer_offsets when no Kafka
// client has asked FindCoordinator yet, instead of failing until one does.
func TestCellGroupCoordinatorPlaces(t *testing.T) {
	e, f := newCellEnv(t)
	mine := groupOn(1)
	if gc, err := e.srv.GroupCoordinator(mine); err != nil || gc == nil {
		t.Fatalf("GroupCoordinator(%s) before any FindCoordinator: %v", mine, err)
	}
	if parts, ok := f.Partitions(group.Topic); !ok || len(parts) != internalTopicPartitions {
		t.Errorf("__consumer_offsets placement: %d partitions (%v), want %d", len(parts), ok, internalTopicPartitions)
	}
}

// TestSingleNodeCoordinators: a single node has one coordinator, listed by
// Coordinators and returned for every group.
func TestSingleNodeCoordinators(t *testing.T) {
	e := newEnv(t)
	gcs, err := e.srv.Coordinators()
	if err != nil || len(gcs) != 1 {
		t.Fatalf("Coordinators: %d, %v; want 1", len(gcs), err)
	}
	for _, g := range []string{"a", "my-group", ""} {
		if gc, err := e.srv.GroupCoordinator(g); err != nil || gc != gcs[0] {
			t.Errorf("GroupCoordinator(%q): %p, %v; want the one coordinator", g, gc, err)
		}
	}
}
