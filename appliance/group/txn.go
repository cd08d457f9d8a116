package group

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TxnMember checks the group side of a TxnOffsetCommit (v3+: member id,
// generation or KIP-848 member epoch, group instance id) as an OffsetCommit
// v9 from that member would be checked, and returns the error code for its partitions (0 when the
// commit may proceed). A valid member's commit counts as its heartbeat.
// Before v3 the request carries no member and nothing is checked.
func (c *Coordinator) TxnMember(req *kmsg.TxnOffsetCommitRequest) int16 {
	if req.Version < 3 {
		return errNone
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errCoordinatorNotAvailable
	}
	// Checked as the newest OffsetCommit: in a KIP-848 consumer group the
	// generation is the member epoch and the partitions must be the member's.
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version = 9
	oc.Group, oc.Generation, oc.MemberID, oc.InstanceID = req.Group, req.Generation, req.MemberID, req.InstanceID
	for _, t := range req.Topics {
		ot := kmsg.OffsetCommitRequestTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			ot.Partitions = append(ot.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: p.Partition, Offset: p.Offset})
		}
		oc.Topics = append(oc.Topics, ot)
	}
	code := c.m.commitError(c.opts.Now(), oc)
	hits := c.m.out.Limits
	c.m.out.Limits = nil
	c.reportLimits(hits, "")
	return code
}

// ApplyTxnOffsets stores the offsets of a committed transaction (the
// TxnOffsetCommit offsets the transaction coordinator held pending): their
// records are made durable in Topic, then they become the group's committed
// offsets, with no member check (that was done when they were sent).
// Applying the same offsets again is harmless, so a retried transaction
// marker job may call it more than once.
func (c *Coordinator) ApplyTxnOffsets(commits []Commit) error {
	if len(commits) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if err := c.append(CommitRecords(commits)); err != nil {
		return err
	}
	c.m.ApplyCommit(c.opts.Now(), commits)
	return nil
}
