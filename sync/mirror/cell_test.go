package mirror

import (
	"context"
	"strconv"
	"testing"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// TestUplinkInCell: on a node of a cell the uplink mirrors the partitions
// this node holds a replica of (leader or follower) and skips those held
// elsewhere; a central checkpoint beyond a follower's local end means the
// node taking the uplink over has not fetched every record the previous
// owner mirrored yet, so it waits at the checkpoint instead of re-basing
// (which would mirror those offsets again in a new epoch: duplicates).
// A partition without replica state re-bases as on a single node.
func TestUplinkInCell(t *testing.T) {
	b := openBroker(t, t.TempDir())
	if _, err := b.CreateTopic("t", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		produceValues(t, b, "t", p, "v", 0, 10)
	}
	// Partition 0: a follower here (node 2); partition 1: replicas on nodes
	// 1 and 3 only; partition 2: not replicated.
	if err := b.SetReplicaState("t", 0, broker.ReplicaState{Self: 2, Leader: 1, LeaderEpoch: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}, MinInsync: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetReplicaState("t", 1, broker.ReplicaState{Self: 2, Leader: 1, LeaderEpoch: 1, Replicas: []int32{1, 3}, ISR: []int32{1, 3}, MinInsync: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := syncConfig([]string{"127.0.0.1:1"})
	cfg.Uplink = []config.SyncUplink{{Topic: "t"}}
	u, err := newUplink(b, cfg, nil, newMetrics(nil), linkstate.New(linkstate.Options{Name: "sync/uplink", Log: quiet}), quiet)
	if err != nil {
		t.Fatal(err)
	}
	var parts []int32
	for _, s := range u.sources() {
		parts = append(parts, s.part)
	}
	if len(parts) != 2 || parts[0] != 0 || parts[1] != 2 {
		t.Fatalf("sources: partitions %v, want [0 2] (1 has no replica here)", parts)
	}
	cps := map[tp]checkpoint{}
	for p := range int32(3) {
		cps[tp{"t", p}] = checkpoint{Site: cfg.Site, Topic: "t", Partition: p, NextOffset: 15, CentralTopic: "site-a.t"}
	}
	pos, _, rebased := u.checkAhead(cps)
	if len(rebased) != 1 || rebased[0].Partition != 2 {
		t.Fatalf("re-based %+v, want partition 2 only", rebased)
	}
	if pos[tp{"t", 0}] != 15 || pos[tp{"t", 2}] != 10 {
		t.Fatalf("positions %v: want the follower waiting at 15, partition 2 re-based to 10", pos)
	}
}

// brokerRemote is a Remote reading another node's broker, as the partition's
// leader answers cluster.Node.ReadPartition.
type brokerRemote struct{ b *broker.Broker }

func (r brokerRemote) ReadPartition(ctx context.Context, topic string, part int32, offset int64, maxBytes int) (broker.PartitionInfo, []broker.Record, error) {
	info, err := r.b.PartitionInfo(topic, part)
	if err != nil || offset < 0 {
		return info, nil, err
	}
	res, err := r.b.Fetch(ctx, topic, part, offset, maxBytes, 0)
	info.HighWatermark, info.LogStartOffset = res.HighWatermark, res.LogStartOffset
	return info, res.Records, err
}

// TestUplinkReadsRemotePartitions: with a Remote, a partition this node
// holds no replica of is mirrored from its leader's log (here another
// broker's), in order; its local (empty, replica-less) log is never read.
func TestUplinkReadsRemotePartitions(t *testing.T) {
	local, leader := openBroker(t, t.TempDir()), openBroker(t, t.TempDir())
	for _, b := range []*broker.Broker{local, leader} {
		if _, err := b.CreateTopic("t", 1, broker.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	produceValues(t, leader, "t", 0, "v", 0, 25)
	if err := local.SetReplicaState("t", 0, broker.ReplicaState{Self: 2, Leader: 1, LeaderEpoch: 1, Replicas: []int32{1, 3}, ISR: []int32{1, 3}, MinInsync: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := syncConfig([]string{"127.0.0.1:1"})
	cfg.Uplink = []config.SyncUplink{{Topic: "t"}}
	u, err := newUplink(local, cfg, nil, newMetrics(nil), linkstate.New(linkstate.Options{Name: "sync/uplink", Log: quiet}), quiet)
	if err != nil {
		t.Fatal(err)
	}
	u.remote = brokerRemote{leader}
	srcs := u.sources()
	if len(srcs) != 1 || !srcs[0].remote {
		t.Fatalf("sources %+v, want t-0 read remotely", srcs)
	}
	// The central checkpoint says 10: the next batches carry 10..24.
	pos, _, rebased := u.checkAhead(map[tp]checkpoint{{"t", 0}: {Site: cfg.Site, Topic: "t", NextOffset: 10}})
	if len(rebased) != 0 || pos[tp{"t", 0}] != 10 {
		t.Fatalf("positions %v, re-based %v: want 10, none", pos, rebased)
	}
	u.pos = pos
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := u.collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.parts) != 1 || b.parts[0].start != 10 || b.parts[0].end != 25 || len(b.parts[0].recs) != 15 || b.parts[0].recs[0].Offset != 10 {
		t.Fatalf("batch %+v, want records 10..24 of the leader's log", b.parts)
	}
}

// TestDownlinkReadsBackAtLeader: in a cell the downlink's resume position of
// a replicated partition this node does not lead is read at the leader (here
// another broker holding what an earlier owner wrote), not from this node's
// own copy (here empty: it would download everything again).
func TestDownlinkReadsBackAtLeader(t *testing.T) {
	local, leader := openBroker(t, t.TempDir()), openBroker(t, t.TempDir())
	for _, b := range []*broker.Broker{local, leader} {
		if _, err := b.CreateTopic("commands", 1, broker.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	var recs []broker.Record
	for i := range 42 {
		recs = append(recs, broker.Record{Value: []byte("c"), Headers: []broker.Header{
			{Key: HeaderCentralTopic, Value: []byte("commands.site-a")}, {Key: HeaderCentralPartition, Value: []byte("0")},
			{Key: HeaderCentralOffset, Value: []byte(strconv.Itoa(100 + i))}}})
	}
	if _, err := leader.Produce(context.Background(), "commands", 0, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	if err := local.SetReplicaState("commands", 0, broker.ReplicaState{Self: 2, Leader: 1, LeaderEpoch: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}, MinInsync: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := syncConfig([]string{"127.0.0.1:1"})
	d := newDownlink(local, cfg, nil, newMetrics(nil), linkstate.New(linkstate.Options{Name: "sync/downlink", Log: quiet}), quiet)
	next, ok, err := d.lastDownlinked(context.Background(), "commands", 0, "commands.site-a")
	if err != nil || ok {
		t.Fatalf("without a remote: next %d, found %v, err %v; want nothing found locally", next, ok, err)
	}
	d.remote = brokerRemote{leader}
	next, ok, err = d.lastDownlinked(context.Background(), "commands", 0, "commands.site-a")
	if err != nil || !ok || next != 142 {
		t.Fatalf("read back at the leader: next %d, found %v, err %v; want 142", next, ok, err)
	}
}
