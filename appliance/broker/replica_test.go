package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// replicaSet is three brokers in three directories holding one topic, with
// node 1 leading: the follower side of the cell (fetching) is played by
// copy, which moves one follower's log on by one fetch.
type replicaSet struct {
	t     *testing.T
	dirs  [3]string
	b     [3]*Broker
	epoch int32
}

func newReplicaSet(t *testing.T) *replicaSet {
	rs := &replicaSet{t: t, epoch: 1}
	for i := range rs.b {
		rs.dirs[i] = t.TempDir()
		rs.b[i] = openB(t, rs.dirs[i], nil)
		if _, err := rs.b[i].CreateTopic("r", 1, TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, b := range rs.b {
			if b != nil {
				b.Close()
			}
		}
	})
	rs.lead(0, []int32{1, 2, 3})
	return rs
}

// lead makes node i+1 the leader in the set's epoch, with isr.
func (rs *replicaSet) lead(i int, isr []int32) {
	rs.t.Helper()
	for j, b := range rs.b {
		if b == nil {
			continue
		}
		st := ReplicaState{Self: int32(j + 1), Leader: int32(i + 1), LeaderEpoch: rs.epoch, Replicas: []int32{1, 2, 3}, ISR: isr, MinInsync: 2}
		if err := b.SetReplicaState("r", 0, st); err != nil {
			rs.t.Fatalf("node %d: %v", j+1, err)
		}
	}
}

// copy runs one fetch of follower f from leader l: the fetch reports f's
// log end, the answer's batches are appended to f.
func (rs *replicaSet) copy(l, f int) {
	rs.t.Helper()
	fl, err := rs.b[f].FollowerLog("r", 0)
	if err != nil {
		rs.t.Fatal(err)
	}
	res, err := rs.b[l].ReplicaFetch("r", 0, int32(f+1), rs.epoch, fl.LogEnd, 1<<20)
	if err != nil {
		rs.t.Fatalf("fetch of node %d from node %d: %v", f+1, l+1, err)
	}
	if _, err := rs.b[f].AppendReplica(context.Background(), "r", 0, rs.epoch, res.Batches, res.HighWatermark); err != nil {
		rs.t.Fatalf("append on node %d: %v", f+1, err)
	}
}

func (rs *replicaSet) hw(i int) int64 {
	info, err := rs.b[i].PartitionInfo("r", 0)
	if err != nil {
		rs.t.Fatal(err)
	}
	return info.HighWatermark
}

func recs(vals ...string) []Record {
	out := make([]Record, len(vals))
	for i, v := range vals {
		out[i] = Record{Value: []byte(v)}
	}
	return out
}

// TestReplicaHighWatermarkAndAcksAll: the leader's high watermark is what
// every in-sync replica reported; acks=all returns only then, acks=1 at
// once; a follower refuses writes; NOT_ENOUGH_REPLICAS below
// min.insync.replicas.
func TestReplicaHighWatermarkAndAcksAll(t *testing.T) {
	rs := newReplicaSet(t)
	ctx := context.Background()
	if _, err := rs.b[0].Produce(ctx, "r", 0, recs("a"), AcksLeader); err != nil {
		t.Fatal(err)
	}
	if hw := rs.hw(0); hw != 0 {
		t.Fatalf("high watermark %d before any follower fetched, want 0", hw)
	}
	done := make(chan error, 1)
	go func() {
		_, err := rs.b[0].Produce(ctx, "r", 0, recs("b"), AcksAll)
		done <- err
	}()
	// The acks=all write waits: wait for it to be on the leader's log.
	for rs.b[0].topics["r"].parts[0].log.EndOffset() < 2 {
		time.Sleep(time.Millisecond)
	}
	rs.copy(0, 1)
	select {
	case err := <-done:
		t.Fatalf("acks=all returned (%v) with one of two followers", err)
	default:
	}
	rs.copy(0, 2) // node 3 fetches: has both records
	rs.copy(0, 1) // node 2 reports 2
	rs.copy(0, 2) // node 3 reports 2
	if hw := rs.hw(0); hw != 2 {
		t.Fatalf("high watermark %d, want 2", hw)
	}
	if err := <-done; err != nil {
		t.Fatalf("acks=all: %v", err)
	}
	// Followers refuse writes of their own.
	if _, err := rs.b[1].Produce(ctx, "r", 0, recs("x"), AcksAll); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("produce on a follower: %v, want ErrNotLeader", err)
	}
	// The ISR shrinks to the leader alone: acks=all is refused, acks=1 not.
	rs.lead(0, []int32{1})
	if _, err := rs.b[0].Produce(ctx, "r", 0, recs("c"), AcksAll); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("acks=all with ISR [1] and min.insync 2: %v", err)
	}
	if _, err := rs.b[0].Produce(ctx, "r", 0, recs("c"), AcksLeader); err != nil {
		t.Fatal(err)
	}
	if hw := rs.hw(0); hw != 3 {
		t.Fatalf("high watermark %d with the leader alone in sync, want 3", hw)
	}
}

