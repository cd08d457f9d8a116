package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// The controller side of replication (issue 16): ISR changes proposed by
// partition leaders, and the fencing of nodes the controller stopped hearing
// from (liveness.go), with the leader elections both cause. Every election
// picks the first replica, in replica order, that is in the ISR and not
// fenced; an ISR never loses its last member (KIP-966's "last replica
// standing": it is the one holding every acknowledged record).
const (
	opChangeISR   = "change_isr"
	opFenceNode   = "fence_node"
	opUnfenceNode = "unfence_node"
)

// Errors of the replication commands.
var (
	// ErrStaleEpoch refuses a change_isr from a node that is no longer the
	// partition's leader, or that names an old leader epoch (Kafka:
	// FENCED_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER).
	ErrStaleEpoch = errors.New("stale leader epoch")
	// ErrInvalidISR refuses an ISR that is not a subset of the partition's
	// replicas, repeats a replica, or lacks the leader.
	ErrInvalidISR = errors.New("invalid ISR")
	// ErrIneligibleReplica refuses an ISR expansion by a fenced node (Kafka's
	// INELIGIBLE_REPLICA, KIP-841): it rejoins the ISR once it is unfenced.
	ErrIneligibleReplica = errors.New("replica is fenced, not eligible for the ISR")
)

// Topic configs of replication (Kafka names).
const (
	configMinInsync = "min.insync.replicas"
	configUnclean   = "unclean.leader.election.enable"
)

// MinInsync is the topic's min.insync.replicas: its config when set (and a
// number of at least 1), else 2 for a replication factor of 3 or more, else 1.
func (t TopicInfo) MinInsync() int {
	if v, err := strconv.Atoi(t.Configs[configMinInsync]); err == nil && v >= 1 {
		return v
	}
	if t.ReplicationFactor >= 3 {
		return 2
	}
	return 1
}

// UncleanElection reports whether the topic allows electing a leader outside
// the ISR (unclean.leader.election.enable; off unless set to true).
func (t TopicInfo) UncleanElection() bool {
	v, err := strconv.ParseBool(t.Configs[configUnclean])
	return err == nil && v
}

// Election is one partition leadership change made by a replication command.
type Election struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// From and To are the old and new leader (-1: none, the partition is
	// offline).
	From int32 `json:"from"`
	To   int32 `json:"to"`
	// LeaderEpoch is the new leader epoch.
	LeaderEpoch int32 `json:"leader_epoch"`
	// Unclean is true when the new leader was not in the ISR: records
	// acknowledged by the old ISR may be lost.
	Unclean bool `json:"unclean,omitempty"`
}

func (e Election) String() string {
	return fmt.Sprintf("%s/%d:%d->%d", e.Topic, e.Partition, e.From, e.To)
}

// replicationResult is the raft result of fence_node and unfence_node.
type replicationResult struct {
	Elections []Election
}

// applyReplication applies change_isr, fence_node and unfence_node; f.mu is
// held.
func (f *fsm) applyReplication(c Command) (replicationResult, error) {
	switch c.Op {
	case opChangeISR:
		return replicationResult{}, f.changeISR(c)
	case opFenceNode:
		return f.fenceNode(c)
	case opUnfenceNode:
		return f.unfenceNode(c)
	case opReassign:
		return f.reassign(c)
	}
	return replicationResult{}, fmt.Errorf("unknown command %q", c.Op)
}

// changeISR sets a partition's ISR as its leader asks, keeping the leader
// epoch; f.mu is held.
func (f *fsm) changeISR(c Command) error {
	t, ok := f.md.Topics[c.Topic]
	if !ok {
		return fmt.Errorf("change_isr %s: %w", c.Topic, ErrUnknownTopic)
	}
	if c.Partition < 0 || int(c.Partition) >= len(t.Partitions) {
		return fmt.Errorf("change_isr %s/%d: %w (partition)", c.Topic, c.Partition, ErrUnknownTopic)
	}
	p := &t.Partitions[c.Partition]
	if c.Leader != p.Leader || c.LeaderEpoch != p.LeaderEpoch {
		return fmt.Errorf("change_isr %s/%d from node %d epoch %d (leader %d, epoch %d): %w",
			c.Topic, c.Partition, c.Leader, c.LeaderEpoch, p.Leader, p.LeaderEpoch, ErrStaleEpoch)
	}
	if !slices.Contains(c.ISR, c.Leader) {
		return fmt.Errorf("change_isr %s/%d: %w: %v lacks the leader %d", c.Topic, c.Partition, ErrInvalidISR, c.ISR, c.Leader)
	}
	isr := make([]int32, 0, len(c.ISR))
	for _, r := range p.Replicas { // replica order, the order elections use
		if slices.Contains(c.ISR, r) {
			isr = append(isr, r)
		}
	}
	if len(isr) != len(c.ISR) {
		return fmt.Errorf("change_isr %s/%d: %w: %v is not a set of the replicas %v", c.Topic, c.Partition, ErrInvalidISR, c.ISR, p.Replicas)
	}
	for _, r := range isr {
		if _, fenced := f.md.Fenced[r]; fenced && !slices.Contains(p.ISR, r) {
			return fmt.Errorf("change_isr %s/%d: node %d: %w", c.Topic, c.Partition, r, ErrIneligibleReplica)
		}
	}
	p.ISR = isr
	f.finishReassignment(c.Topic, t, c.Partition, p) // every target replica in sync: the move is done
	f.md.Topics[c.Topic] = t                         // t.Partitions shares its array: the partition is changed in place
	return nil
}

