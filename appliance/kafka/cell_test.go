package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// fakeCell is a cell of nodes 1 (this server) and 2 (an address nothing
// listens on) whose controller is a map: the Kafka layer's side of the cell
// tested without raft (appliance/cluster and the e2e tests have the real one).
type fakeCell struct {
	mu      sync.Mutex
	brokers []CellBroker
	topics  map[string][]CellPartition
	rf      int16
	calls   []string
	pidEnd  int64 // producer ids handed out in the "cell"
	// local is node 1's broker: EnsureTopic of the internal topics creates
	// the topic's logs there, as a cell's reconciler does.
	local *broker.Broker
}

func newFakeCell() *fakeCell {
	return &fakeCell{rf: 2, topics: map[string][]CellPartition{},
		brokers: []CellBroker{{NodeID: 1}, {NodeID: 2, Host: "127.0.0.1", Port: 1}}}
}

func (f *fakeCell) NodeID() int32       { return 1 }
func (f *fakeCell) ControllerID() int32 { return 2 }
func (f *fakeCell) ClusterID() string   { return "fake-cell" }
func (f *fakeCell) Brokers() []CellBroker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]CellBroker(nil), f.brokers...)
}
func (f *fakeCell) DefaultReplicationFactor() int16 { return f.rf }

func (f *fakeCell) Partitions(topic string) ([]CellPartition, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.topics[topic]
	return p, ok
}

// place sets a topic's partitions, partition p led by leaders[p%len].
func (f *fakeCell) place(topic string, n int, rf int16, leaders ...int32) []CellPartition {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := make([]CellPartition, n)
	for p := range parts {
		l := leaders[p%len(leaders)]
		reps := []int32{l}
		for r := int16(1); r < rf; r++ {
			reps = append(reps, 3-l) // the other node
		}
		parts[p] = CellPartition{Leader: l, LeaderEpoch: 7, Replicas: reps, ISR: reps}
	}
	f.topics[topic] = parts
	return parts
}

func (f *fakeCell) Topics() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.topics {
		out = append(out, n)
	}
	return out
}

func (f *fakeCell) AllocateProducerIDs(ctx context.Context, n int64) (int64, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := f.pidEnd
	f.pidEnd += n
	return start, f.pidEnd, nil
}

func (f *fakeCell) ProducerIDIssued(ctx context.Context, id int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return id >= 0 && id < f.pidEnd
}

func (f *fakeCell) TopicID(topic string) ([16]byte, bool) { return [16]byte{}, false }

func (f *fakeCell) PeerCall(ctx context.Context, id int32, kind string, in, out any) error {
	return fmt.Errorf("call %s on node %d: the fake cell has no other nodes", kind, id)
}

func (f *fakeCell) Reassign(ctx context.Context, topic string, partition int32, replicas []int32) error {
	return fmt.Errorf("reassign in the fake cell: %w", kerr.InvalidReplicaAssignment)
}

func (f *fakeCell) call(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeCell) CreateTopic(ctx context.Context, name string, n int32, rf int16, configs map[string]string) ([]CellPartition, error) {
	f.call(fmt.Sprintf("create %s %d rf %d %v", name, n, rf, configs))
	if _, ok := f.Partitions(name); ok {
		return nil, fmt.Errorf("%w: exists", kerr.TopicAlreadyExists)
	}
	return f.place(name, int(n), rf, 1, 2), nil
}

func (f *fakeCell) CreatePartitions(ctx context.Context, name string, count int32) error {
	f.call(fmt.Sprintf("grow %s %d", name, count))
	f.place(name, int(count), 1, 1, 2)
	return nil
}

func (f *fakeCell) DeleteTopic(ctx context.Context, name string) error {
	f.call("delete " + name)
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.topics, name)
	return nil
}

func (f *fakeCell) EnsureTopic(ctx context.Context, name string, n int32) ([]CellPartition, error) {
	if p, ok := f.Partitions(name); ok {
		return p, nil
	}
	if (name == broker.OffsetsTopic || name == broker.TransactionStateTopic) && f.local != nil {
		if _, err := f.local.CreateTopic(name, n, broker.TopicConfig{RetentionMs: -1, RetentionBytes: -1}); err != nil && !errors.Is(err, broker.ErrTopicExists) {
			return nil, err
		}
	}
	return f.place(name, int(n), 1, 1, 2), nil
}

