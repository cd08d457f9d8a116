package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Producer ids in a cell: idempotent and transactional producers get their
// ids from blocks the controller hands out (Kafka's AllocateProducerIds
// through KRaft), so an id one node issued is valid on every node that
// leads a partition the producer writes to, and no two nodes issue the same
// id. Metadata.ProducerIDsEnd is one past the last id of the newest block.

// opAllocateProducerIDs allocates a block: it succeeds only when the block
// starts where the last one ended (compare and set), so two nodes asking at
// once cannot get the same ids; the loser asks again.
const opAllocateProducerIDs = "allocate_producer_ids"

// maxProducerIDBlock bounds one allocation.
const maxProducerIDBlock = 1 << 20

// IDBlock is a block of producer ids, [Start, End).
type IDBlock struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// errStaleBlock is a block that does not start at the cell's end (another
// node allocated first).
var errStaleBlock = errors.New("producer id block is stale")

// allocateProducerIDs applies one allocation; f.mu is held.
func (f *fsm) allocateProducerIDs(b *IDBlock) error {
	if b == nil || b.End <= b.Start || b.End-b.Start > maxProducerIDBlock {
		return fmt.Errorf("allocate_producer_ids: bad block %+v", b)
	}
	if b.Start != f.md.ProducerIDsEnd {
		return fmt.Errorf("%w: starts at %d, the cell's ids end at %d", errStaleBlock, b.Start, f.md.ProducerIDsEnd)
	}
	f.md.ProducerIDsEnd = b.End
	return nil
}

// AllocateProducerIDs takes a block of n producer ids from the controller
// for this node to hand out, and waits until this node's copy of the
// metadata shows it.
func (n *Node) AllocateProducerIDs(ctx context.Context, size int64) (IDBlock, error) {
	if size < 1 || size > maxProducerIDBlock {
		return IDBlock{}, fmt.Errorf("producer id block of %d (allowed: 1..%d)", size, maxProducerIDBlock)
	}
	var err error
	for range 8 {
		n.fsm.mu.RLock()
		start := n.fsm.md.ProducerIDsEnd
		n.fsm.mu.RUnlock()
		b := IDBlock{Start: start, End: start + size}
		err = remoteError(n.Apply(ctx, Command{Op: opAllocateProducerIDs, IDs: &b}))
		if err == nil {
			n.awaitApplied(ctx, func(md *Metadata) bool { return md.ProducerIDsEnd >= b.End })
			return b, nil
		}
		if !errors.Is(err, errStaleBlock) {
			return IDBlock{}, err
		}
		// Another node allocated first (or this copy lags): catch up, retry.
		n.awaitApplied(ctx, func(md *Metadata) bool { return md.ProducerIDsEnd > start })
	}
	return IDBlock{}, fmt.Errorf("producer id block: %w", err)
}

// issuedWait bounds how long a produce with a producer id past this node's
// copy of the metadata waits for the copy (the id's block may have been
// committed a heartbeat ago): longer than raft's commit timeout and
// heartbeat, short enough that a made-up id costs its sender little.
const issuedWait = 500 * time.Millisecond

// ProducerIDIssued reports whether a producer id was handed out in the cell:
// below the end of the newest block. An id past this node's copy waits (at
// most issuedWait) for the copy to catch up, since the node that issued it
// may have committed its block a heartbeat ago.
func (n *Node) ProducerIDIssued(ctx context.Context, id int64) bool {
	if id < 0 {
		return false
	}
	ok := false
	n.awaitAppliedFor(ctx, issuedWait, func(md *Metadata) bool { ok = id < md.ProducerIDsEnd; return ok })
	return ok
}
