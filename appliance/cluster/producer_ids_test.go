package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestFSMProducerIDBlocks: a block must start where the last ended.
func TestFSMProducerIDBlocks(t *testing.T) {
	f := newFSM()
	if err := f.apply(Command{Op: opAllocateProducerIDs, IDs: &IDBlock{0, 1000}}); err != nil {
		t.Fatal(err)
	}
	if err := f.apply(Command{Op: opAllocateProducerIDs, IDs: &IDBlock{0, 1000}}); !errors.Is(err, errStaleBlock) {
		t.Fatalf("the same block twice: %v, want %v", err, errStaleBlock)
	}
	if err := f.apply(Command{Op: opAllocateProducerIDs, IDs: &IDBlock{1000, 1000}}); err == nil {
		t.Fatal("an empty block was taken")
	}
	if err := f.apply(Command{Op: opAllocateProducerIDs, IDs: &IDBlock{1000, 1000 + maxProducerIDBlock + 1}}); err == nil {
		t.Fatal("a block past the limit was taken")
	}
	if got := f.view().ProducerIDsEnd; got != 1000 {
		t.Fatalf("ids end at %d, want 1000", got)
	}
}

// checkProducerIDs: every node of a formed cell asks for blocks at once; the
// blocks are disjoint and every node knows every id handed out.
func checkProducerIDs(t *testing.T, ctx context.Context, nodes []*Node) {
	t.Helper()
	var mu sync.Mutex
	var blocks []IDBlock
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() {
				b, err := n.AllocateProducerIDs(ctx, 1000)
				if err != nil {
					t.Errorf("node %d: %v", n.NodeID(), err)
					return
				}
				mu.Lock()
				blocks = append(blocks, b)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, b := range blocks {
		if b.End-b.Start != 1000 || seen[b.Start] {
			t.Errorf("blocks %+v overlap or are not 1000 ids", blocks)
		}
		seen[b.Start] = true
	}
	end := int64(len(blocks)) * 1000
	for _, n := range nodes {
		if !n.ProducerIDIssued(ctx, end-1) {
			t.Errorf("node %d does not know the %d ids handed out", n.NodeID(), end)
		}
	}
	if nodes[0].ProducerIDIssued(ctx, end) {
		t.Errorf("id %d, never handed out, counts as issued", end)
	}
}