// newCellEnv is a server that is node 1 of a fakeCell.
func newCellEnv(t *testing.T) (*testEnv, *fakeCell) {
	t.Helper()
	f := newFakeCell()
	e := newEnvConfig(t, Config{Cell: f})
	f.local = e.b
	host, port, _ := net.SplitHostPort(e.addr)
	p, _ := strconv.Atoi(port)
	f.brokers[0].Host, f.brokers[0].Port = host, int32(p)
	return e, f
}

// TestCellNotLeader: Produce, Fetch, ListOffsets and DeleteRecords for a
// partition node 2 leads get NOT_LEADER_OR_FOLLOWER from node 1, with the
// leader in CurrentLeader and NodeEndpoints where the version has them; the
// batch never reaches node 1's log; the partition node 1 leads is served.
func TestCellNotLeader(t *testing.T) {
	e, f := newCellEnv(t)
	if _, err := e.b.CreateTopic("events", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	f.place("events", 2, 1, 1, 2) // partition 0 on node 1, 1 on node 2
	r := e.raw(t)
	for _, v := range []int16{9, 10} {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "events", Partitions: []kmsg.ProduceRequestTopicPartition{
			{Partition: 0, Records: testBatch(-1, -1, -1, 2)}, {Partition: 1, Records: testBatch(-1, -1, -1, 3)}}}}
		resp := r.roundTrip(req, v).(*kmsg.ProduceResponse)
		p0, p1 := resp.Topics[0].Partitions[0], resp.Topics[0].Partitions[1]
		if p0.ErrorCode != 0 || p1.ErrorCode != errNotLeaderOrFollower {
			t.Fatalf("produce v%d: partition 0 error %d, partition 1 error %d; want 0 and NOT_LEADER_OR_FOLLOWER", v, p0.ErrorCode, p1.ErrorCode)
		}
		if v >= 10 && (p1.CurrentLeader.LeaderID != 2 || p1.CurrentLeader.LeaderEpoch != 7 || len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != 2 || resp.Brokers[0].Port != 1) {
			t.Errorf("produce v10: current leader %+v, endpoints %+v; want node 2 epoch 7 at 127.0.0.1:1", p1.CurrentLeader, resp.Brokers)
		}
	}
	parts, _ := e.b.Partitions("events")
	if parts[0].HighWatermark != 4 || parts[1].HighWatermark != 0 {
		t.Fatalf("high watermarks %d, %d: want 4 on the led partition, 0 on node 2's", parts[0].HighWatermark, parts[1].HighWatermark)
	}

	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 5000, 1, 1<<20
	fetch.Topics = []kmsg.FetchRequestTopic{{Topic: "events", Partitions: []kmsg.FetchRequestTopicPartition{
		{Partition: 1, PartitionMaxBytes: 1 << 20, CurrentLeaderEpoch: -1, LogStartOffset: -1}}}}
	fr := r.roundTrip(fetch, 12).(*kmsg.FetchResponse) // answered at once, not after the 5 s wait
	if fp := fr.Topics[0].Partitions[0]; fp.ErrorCode != errNotLeaderOrFollower || fp.CurrentLeader.LeaderID != 2 {
		t.Errorf("fetch v12 from node 2's partition: error %d, current leader %+v", fp.ErrorCode, fp.CurrentLeader)
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "events", Partitions: []kmsg.ListOffsetsRequestTopicPartition{
		{Partition: 0, Timestamp: -1, CurrentLeaderEpoch: -1}, {Partition: 1, Timestamp: -1, CurrentLeaderEpoch: -1}}}}
	lr := r.roundTrip(lo, 6).(*kmsg.ListOffsetsResponse)
	if l0, l1 := lr.Topics[0].Partitions[0], lr.Topics[0].Partitions[1]; l0.ErrorCode != 0 || l0.Offset != 4 || l1.ErrorCode != errNotLeaderOrFollower {
		t.Errorf("list offsets: %+v, %+v", l0, l1)
	}
	dr := kmsg.NewPtrDeleteRecordsRequest()
	dr.Topics = []kmsg.DeleteRecordsRequestTopic{{Topic: "events", Partitions: []kmsg.DeleteRecordsRequestTopicPartition{{Partition: 1, Offset: -1}}}}
	if d := r.roundTrip(dr, 2).(*kmsg.DeleteRecordsResponse); d.Topics[0].Partitions[0].ErrorCode != errNotLeaderOrFollower {
		t.Errorf("delete records on node 2's partition: error %d", d.Topics[0].Partitions[0].ErrorCode)
	}

	if n := testutil.ToFloat64(e.srv.redirects.WithLabelValues("not_leader")); n != 5 {
		t.Errorf("katka_kafka_cell_redirects_total{error=not_leader} %v, want 5 (2 produces, fetch, list offsets, delete records)", n)
	}

	// A cell topic this node has no logs of yet: Metadata tells the
	// controller's view, a produce to node 2's partition is sent there.
	f.place("elsewhere", 2, 1, 2)
	md := kmsg.NewPtrMetadataRequest()
	name := "elsewhere"
	md.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	mr := r.roundTrip(md, 12).(*kmsg.MetadataResponse)
	if mt := mr.Topics[0]; mt.ErrorCode != 0 || len(mt.Partitions) != 2 || mt.Partitions[1].Leader != 2 {
		t.Errorf("metadata of a cell topic not on this node: %+v", mt)
	}
	all := r.roundTrip(kmsg.NewPtrMetadataRequest(), 12).(*kmsg.MetadataResponse)
	listed := false
	for _, mt := range all.Topics {
		listed = listed || *mt.Topic == "elsewhere"
	}
	if !listed {
		t.Error("metadata of all topics lacks the cell topic not on this node")
	}
	away := kmsg.NewPtrProduceRequest()
	away.Acks, away.TimeoutMillis = -1, 5000
	away.Topics = []kmsg.ProduceRequestTopic{{Topic: "elsewhere", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 1, Records: testBatch(-1, -1, -1, 1)}}}}
	if p := r.roundTrip(away, 9).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != errNotLeaderOrFollower {
		t.Errorf("produce to a cell topic not on this node: error %d, want NOT_LEADER_OR_FOLLOWER", p.ErrorCode)
	}

	// A topic the controller does not hold yet is served here, as before.
	if _, err := e.b.CreateTopic("local-only", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "local-only", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(-1, -1, -1, 1)}}}}
	if p := r.roundTrip(req, 9).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 {
		t.Errorf("produce to a topic the controller does not hold: error %d", p.ErrorCode)
	}
}

