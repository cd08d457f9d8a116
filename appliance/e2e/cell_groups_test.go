package e2e

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitLog is what a test's group consumer had committed (acknowledged by
// the coordinator) and what OffsetFetch showed meanwhile.
type commitLog struct {
	mu        sync.Mutex
	acked     map[int32]int64 // highest acknowledged commit per partition
	commits   int             // acknowledged commit requests
	seen      map[int32]int64 // highest offset OffsetFetch showed per partition
	regressed int             // OffsetFetch answers below an offset shown before
	lost      int             // OffsetFetch answers below an acknowledged commit
}

// TestCellGroupOffsetsSurvive: a consumer group of a 3-node cell keeps
// every offset its coordinator acknowledged when the coordinator's node is
// SIGKILLed, twice (each time the node coordinating the group then): the
// group's partition of __consumer_offsets is replicated (3 replicas), the
// coordinator moves with its leadership and reloads the group from the log.
// While the faults run, a monitor reads the committed offsets over and over:
// they never go backwards and never fall below an acknowledged commit; the
// group goes on committing after each kill (the marker that it would have
// shown a loss; a producer adds records all along) and finally commits the
// end of every partition.
func TestCellGroupOffsetsSurvive(t *testing.T) {
	c := startReplCell(t, 3, "groups")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const perPartition = 400
	pcl := mustClient(t, kgo.SeedBrokers(c.seeds...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer pcl.Close()
	var recs []*kgo.Record
	for p := range int32(replPartitions) {
		for i := range perPartition {
			recs = append(recs, &kgo.Record{Topic: replTopic, Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i)})
		}
	}
	if err := pcl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("fill %s: %v", replTopic, err)
	}

	const grp = "survivor"
	kc := mustClient(t, kgo.SeedBrokers(c.seeds...))
	defer kc.Close()
	cl := &commitLog{acked: map[int32]int64{}, seen: map[int32]int64{}}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	pctx, stopProducing := context.WithCancel(ctx)
	wg.Add(3)
	go func() {
		defer wg.Done()
		commitLoop(t, wctx, c.seeds, grp, cl)
	}()
	go func() { // more records all along, so the group has something to commit after each kill
		defer wg.Done()
		for i := 0; pctx.Err() == nil; i++ {
			r := &kgo.Record{Topic: replTopic, Partition: int32(i % replPartitions), Value: fmt.Appendf(nil, "more-%d", i)}
			pcl.ProduceSync(pctx, r)
		}
	}()
	go func() {
		defer wg.Done()
		offsetMonitor(wctx, kc, grp, cl)
	}()
	commits := func() int {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.commits
	}
	waitUntil(t, 60*time.Second, "the group's first commits", func() bool { return commits() > 5 })

	for round := 1; round <= 2; round++ {
		coord := groupCoordinator(ctx, kc, grp)
		if coord < 1 || int(coord) > len(c.nodes) {
			t.Fatalf("round %d: no coordinator for group %s", round, grp)
		}
		before := commits()
		cl.mu.Lock()
		ackedBefore := maps.Clone(cl.acked)
		cl.mu.Unlock()
		t.Logf("round %d: SIGKILL node %d, the coordinator of group %s (%d commits acknowledged so far)", round, coord, grp, before)
		c.nodes[coord-1].kill()
		waitUntil(t, 60*time.Second, "another node to coordinate the group", func() bool {
			n := groupCoordinator(ctx, kc, grp)
			return n > 0 && n != coord
		})
		// Every commit acknowledged before the kill is there.
		var got map[int32]int64
		var lastErr error
		waitUntil(t, 60*time.Second, "the new coordinator to answer OffsetFetch", func() bool {
			got, lastErr = committedOffsets(ctx, kc, grp)
			return lastErr == nil
		})
		for p, o := range ackedBefore {
			at, ok := got[p]
			if !ok {
				at = -1
			}
			if at < o {
				t.Errorf("round %d: partition %d committed offset %d after the coordinator died (node %d answered %v), %d was acknowledged before", round, p, at, groupCoordinator(ctx, kc, grp), got, o)
			}
		}
		waitUntil(t, 60*time.Second, "the group to commit again after the kill", func() bool { return commits() > before+3 })
		c.nodes[coord-1].start()
		waitUntil(t, 60*time.Second, "the cell to be fully in sync again", func() bool {
			return topicInSync(c.nodes, replTopic, replPartitions) && topicInSync(c.nodes, "__consumer_offsets", 50)
		})
	}
	stopProducing()
	var ends kadm.ListedOffsets
	waitUntil(t, 30*time.Second, "the end offsets of the topic", func() bool {
		var err error
		ends, err = c.adm.ListEndOffsets(ctx, replTopic)
		return err == nil && ends.Error() == nil
	})
	waitUntil(t, 90*time.Second, "the group to commit the end of every partition", func() bool {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		done := true
		ends.Each(func(o kadm.ListedOffset) { done = done && cl.acked[o.Partition] >= o.Offset })
		return done
	})
	stopWork()
	wg.Wait()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	t.Logf("%d commits acknowledged; committed offsets %v; %d regressions, %d below an acknowledged commit", cl.commits, cl.acked, cl.regressed, cl.lost)
	if cl.regressed > 0 || cl.lost > 0 {
		t.Errorf("committed offsets went backwards %d times, fell below an acknowledged commit %d times", cl.regressed, cl.lost)
	}
}