// fenceNode marks a node fenced (the controller lost its heartbeats): it
// leaves every ISR that has other members, and each partition it led gets
// the first unfenced in-sync replica as leader, or none (-1) when there is
// none, the ISR then keeping its last member; f.mu is held.
func (f *fsm) fenceNode(c Command) (replicationResult, error) {
	id := c.NodeID
	if _, ok := f.md.Nodes[id]; !ok {
		return replicationResult{}, fmt.Errorf("fence_node %d: %w", id, ErrUnknownNode)
	}
	if f.md.Fenced == nil {
		f.md.Fenced = map[int32]int64{}
	}
	if _, ok := f.md.Fenced[id]; !ok {
		f.md.Fenced[id] = c.At
	}
	var res replicationResult
	f.eachPartition(func(name string, t TopicInfo, i int32, p *PartitionInfo) {
		if len(p.ISR) > 1 {
			p.ISR = slices.DeleteFunc(p.ISR, func(r int32) bool { return r == id })
		}
		if p.Leader == id {
			res.Elections = append(res.Elections, f.elect(name, t, i, p))
		}
	})
	return res, nil
}

// unfenceNode clears a node's fence (its heartbeats came back): every
// offline partition (leader -1) gets a leader again where one is eligible,
// this node first among its in-sync replicas; f.mu is held.
func (f *fsm) unfenceNode(c Command) (replicationResult, error) {
	id := c.NodeID
	if _, ok := f.md.Nodes[id]; !ok {
		return replicationResult{}, fmt.Errorf("unfence_node %d: %w", id, ErrUnknownNode)
	}
	delete(f.md.Fenced, id)
	if c.Incarnation != "" {
		if f.md.Incarnations == nil {
			f.md.Incarnations = map[int32]string{}
		}
		f.md.Incarnations[id] = c.Incarnation
	}
	var res replicationResult
	f.eachPartition(func(name string, t TopicInfo, i int32, p *PartitionInfo) {
		if p.Leader < 0 && slices.Contains(p.Replicas, id) {
			if e := f.elect(name, t, i, p); e.To >= 0 {
				res.Elections = append(res.Elections, e)
			}
		}
	})
	return res, nil
}

// holdsReplicated reports whether node id leads or is in sync for a
// partition with more than one replica: what a restart must take from it
// until it has caught up again. f.mu is held (read).
func (f *fsm) holdsReplicated(id int32) bool {
	for _, t := range f.md.Topics {
		for _, p := range t.Partitions {
			if len(p.Replicas) > 1 && (p.Leader == id || slices.Contains(p.ISR, id)) {
				return true
			}
		}
	}
	return false
}

// eachPartition calls fn for every partition, topics by name (the elections
// come out in the same order on every node); fn changes the partition in
// place. f.mu is held.
func (f *fsm) eachPartition(fn func(name string, t TopicInfo, i int32, p *PartitionInfo)) {
	names := make([]string, 0, len(f.md.Topics))
	for n := range f.md.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t := f.md.Topics[name]
		// Copy the partitions before changing them: views handed out
		// earlier share nothing with the FSM, but keep it obvious.
		t.Partitions = slices.Clone(t.Partitions)
		for i := range t.Partitions {
			p := &t.Partitions[i]
			p.ISR = slices.Clone(p.ISR)
			fn(name, t, int32(i), p)
		}
		f.md.Topics[name] = t
	}
}

// live reports whether a node may lead: registered and not fenced; f.mu is
// held.
func (f *fsm) live(id int32) bool {
	_, registered := f.md.Nodes[id]
	_, fenced := f.md.Fenced[id]
	return registered && !fenced
}

