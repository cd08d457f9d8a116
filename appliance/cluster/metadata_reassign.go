package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Partition reassignment (Kafka's KIP-455, AlterPartitionReassignments): a
// partition's replicas move to a new set without losing availability. The
// controller first adds the new replicas (Replicas = old + new, the new ones
// listed in Adding, the wanted set in Target); they fetch from the leader
// like any follower and join the ISR once caught up; the change_isr that
// makes every target replica in sync also finishes the move (Replicas =
// Target, the ISR cut to it, a new leader from it when the old one leaves,
// its epoch bumped). Cancelling drops the replicas being added.
const opReassign = "reassign_partition"

// Errors of reassignments.
var (
	// ErrInvalidReplicas refuses a target that names an unknown node or
	// a node twice, or is empty.
	ErrInvalidReplicas = errors.New("invalid replica assignment")
	// ErrNoReassignment refuses a cancel of a partition not being moved.
	ErrNoReassignment = errors.New("no reassignment in progress")
)

// reassign starts (Replicas set) or cancels (Replicas nil) a partition's
// reassignment; f.mu is held.
func (f *fsm) reassign(c Command) (replicationResult, error) {
	t, ok := f.md.Topics[c.Topic]
	if !ok || c.Partition < 0 || int(c.Partition) >= len(t.Partitions) {
		return replicationResult{}, fmt.Errorf("reassign %s/%d: %w", c.Topic, c.Partition, ErrUnknownTopic)
	}
	p := &t.Partitions[c.Partition]
	var res replicationResult
	if c.Replicas == nil {
		if p.Target == nil {
			return res, fmt.Errorf("reassign %s/%d: %w", c.Topic, c.Partition, ErrNoReassignment)
		}
		adding := p.Adding
		p.Replicas = slices.DeleteFunc(p.Replicas, func(r int32) bool { return slices.Contains(adding, r) })
		p.ISR = slices.DeleteFunc(p.ISR, func(r int32) bool { return slices.Contains(adding, r) })
		p.Target, p.Adding = nil, nil
		if slices.Contains(adding, p.Leader) {
			res.Elections = append(res.Elections, f.elect(c.Topic, t, c.Partition, p))
		}
		return res, nil
	}
	if len(c.Replicas) == 0 {
		return res, fmt.Errorf("reassign %s/%d: %w: no replica", c.Topic, c.Partition, ErrInvalidReplicas)
	}
	for i, r := range c.Replicas {
		if _, ok := f.md.Nodes[r]; !ok {
			return res, fmt.Errorf("reassign %s/%d: %w: node %d is not registered", c.Topic, c.Partition, ErrInvalidReplicas, r)
		}
		if slices.Contains(c.Replicas[:i], r) {
			return res, fmt.Errorf("reassign %s/%d: %w: node %d twice", c.Topic, c.Partition, ErrInvalidReplicas, r)
		}
	}
	if p.Target != nil { // a new target replaces the one in flight: start from the replicas before it
		adding := p.Adding
		p.Replicas = slices.DeleteFunc(p.Replicas, func(r int32) bool { return slices.Contains(adding, r) && !slices.Contains(c.Replicas, r) })
		p.ISR = slices.DeleteFunc(p.ISR, func(r int32) bool { return slices.Contains(adding, r) && !slices.Contains(c.Replicas, r) })
	}
	p.Target, p.Adding = slices.Clone(c.Replicas), nil
	for _, r := range c.Replicas {
		if !slices.Contains(p.Replicas, r) {
			p.Replicas = append(p.Replicas, r)
			p.Adding = append(p.Adding, r)
		}
	}
	if e, ok := f.finishReassignment(c.Topic, t, c.Partition, p); ok {
		res.Elections = append(res.Elections, e)
	}
	return res, nil
}

// finishReassignment completes a partition's move once every target
// replica is in the ISR; ok reports a leader change. f.mu is held.
func (f *fsm) finishReassignment(name string, t TopicInfo, i int32, p *PartitionInfo) (Election, bool) {
	if p.Target == nil {
		return Election{}, false
	}
	for _, r := range p.Target {
		if !slices.Contains(p.ISR, r) {
			return Election{}, false
		}
	}
	p.Replicas = slices.Clone(p.Target)
	isr := make([]int32, 0, len(p.Target))
	for _, r := range p.Target {
		if slices.Contains(p.ISR, r) {
			isr = append(isr, r)
		}
	}
	p.ISR, p.Target, p.Adding = isr, nil, nil
	if slices.Contains(p.Replicas, p.Leader) {
		return Election{}, false
	}
	return f.elect(name, t, i, p), true
}

// Removing lists the replicas a reassignment in flight takes away.
func (p PartitionInfo) Removing() []int32 {
	if p.Target == nil {
		return nil
	}
	var out []int32
	for _, r := range p.Replicas {
		if !slices.Contains(p.Target, r) {
			out = append(out, r)
		}
	}
	return out
}

// Reassign moves a partition's replicas to replicas (nil: cancel the move
// in flight) through the controller; the move finishes by itself once the
// new replicas have caught up.
func (n *Node) Reassign(ctx context.Context, topic string, partition int32, replicas []int32) error {
	if replicas != nil && len(replicas) == 0 {
		return fmt.Errorf("reassign %s/%d: %w: no replica", topic, partition, ErrInvalidReplicas)
	}
	return remoteError(n.Apply(ctx, Command{Op: opReassign, Topic: topic, Partition: partition, Replicas: replicas}))
}