// groupCoordinator is the node FindCoordinator names for group g (-1 on
// error), asked afresh each time.
func groupCoordinator(ctx context.Context, kc *kgo.Client, g string) int32 {
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey = g
	resp, err := req.RequestWith(fctx, kc)
	if err != nil || resp.ErrorCode != 0 {
		return -1
	}
	return resp.NodeID
}

// committedOffsets asks group g's coordinator (found afresh: a client's
// cached coordinator may be the node just killed) for its committed offsets
// of replTopic.
func committedOffsets(ctx context.Context, kc *kgo.Client, g string) (map[int32]int64, error) {
	node := groupCoordinator(ctx, kc, g)
	if node < 0 {
		return nil, fmt.Errorf("no coordinator for group %s", g)
	}
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req := kmsg.NewPtrOffsetFetchRequest() // kgo sends it as the newest version both ends have: batched groups
	req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: g}}
	kresp, err := kc.Broker(int(node)).Request(fctx, req)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.OffsetFetchResponse)
	if len(resp.Groups) != 1 {
		return nil, fmt.Errorf("OffsetFetch answered %d groups", len(resp.Groups))
	}
	rg := resp.Groups[0]
	if err := kerr.ErrorForCode(rg.ErrorCode); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, t := range rg.Topics {
		if t.Topic != replTopic {
			continue
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, err
			}
			if p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out, nil
}

// commitLoop consumes replTopic in group g a few records at a time and
// commits what it read synchronously, recording each acknowledged commit.
func commitLoop(t *testing.T, ctx context.Context, seeds []string, g string, cl *commitLog) {
	k, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(g), kgo.ConsumeTopics(replTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxBytes(4<<10))
	if err != nil {
		t.Error(err)
		return
	}
	defer k.Close()
	for ctx.Err() == nil {
		fs := k.PollRecords(ctx, 20)
		next := map[string]map[int32]kgo.EpochOffset{}
		fs.EachRecord(func(r *kgo.Record) {
			if next[r.Topic] == nil {
				next[r.Topic] = map[int32]kgo.EpochOffset{}
			}
			next[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		})
		if len(next) == 0 {
			continue
		}
		k.CommitOffsetsSync(ctx, next, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				return
			}
			cl.mu.Lock()
			defer cl.mu.Unlock()
			ok := false
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					if rp.ErrorCode != 0 {
						continue
					}
					ok = true
					if o := next[rt.Topic][rp.Partition].Offset; o > cl.acked[rp.Partition] {
						cl.acked[rp.Partition] = o
					}
				}
			}
			if ok {
				cl.commits++
			}
		})
	}
}

// offsetMonitor reads the group's committed offsets over and over and counts
// answers below what it saw before or below an acknowledged commit.
func offsetMonitor(ctx context.Context, kc *kgo.Client, g string, cl *commitLog) {
	for ctx.Err() == nil {
		cl.mu.Lock()
		floor := maps.Clone(cl.acked)
		cl.mu.Unlock()
		got, err := committedOffsets(ctx, kc, g)
		if err == nil {
			cl.mu.Lock()
			for p, at := range got {
				if s, ok := cl.seen[p]; ok && at < s {
					cl.regressed++
				}
				if f, ok := floor[p]; ok && at < f {
					cl.lost++
				}
				cl.seen[p] = max(cl.seen[p], at)
			}
			for p, f := range floor {
				if _, ok := got[p]; !ok && f > 0 {
					cl.lost++ // an acknowledged commit the coordinator does not know
				}
			}
			cl.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // a polling pace, not a wait for an event
		}
	}
}