// groupOn returns a group id whose __consumer_offsets partition (of 50, led
// alternately by nodes 1 and 2 in the fake cell) node leads.
func groupOn(node int32) string {
	for i := 0; ; i++ {
		g := fmt.Sprintf("g%d", i)
		if coordinatorPartition(g, internalTopicPartitions)%2 == node-1 {
			return g
		}
	}
}

// TestCellCoordinator: FindCoordinator names the node leading the group's
// partition of the cell's __consumer_offsets placement (committed on first
// use); group requests for a group node 2 coordinates get NOT_COORDINATOR
// from node 1; a kgo consumer group whose coordinator is node 1 works.
func TestCellCoordinator(t *testing.T) {
	e, f := newCellEnv(t)
	mine, theirs := groupOn(1), groupOn(2)
	r := e.raw(t)
	find := func(key string, keyType int8) kmsg.FindCoordinatorResponse {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey, req.CoordinatorType = key, keyType
		return *r.roundTrip(req, 3).(*kmsg.FindCoordinatorResponse)
	}
	if fc := find(theirs, 0); fc.ErrorCode != 0 || fc.NodeID != 2 || fc.Port != 1 {
		t.Errorf("coordinator of %s: %+v, want node 2 at 127.0.0.1:1", theirs, fc)
	}
	if fc := find(mine, 0); fc.ErrorCode != 0 || fc.NodeID != 1 || fc.Host+":"+strconv.Itoa(int(fc.Port)) != e.addr {
		t.Errorf("coordinator of %s: %+v, want node 1 at %s", mine, fc, e.addr)
	}
	if _, ok := f.Partitions("__consumer_offsets"); !ok {
		t.Fatal("FindCoordinator did not place __consumer_offsets in the cell")
	}
	if fc := find("txn-"+theirs, 1); fc.ErrorCode != 0 || fc.NodeID < 1 {
		t.Errorf("transaction coordinator: %+v", fc)
	}
	if _, ok := f.Partitions("__transaction_state"); !ok {
		t.Error("FindCoordinator did not place __transaction_state in the cell")
	}
	v4 := kmsg.NewPtrFindCoordinatorRequest()
	v4.CoordinatorKeys = []string{mine, theirs}
	got := r.roundTrip(v4, 4).(*kmsg.FindCoordinatorResponse)
	if len(got.Coordinators) != 2 || got.Coordinators[0].NodeID != 1 || got.Coordinators[1].NodeID != 2 {
		t.Errorf("batched FindCoordinator: %+v", got.Coordinators)
	}

	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = theirs, "consumer", 10000, 10000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
	if jr := r.roundTrip(join, 5).(*kmsg.JoinGroupResponse); jr.ErrorCode != errNotCoordinator {
		t.Errorf("JoinGroup of node 2's group: error %d, want NOT_COORDINATOR", jr.ErrorCode)
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Groups = []kmsg.OffsetFetchRequestGroup{{Group: mine}, {Group: theirs}}
	ofr := r.roundTrip(of, 8).(*kmsg.OffsetFetchResponse)
	codes := map[string]int16{}
	for _, g := range ofr.Groups {
		codes[g.Group] = g.ErrorCode
	}
	if len(codes) != 2 || codes[mine] != 0 || codes[theirs] != errNotCoordinator {
		t.Errorf("batched OffsetFetch: %v, want %s 0 and %s NOT_COORDINATOR", codes, mine, theirs)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{theirs}
	if d := r.roundTrip(dg, 5).(*kmsg.DescribeGroupsResponse); len(d.Groups) != 1 || d.Groups[0].ErrorCode != errNotCoordinator {
		t.Errorf("DescribeGroups of node 2's group: %+v", d.Groups)
	}

	if n := testutil.ToFloat64(e.srv.redirects.WithLabelValues("not_coordinator")); n != 3 {
		t.Errorf("katka_kafka_cell_redirects_total{error=not_coordinator} %v, want 3", n)
	}

	// Transactional ids place alike on __transaction_state.
	ipr := kmsg.NewPtrInitProducerIDRequest()
	ipr.TransactionalID, ipr.TransactionTimeoutMillis = &theirs, 10000
	if ip := r.roundTrip(ipr, 4).(*kmsg.InitProducerIDResponse); ip.ErrorCode != errNotCoordinator {
		t.Errorf("InitProducerId of node 2's transactional id: error %d, want NOT_COORDINATOR", ip.ErrorCode)
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID = theirs
	if er := r.roundTrip(end, 3).(*kmsg.EndTxnResponse); er.ErrorCode != errNotCoordinator {
		t.Errorf("EndTxn of node 2's transactional id: error %d, want NOT_COORDINATOR", er.ErrorCode)
	}
	ipr.TransactionalID = &mine
	if ip := r.roundTrip(ipr, 4).(*kmsg.InitProducerIDResponse); ip.ErrorCode != 0 {
		t.Errorf("InitProducerId of this node's transactional id: error %d", ip.ErrorCode)
	}

	// A consumer group coordinated here, on a topic led here.
	if _, err := e.b.CreateTopic("here", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	f.place("here", 1, 1, 1)
	ctx := ctxT(t)
	if err := e.client(t).ProduceSync(ctx, &kgo.Record{Topic: "here", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.ConsumerGroup(mine), kgo.ConsumeTopics("here"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil || fs.NumRecords() != 1 {
		t.Fatalf("group %s consumed %d records: %v", mine, fs.NumRecords(), err)
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit through the group's coordinator: %v", err)
	}
}

// TestCoordinatorPartitionIsKafkas: the group's partition is Java's
// abs(String.hashCode()) % n, as Kafka's partitionFor.
func TestCoordinatorPartitionIsKafkas(t *testing.T) {
	for key, want := range map[string]int32{
		// Java's hashCode: "a" 97, "my-group" -1906497762 (abs % 50 = 12),
		// "console-consumer-1" 35782224; "ü" is one UTF-16 unit (252).
		"a": 97 % 50, "my-group": 12, "console-consumer-1": 24, "ü": 252 % 50, "": 0,
	} {
		if got := coordinatorPartition(key, 50); got != want {
			t.Errorf("partition of %q: %d, want %d", key, got, want)
		}
	}
}

// TestCellCreateTopics: a replication factor up to the cell's nodes goes
// through the controller and the answer tells it; more is
// INVALID_REPLICATION_FACTOR; -1 takes topics.default_replication_factor; the
// local logs exist when the answer comes; CreatePartitions and DeleteTopics
// go through the controller; DescribeCluster lists the cell.
func TestCellCreateTopics(t *testing.T) {
	e, f := newCellEnv(t)
	r := e.raw(t)
	create := func(name string, rf int16) kmsg.CreateTopicsResponseTopic {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = 5000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 4, rf
		req.Topics = []kmsg.CreateTopicsRequestTopic{rt}
		return r.roundTrip(req, 7).(*kmsg.CreateTopicsResponse).Topics[0]
	}
	if ct := create("wide", 3); ct.ErrorCode != errInvalidReplicationFactor {
		t.Errorf("replication factor 3 in a cell of 2: error %d, want INVALID_REPLICATION_FACTOR", ct.ErrorCode)
	}
	if ct := create("deflt", -1); ct.ErrorCode != 0 || ct.ReplicationFactor != 2 || ct.NumPartitions != 4 {
		t.Errorf("default replication factor: %+v", ct)
	}
	if ct := create("one", 1); ct.ErrorCode != 0 || ct.ReplicationFactor != 1 {
		t.Errorf("replication factor 1: %+v", ct)
	}
	if ct := create("one", 1); ct.ErrorCode != errTopicAlreadyExists {
		t.Errorf("create twice: error %d", ct.ErrorCode)
	}
	if info, err := e.b.Topic("deflt"); err != nil || info.Partitions != 4 {
		t.Errorf("local logs after the answer: %+v, %v", info, err)
	}
	if parts, _ := f.Partitions("deflt"); len(parts) != 4 || len(parts[0].Replicas) != 2 {
		t.Errorf("the controller holds %+v", parts)
	}

	cp := kmsg.NewPtrCreatePartitionsRequest()
	cp.TimeoutMillis = 5000
	cp.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: "one", Count: 6}}
	if res := r.roundTrip(cp, 3).(*kmsg.CreatePartitionsResponse); res.Topics[0].ErrorCode != 0 {
		t.Errorf("create partitions: %+v", res.Topics[0])
	}
	if info, _ := e.b.Topic("one"); info.Partitions != 6 {
		t.Errorf("local partitions after the grow: %d", info.Partitions)
	}
	dt := kmsg.NewPtrDeleteTopicsRequest()
	dt.TimeoutMillis = 5000
	name := "one"
	dt.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: &name}}
	if res := r.roundTrip(dt, 6).(*kmsg.DeleteTopicsResponse); res.Topics[0].ErrorCode != 0 {
		t.Errorf("delete topic: %+v", res.Topics[0])
	}
	if _, err := e.b.Topic("one"); err == nil {
		t.Error("deleted topic's local logs remain")
	}
	f.mu.Lock()
	calls := fmt.Sprint(f.calls)
	f.mu.Unlock()
	if want := "[create deflt 4 rf 2 map[] create one 4 rf 1 map[] grow one 6 delete one]"; calls != want {
		t.Errorf("controller calls %s, want %s", calls, want)
	}

	dc := r.roundTrip(kmsg.NewPtrDescribeClusterRequest(), 1).(*kmsg.DescribeClusterResponse)
	if dc.ErrorCode != 0 || dc.ClusterID != "fake-cell" || dc.ControllerID != 2 || len(dc.Brokers) != 2 || dc.Brokers[1].NodeID != 2 {
		t.Errorf("DescribeCluster of the cell: %+v", dc)
	}
}

// TestCellFencedBrokerLeftOut: a node the cell has fenced (one it stopped
// hearing from) is left out of Metadata, as Kafka lists only unfenced
// brokers, so that clients stop dialing it; DescribeCluster v2 lists it,
// marked IsFenced, only when asked to include fenced brokers.
func TestCellFencedBrokerLeftOut(t *testing.T) {
	e, f := newCellEnv(t)
	r := e.raw(t)
	brokers := func() []int32 {
		var ids []int32
		for _, b := range r.roundTrip(kmsg.NewPtrMetadataRequest(), 12).(*kmsg.MetadataResponse).Brokers {
			ids = append(ids, b.NodeID)
		}
		return ids
	}
	if got := fmt.Sprint(brokers()); got != "[1 2]" {
		t.Fatalf("Metadata brokers with both nodes live: %s, want [1 2]", got)
	}
	f.mu.Lock()
	f.brokers[1].Fenced = true
	f.mu.Unlock()
	if got := fmt.Sprint(brokers()); got != "[1]" {
		t.Errorf("Metadata brokers with node 2 fenced: %s, want [1]", got)
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	if dc := r.roundTrip(req, 2).(*kmsg.DescribeClusterResponse); len(dc.Brokers) != 1 || dc.Brokers[0].NodeID != 1 {
		t.Errorf("DescribeCluster without fenced brokers: %+v", dc.Brokers)
	}
	req.IncludeFencedBrokers = true
	dc := r.roundTrip(req, 2).(*kmsg.DescribeClusterResponse)
	if len(dc.Brokers) != 2 || dc.Brokers[0].IsFenced || dc.Brokers[1].NodeID != 2 || !dc.Brokers[1].IsFenced {
		t.Errorf("DescribeCluster with fenced brokers: %+v, want node 1 and node 2 fenced", dc.Brokers)
	}
}

// TestDescribeClusterSingleNode: single katka is broker 0, its own controller.
func TestDescribeClusterSingleNode(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t)
	dc := r.roundTrip(kmsg.NewPtrDescribeClusterRequest(), 0).(*kmsg.DescribeClusterResponse)
	if dc.ErrorCode != 0 || dc.ControllerID != 0 || dc.ClusterID == "" || len(dc.Brokers) != 1 || dc.Brokers[0].NodeID != 0 ||
		dc.Brokers[0].Host+":"+strconv.Itoa(int(dc.Brokers[0].Port)) != e.addr {
		t.Errorf("DescribeCluster: %+v", dc)
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	req.EndpointType = 2
	if dc := r.roundTrip(req, 1).(*kmsg.DescribeClusterResponse); dc.ErrorCode != 119 {
		t.Errorf("controller endpoints: error %d, want UNSUPPORTED_ENDPOINT_TYPE", dc.ErrorCode)
	}
	// kadm's view, as tools see it.
	m, err := e.admin(t).BrokerMetadata(ctxT(t))
	if err != nil || m.Controller != 0 || len(m.Brokers) != 1 {
		t.Errorf("kadm broker metadata: %+v, %v", m, err)
	}
}

// TestCellProducerIDs: in a cell, producer ids come in blocks from the
// controller, and a produce with an id another node issued (below the cell's
// end) is taken, one never issued refused with UNKNOWN_PRODUCER_ID; kgo's
// default idempotent producer works.
func TestCellProducerIDs(t *testing.T) {
	e, f := newCellEnv(t)
	if _, err := e.b.CreateTopic("idem", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	f.place("idem", 1, 1, 1)
	r := e.raw(t)
	ip := r.roundTrip(kmsg.NewPtrInitProducerIDRequest(), 4).(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 || ip.ProducerID != 0 {
		t.Fatalf("init producer id: %+v, want id 0 from the cell's first block", ip)
	}
	f.AllocateProducerIDs(context.Background(), 1000) // another node's block: ids 1000..1999
	if f.pidEnd != 2000 {
		t.Fatalf("the cell handed out %d ids, want 2000 (one block per node)", f.pidEnd)
	}
	if p := produceRaw(t, r, "idem", testBatch(1500, 0, 0, 2)); p.ErrorCode != 0 {
		t.Errorf("produce with another node's producer id: error %d", p.ErrorCode)
	}
	if p := produceRaw(t, r, "idem", testBatch(1500, 0, 0, 2)); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Errorf("retried batch: %+v, want the first offset again", p)
	}
	if p := produceRaw(t, r, "idem", testBatch(2500, 0, 0, 1)); p.ErrorCode != codeUnknownProducerID {
		t.Errorf("produce with an id the cell never issued: error %d, want UNKNOWN_PRODUCER_ID", p.ErrorCode)
	}
	if err := e.client(t).ProduceSync(ctxT(t), &kgo.Record{Topic: "idem", Value: []byte("kgo")}).FirstErr(); err != nil {
		t.Fatalf("kgo's idempotent producer in the cell: %v", err)
	}
}