// elect gives a partition a new leader with a bumped epoch: the first
// replica in the ISR that is live; else, on a topic allowing unclean
// election, the first live replica, with the ISR reduced to it (counted in
// Metadata.UncleanElections); else none (-1), the ISR unchanged. f.mu is held.
func (f *fsm) elect(name string, t TopicInfo, i int32, p *PartitionInfo) Election {
	e := Election{Topic: name, Partition: i, From: p.Leader, To: -1}
	for _, r := range p.Replicas {
		if slices.Contains(p.ISR, r) && f.live(r) {
			e.To = r
			break
		}
	}
	if e.To < 0 && t.UncleanElection() {
		for _, r := range p.Replicas {
			if f.live(r) {
				e.To, e.Unclean = r, true
				p.ISR = []int32{r}
				f.md.UncleanElections++
				break
			}
		}
	}
	if e.To == p.Leader && e.To < 0 {
		return e // still offline: no new epoch for nothing
	}
	p.Leader = e.To
	p.LeaderEpoch++
	e.LeaderEpoch = p.LeaderEpoch
	return e
}

// placeable lists the nodes new replicas may go to: registered and not
// fenced, lowest id first.
func (md Metadata) placeable() []int32 {
	return slices.DeleteFunc(md.nodeIDs(), func(id int32) bool { _, fenced := md.Fenced[id]; return fenced })
}

// admitNew makes new partitions (from index `from` of t) safe against fences
// committed after their assignment was proposed: fenced replicas leave the
// ISR (not the last one) and a fenced leader is replaced by election. The
// partitions are changed in place; f.mu is held.
func (f *fsm) admitNew(name string, t TopicInfo, from int) {
	if len(f.md.Fenced) == 0 {
		return
	}
	for i := from; i < len(t.Partitions); i++ {
		p := &t.Partitions[i]
		isr := slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { _, fenced := f.md.Fenced[r]; return fenced })
		if len(isr) > 0 {
			p.ISR = isr
		}
		if !slices.Contains(p.ISR, p.Leader) || !f.live(p.Leader) {
			f.elect(name, t, int32(i), p)
		}
	}
}

// ChangeISR sets a partition's ISR through the controller, for the
// partition's leader (this node) at leaderEpoch, and waits until this node's
// copy of the metadata shows the change. It fails with ErrStaleEpoch when
// this node no longer leads the partition at that epoch, ErrInvalidISR for an
// ISR that is not a set of the replicas with the leader in it, and
// ErrIneligibleReplica when it adds a fenced node (errors.Is works on every
// node: errors forwarded from the controller leader get their sentinel back).
func (n *Node) ChangeISR(ctx context.Context, topic string, partition int32, leaderEpoch int32, isr []int32) error {
	c := Command{Op: opChangeISR, Topic: topic, Partition: partition, Leader: n.cred.NodeID, LeaderEpoch: leaderEpoch, ISR: slices.Clone(isr)}
	if err := remoteError(n.Apply(ctx, c)); err != nil {
		return err
	}
	// Read your writes: this node's copy shows the ISR asked, or a later
	// change of the partition's leadership.
	want := slices.Clone(isr)
	slices.Sort(want)
	n.awaitApplied(ctx, func(md *Metadata) bool {
		t, ok := md.Topics[topic]
		if !ok || int(partition) >= len(t.Partitions) {
			return true // deleted meanwhile
		}
		p := t.Partitions[partition]
		if p.LeaderEpoch != leaderEpoch || p.Leader != n.cred.NodeID {
			return true
		}
		got := slices.Clone(p.ISR)
		slices.Sort(got)
		if slices.Equal(got, want) {
			return true
		}
		// A reassignment the change finished cut the ISR to its target.
		inReplicas := slices.DeleteFunc(slices.Clone(want), func(r int32) bool { return !slices.Contains(p.Replicas, r) })
		return p.Target == nil && len(inReplicas) < len(want) && slices.Equal(got, inReplicas)
	})
	return nil
}

// MetadataChanged returns a channel closed when this node next applies a
// metadata change (a committed command or a restored snapshot): read
// Metadata after it is closed, then ask again for the next change.
func (n *Node) MetadataChanged() <-chan struct{} { return n.ops.fsm.changes() }

// fenceTimeout bounds one fence or unfence commit on the controller leader.
const fenceTimeout = 5 * time.Second

// applyElecting applies a fence_node or unfence_node raft entry; the result
// is the elections it made (replicationResult) or its error.
func (c *cellFSM) applyElecting(l *raft.Log) any {
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return fmt.Errorf("controller: undecodable command at index %d: %w", l.Index, err)
	}
	c.fsm.mu.Lock()
	defer c.fsm.mu.Unlock()
	res, err := c.fsm.applyReplication(cmd)
	if err != nil {
		return err
	}
	return res
}
