package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCellTxnCoordinatorFailover: a transactional producer of a 3-node cell
// goes on when its transaction coordinator's node is SIGKILLed in the middle
// of a transaction: __transaction_state is replicated, the coordinator moves
// with its partition's leadership and reloads the transaction, so the
// producer's commit of the open transaction succeeds through the new
// coordinator, as does the next transaction; an aborted one stays invisible.
// A read_committed consumer then reads every committed record exactly once
// and none of the aborted ones (a last committed transaction is the marker
// that the aborted records, written before it, would have been read).
func TestCellTxnCoordinatorFailover(t *testing.T) {
	c := startReplCell(t, 3, "txns")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const id = "cell-txn"
	kc := mustClient(t, kgo.SeedBrokers(c.seeds...))
	defer kc.Close()
	cl := mustClient(t, kgo.SeedBrokers(c.seeds...), kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionTimeout(2*time.Minute))
	defer cl.Close()
	produce := func(tag string, n int) []string {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("begin %s: %v", tag, err)
		}
		var vals []string
		for i := range n {
			v := fmt.Sprintf("%s-%d", tag, i)
			vals = append(vals, v)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: replTopic, Partition: int32(i % replPartitions), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
		}
		return vals
	}
	end := func(tag string, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end transaction %s: %v", tag, err)
		}
	}
	want := map[string]bool{}
	for _, v := range produce("one", 60) {
		want[v] = true
	}
	end("one", kgo.TryCommit)

	coord := coordinatorOf(ctx, kc, id, 1)
	if coord < 1 || int(coord) > len(c.nodes) {
		t.Fatalf("no coordinator for transactional id %s", id)
	}
	for _, v := range produce("two", 60) {
		want[v] = true
	}
	t.Logf("SIGKILL node %d, the coordinator of transactional id %s, with transaction two open", coord, id)
	c.nodes[coord-1].kill()
	t0 := time.Now()
	// The cell fences the dead node (Metadata leaves it out, as Kafka lists
	// only unfenced brokers) and moves its __transaction_state partition's
	// leadership, and with it the coordinator. The transactional client
	// then refreshes its metadata, as it would on its next refresh, so it
	// stops dialing the dead node: franz-go gives a coordinator request up
	// when two coordinator lookups in a row dial a dead broker (it does not
	// retry FindCoordinator on another broker), which it did in about one
	// run of three while the dead node was still listed.
	moved := waitUntil(t, time.Minute, "the cell to fence the dead coordinator and move it", func() bool {
		if now := coordinatorOf(ctx, kc, id, 1); now < 1 || now == coord {
			return false
		}
		return !brokerListed(ctx, kc, coord)
	})
	if brokerListed(ctx, cl, coord) {
		t.Fatalf("the transactional client's metadata still lists the fenced node %d", coord)
	}
	end("two", kgo.TryCommit) // through the new coordinator
	t.Logf("coordinator moved %v after the kill; transaction two committed through node %d %v after the kill",
		moved.Round(time.Millisecond), coordinatorOf(ctx, kc, id, 1), time.Since(t0).Round(time.Millisecond))
	for _, v := range produce("three", 60) {
		want[v] = true
	}
	end("three", kgo.TryCommit)
	aborted := produce("four", 60)
	end("four", kgo.TryAbort)
	marker := map[string]bool{}
	for _, v := range produce("marker", replPartitions) {
		want[v], marker[v] = true, true
	}
	end("marker", kgo.TryCommit)
	c.nodes[coord-1].start()

	rc := mustClient(t, kgo.SeedBrokers(c.seeds...), kgo.ConsumeTopics(replTopic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer rc.Close()
	seen := map[string]int{}
	for len(marker) > 0 {
		fs := rc.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed consumer: %d markers of the last transaction not read: %v", len(marker), ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			delete(marker, string(r.Value))
		})
	}
	for v := range want {
		if seen[v] != 1 {
			t.Errorf("committed record %s read %d times", v, seen[v])
		}
	}
	for _, v := range aborted {
		if seen[v] != 0 {
			t.Errorf("aborted record %s read by a read_committed consumer", v)
		}
	}
	t.Logf("%d committed records read exactly once, %d aborted ones not read", len(want), len(aborted))
}

// coordinatorOf is the node FindCoordinator names for key (key type 0: a
// group, 1: a transactional id), asked afresh (-1 on error).
func coordinatorOf(ctx context.Context, kc *kgo.Client, key string, keyType int8) int32 {
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey, req.CoordinatorType = key, keyType
	resp, err := req.RequestWith(fctx, kc)
	if err != nil || resp.ErrorCode != 0 {
		return -1
	}
	return resp.NodeID
}

// brokerListed reports whether a Metadata response, asked afresh through kc
// (which updates kc's own view of the brokers), lists node id; true on error.
func brokerListed(ctx context.Context, kc *kgo.Client, id int32) bool {
	mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(mctx, kc)
	if err != nil {
		return true
	}
	for _, b := range resp.Brokers {
		if b.NodeID == id {
			return true
		}
	}
	return false
}