// TestReplicaTruncationByEpoch is KIP-101's scenario: a follower holds a
// record the old leader wrote but never replicated; after a new leader in a
// new epoch wrote other records there, the follower's truncation by leader
// epoch removes it, where truncation by high watermark would keep a
// divergent copy.
func TestReplicaTruncationByEpoch(t *testing.T) {
	rs := newReplicaSet(t)
	ctx := context.Background()
	rs.b[0].Produce(ctx, "r", 0, recs("a", "b"), AcksLeader)
	rs.copy(0, 1)
	rs.copy(0, 2)
	rs.copy(0, 1)
	rs.copy(0, 2) // everyone has a, b; hw 2
	rs.b[0].Produce(ctx, "r", 0, recs("lost"), AcksLeader)
	rs.copy(0, 2) // only node 3 has "lost"
	// Node 1 dies; node 2 leads epoch 2 and writes "new" at offset 2.
	rs.b[0].Close()
	rs.b[0] = nil
	rs.epoch = 2
	rs.lead(1, []int32{2, 3})
	if _, err := rs.b[1].Produce(ctx, "r", 0, recs("new"), AcksLeader); err != nil {
		t.Fatal(err)
	}
	// Node 3 asks where its latest epoch (1) ends on the leader: at 2.
	fl, _ := rs.b[2].FollowerLog("r", 0)
	if fl.LatestEpoch != 1 || fl.LogEnd != 3 {
		t.Fatalf("node 3's log: %+v, want epoch 1 ending at 3", fl)
	}
	e, end, err := rs.b[1].EndOffsetForEpoch("r", 0, 2, fl.LatestEpoch)
	if err != nil || e != 1 || end != 2 {
		t.Fatalf("OffsetForLeaderEpoch(1) on the new leader: %d %d %v, want 1 2", e, end, err)
	}
	if got, err := rs.b[2].TruncateReplica("r", 0, min(end, fl.LogEnd)); err != nil || got != 2 {
		t.Fatalf("truncate: %d %v", got, err)
	}
	rs.copy(1, 2)
	recsOn := func(b *Broker) string {
		l := b.topics["r"].parts[0].log
		rr, err := l.Read(0, l.EndOffset(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, r := range rr {
			s = append(s, string(r.Value))
		}
		return fmt.Sprint(s)
	}
	if a, b := recsOn(rs.b[1]), recsOn(rs.b[2]); a != b || a != "[a b new]" {
		t.Fatalf("leader holds %s, follower %s; want both [a b new]", a, b)
	}
}

// TestReplicaHighWatermarkSurvivesRestart: a replicated partition's high
// watermark is checkpointed and comes back at open, below records that only
// this node had.
func TestReplicaHighWatermarkSurvivesRestart(t *testing.T) {
	rs := newReplicaSet(t)
	ctx := context.Background()
	rs.b[0].Produce(ctx, "r", 0, recs("a", "b"), AcksLeader)
	rs.copy(0, 1)
	rs.copy(0, 2)
	rs.copy(0, 1)
	rs.copy(0, 2)
	rs.b[0].Produce(ctx, "r", 0, recs("c"), AcksLeader) // not replicated
	if hw := rs.hw(0); hw != 2 {
		t.Fatalf("high watermark %d, want 2", hw)
	}
	rs.b[0].Close()
	rs.b[0] = openB(t, rs.dirs[0], nil)
	if hw := rs.hw(0); hw != 2 {
		t.Fatalf("high watermark after a restart %d, want 2 (the log ends at 3)", hw)
	}
}
