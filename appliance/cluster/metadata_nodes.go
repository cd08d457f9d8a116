package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// opRemoveNode removes a node from the metadata for good: it leaves the node
// table, its id is kept in Metadata.Removed (a register_node for it is refused
// from then on) and every partition it held is given to live nodes.
const opRemoveNode = "remove_node"

// ErrNodeRemoved refuses registering a node id that was removed from the cell.
var ErrNodeRemoved = errors.New("node was removed from the cell (issue it a new id)")

// nodeCommand is the shape of the node commands of this file (the same raft
// entry also decodes as a Command).
type nodeCommand struct {
	Op string `json:"op"`
	// NodeID is the node removed.
	NodeID int32 `json:"node_id"`
	// Live are the nodes the leader was in contact with when it proposed the
	// removal: the removed node's partitions go to them.
	Live []int32 `json:"live"`
	// At is when the removal was proposed (unix seconds), kept in Removed.
	At int64 `json:"at"`
}

// cellFSM is the raft FSM: the metadata state machine (fsm) plus the node
// commands of this file, apply timing and a change signal for waiters.
type cellFSM struct {
	*fsm
	applyH prometheus.Observer

	cmu     sync.Mutex
	changed chan struct{} // closed and replaced after every change
}

func newCellFSM(f *fsm, applyH prometheus.Observer) *cellFSM {
	return &cellFSM{fsm: f, applyH: applyH, changed: make(chan struct{})}
}

// Apply is raft.FSM's: decode and apply one log entry; the result is the
// command's error (nil on success).
func (c *cellFSM) Apply(l *raft.Log) any {
	t0 := time.Now()
	defer c.signal()
	var nc nodeCommand
	if err := json.Unmarshal(l.Data, &nc); err != nil {
		return fmt.Errorf("controller: undecodable command at index %d: %w", l.Index, err)
	}
	var res any
	switch nc.Op {
	case opRemoveNode:
		res = c.removeNode(nc)
	case "register_node":
		var cmd Command
		if err := json.Unmarshal(l.Data, &cmd); err != nil {
			return fmt.Errorf("controller: undecodable command at index %d: %w", l.Index, err)
		}
		if cmd.Node != nil && c.removed(cmd.Node.ID) {
			res = fmt.Errorf("node %d: %w", cmd.Node.ID, ErrNodeRemoved)
		} else {
			res = c.fsm.Apply(l)
		}
	case opFenceNode, opUnfenceNode, opReassign:
		res = c.applyElecting(l)
	default:
		res = c.fsm.Apply(l)
	}
	if c.applyH != nil {
		c.applyH.Observe(time.Since(t0).Seconds())
	}
	return res
}

// Restore is raft.FSM's.
func (c *cellFSM) Restore(rc io.ReadCloser) error {
	defer c.signal()
	return c.fsm.Restore(rc)
}

// signal wakes everyone waiting for a metadata change.
func (c *cellFSM) signal() {
	c.cmu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.cmu.Unlock()
}

// changes returns a channel closed at the next metadata change.
func (c *cellFSM) changes() <-chan struct{} {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.changed
}

// removed reports whether id was removed from the cell for good.
func (f *fsm) removed(id int32) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.md.Removed[id]
	return ok
}

// leaderOf returns the node leading a partition and that node's peer address
// (found false: the topic or partition is not in the metadata). It copies
// nothing, for the write path.
func (f *fsm) leaderOf(topic string, partition int32) (leader int32, peerAddr string, partitions int32, found bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.md.Topics[topic]
	if !ok {
		return -1, "", 0, false
	}
	if partition < 0 || int(partition) >= len(t.Partitions) {
		return -1, "", int32(len(t.Partitions)), false
	}
	l := t.Partitions[partition].Leader
	return l, f.md.Nodes[l].PeerAddr, int32(len(t.Partitions)), true
}

// removeNode applies opRemoveNode: the node leaves the node table for good;
// each partition it held gets a live node in its place (the one holding the
// fewest replicas, lowest id first) and, when it led, a new leader (the
// first remaining in-sync replica, else the first remaining replica) with a
// bumped leader epoch. Without a live node to take them, partitions just
// lose the replica (a partition with no replica left has leader -1).
func (f *fsm) removeNode(c nodeCommand) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := c.NodeID
	if _, ok := f.md.Removed[id]; ok {
		return nil // idempotent: a retried removal
	}
	if _, ok := f.md.Nodes[id]; !ok {
		return fmt.Errorf("node %d is not in the cell", id)
	}
	delete(f.md.Nodes, id)
	delete(f.md.Fenced, id)
	if f.md.Removed == nil {
		f.md.Removed = map[int32]int64{}
	}
	f.md.Removed[id] = c.At
	var live []int32
	for _, l := range c.Live {
		if _, ok := f.md.Nodes[l]; ok && l != id {
			live = append(live, l)
		}
	}
	slices.Sort(live)
	live = slices.Compact(live)
	load := map[int32]int{}
	for _, t := range f.md.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				load[r]++
			}
		}
	}
	names := make([]string, 0, len(f.md.Topics))
	for n := range f.md.Topics {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic on every node
	for _, name := range names {
		t := f.md.Topics[name]
		changed := false
		for i := range t.Partitions {
			p := &t.Partitions[i]
			at := slices.Index(p.Replicas, id)
			if at < 0 {
				continue
			}
			changed = true
			repl := int32(-1)
			for _, l := range live {
				if !slices.Contains(p.Replicas, l) && (repl < 0 || load[l] < load[repl]) {
					repl = l
				}
			}
			reps := slices.Clone(p.Replicas)
			if repl >= 0 {
				reps[at] = repl
				load[repl]++
			} else {
				reps = slices.Delete(reps, at, at+1)
			}
			isr := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return r == id })
			if len(isr) == 0 && len(reps) > 0 {
				// No in-sync replica is left: the node is gone for good
				// (with every acknowledged record), so the partition goes
				// on from a remaining replica, live first, rather than
				// stay offline for ever (unclean).
				first := slices.IndexFunc(reps, f.live)
				isr = []int32{reps[max(first, 0)]}
			}
			p.Replicas, p.ISR = reps, isr
			if p.Leader == id || p.Leader < 0 {
				// The first live in-sync replica, else none until one is
				// unfenced (metadata_replication.go).
				f.elect(name, t, int32(i), p)
			}
		}
		if changed {
			t.Partitions = slices.Clone(t.Partitions)
			f.md.Topics[name] = t
		}
	}
	return nil
}
