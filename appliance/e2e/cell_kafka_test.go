package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// checkCellKafka is the Kafka view of a formed 3-node cell: kcat -L on every
// node lists the three brokers; DescribeCluster names them and the
// controller; CreateTopics takes a replication factor up to 3 through the
// controller; a 6-partition topic created through node 1 is spread over the
// nodes (two leaders each); a Produce sent to a node that does not lead the
// partition gets NOT_LEADER_OR_FOLLOWER; kgo (idempotent, its producer id from
// the controller's blocks), sarama and kcat produce keyed
// records through the cell, each partition's records landing on its
// leader's disk only; kcat, sarama and a kgo consumer group read them all
// back, the group coordinated by the node FindCoordinator names (another
// node answers NOT_COORDINATOR).
func checkCellKafka(t *testing.T, net *cellNet, nodes []*cellProc, controller int32) {
	t.Helper()
	kcat := kcatPath(t)
	for i := range nodes {
		out, err := exec.Command(kcat, "-b", net.ip(i+1)+":9092", "-L", "-m", "5").CombinedOutput()
		if err != nil {
			t.Fatalf("kcat -L on node %d: %v\n%s", i+1, err, out)
		}
		for j := range nodes {
			if want := fmt.Sprintf("broker %d at %s:9092", j+1, net.ip(j+1)); !strings.Contains(string(out), want) {
				t.Errorf("kcat -L on node %d lacks %q:\n%s", i+1, want, out)
			}
		}
	}
	seeds := []string{net.ip(1) + ":9092", net.ip(2) + ":9092", net.ip(3) + ":9092"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	checkCellAdmin(t, ctx, seeds, controller)

	cellCLI(t, "topic", "create", "events", "-p", "6", "--brokers", net.ip(1)+":9092")
	leaderOf := map[int32]int32{}
	var out []byte
	defer func() {
		if t.Failed() {
			t.Logf("last kcat -L -t events on node 3:\n%s", out)
		}
	}()
	waitUntil(t, 10*time.Second, "6 partitions with leaders on node 3", func() bool {
		out, _ = exec.Command(kcat, "-b", net.ip(3)+":9092", "-L", "-t", "events", "-m", "5").CombinedOutput()
		clear(leaderOf)
		for _, l := range strings.Split(string(out), "\n") {
			var p, leader int32
			if _, err := fmt.Sscanf(strings.TrimSpace(l), "partition %d, leader %d,", &p, &leader); err == nil && leader > 0 {
				leaderOf[p] = leader
			}
		}
		return len(leaderOf) == 6
	})
	waitTopicEverywhere(t, ctx, seeds, "events", 6)
	led := map[int32]int{}
	for _, l := range leaderOf {
		led[l]++
	}
	if led[1] != 2 || led[2] != 2 || led[3] != 2 {
		t.Errorf("partition leaders per node %v, want 2 each", led)
	}

	// kgo's defaults: an idempotent producer, its id from one node's block
	// of the controller, valid on every partition leader.
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("events"), kgo.MaxVersions(kversion.V3_0_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// A Produce sent to a node that does not lead partition 0: refused.
	other := leaderOf[0]%3 + 1
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "events", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: lcBatch("astray")}}}}
	if err := cl.Ping(ctx); err != nil { // loads the brokers
		t.Fatal(err)
	}
	resp, err := cl.Broker(int(other)).Request(ctx, req)
	if err != nil {
		t.Fatalf("produce to node %d: %v", other, err)
	}
	if code := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.NotLeaderForPartition.Code {
		t.Errorf("produce to partition 0 (leader %d) through node %d: error %d, want NOT_LEADER_OR_FOLLOWER (6)", leaderOf[0], other, code)
	}

	if m := cellMetrics(t, nodes[other-1]); !strings.Contains(m, `katka_kafka_cell_redirects_total{error="not_leader"} `) {
		t.Errorf("node %d counts no redirect in katka_kafka_cell_redirects_total", other)
	}

	// kgo, sarama and kcat produce through the cell.
	const nKgo, nSarama, nKcat = 600, 300, 300
	var recs []*kgo.Record
	for i := range nKgo {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("kgo produce to the cell: %v", err)
	}
	scfg := sarama.NewConfig()
	scfg.Producer.Return.Successes = true
	scfg.Producer.RequiredAcks = sarama.WaitForAll
	scfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	prod, err := sarama.NewSyncProducer(seeds[1:2], scfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]*sarama.ProducerMessage, nSarama)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: "events", Key: sarama.StringEncoder(fmt.Sprint("s", i)), Value: sarama.StringEncoder("sarama")}
	}
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatalf("sarama produce to the cell: %v", err)
	}
	prod.Close()
	var lines strings.Builder
	for i := range nKcat {
		fmt.Fprintf(&lines, "c%d:kcat\n", i)
	}
	kp := exec.Command(kcat, "-P", "-b", net.ip(3)+":9092", "-t", "events", "-K", ":", "-X", "acks=all")
	kp.Stdin = strings.NewReader(lines.String())
	if out, err := kp.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce to the cell: %v\n%s", err, out)
	}
	const n = nKgo + nSarama + nKcat

	// Each partition's records are on its leader's disk, and only there.
	total := int64(0)
	for i := range nodes {
		hw := topicHighWatermarks(t, nodes[i], "events")
		for p, v := range hw {
			total += v
			if v != 0 && leaderOf[int32(p)] != int32(i+1) {
				t.Errorf("node %d holds %d records of partition %d, led by node %d", i+1, v, p, leaderOf[int32(p)])
			}
		}
	}
	if total != n {
		t.Errorf("the nodes hold %d records together, want %d (each partition on one node, the astray batch nowhere)", total, n)
	}

	// kcat reads everything through node 3, sarama through node 1.
	out, err = exec.Command(kcat, "-b", net.ip(3)+":9092", "-C", "-t", "events", "-o", "beginning", "-e", "-q", "-f", "%k\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat consume: %v\n%s", err, out)
	}
	if got := len(strings.Fields(string(out))); got != n {
		t.Errorf("kcat read %d records through node 3, want %d", got, n)
	}
	if got := saramaCount(t, seeds[0:1], scfg, "events"); got != n {
		t.Errorf("sarama read %d records, want %d", got, n)
	}
	checkCellGroup(t, ctx, seeds, n)
}

// checkCellAdmin: DescribeCluster names the three nodes and the controller;
// CreateTopics refuses a replication factor above the node count and answers
// the one it took; CreatePartitions and DeleteTopics go through the
// controller and every node follows.
func checkCellAdmin(t *testing.T, ctx context.Context, seeds []string, controller int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds[2]))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, cl)
	if err != nil || len(dc.Brokers) != 3 || dc.ControllerID != controller {
		t.Errorf("DescribeCluster: %+v, %v; want 3 brokers, controller %d", dc, err, controller)
	}
	adm := kadm.NewClient(cl)
	if r, _ := adm.CreateTopic(ctx, 2, 4, nil, "too-wide"); !errors.Is(r.Err, kerr.InvalidReplicationFactor) {
		t.Errorf("replication factor 4 in a cell of 3: %v, want INVALID_REPLICATION_FACTOR", r.Err)
	}
	r, err := adm.CreateTopic(ctx, 3, 3, nil, "rf3")
	if err != nil || r.Err != nil || r.ReplicationFactor != 3 {
		t.Fatalf("replication factor 3: %+v, %v", r, err)
	}
	// Every node applies the controller's change within a raft heartbeat
	// or commit timeout; a Kafka client asking another node at once may
	// still hear of no such topic, as with Kafka's metadata propagation.
	waitTopicEverywhere(t, ctx, seeds, "rf3", 3)
	if rs, err := adm.CreatePartitions(ctx, 2, "rf3"); err != nil || rs["rf3"].Err != nil {
		t.Errorf("create partitions: %v %+v", err, rs)
	}
	waitTopicEverywhere(t, ctx, seeds, "rf3", 5)
	if m, err := adm.Metadata(ctx, "rf3"); err != nil || len(m.Topics["rf3"].Partitions[4].Replicas) != 3 {
		t.Errorf("rf3's new partition: %+v, %v; want 3 replicas", m.Topics["rf3"], err)
	}
	if rs, err := adm.DeleteTopics(ctx, "rf3"); err != nil || rs["rf3"].Err != nil {
		t.Errorf("delete topic: %v %+v", err, rs)
	}
	waitUntil(t, 10*time.Second, "rf3 gone from every node's log", func() bool {
		for _, s := range seeds {
			c, err := kgo.NewClient(kgo.SeedBrokers(s))
			if err != nil {
				return false
			}
			ts, err := kadm.NewClient(c).ListTopics(ctx)
			c.Close()
			if err != nil || ts.Has("rf3") {
				return false
			}
		}
		return true
	})
}

// waitTopicEverywhere waits until every node's Metadata tells the topic with
// its partition count.
func waitTopicEverywhere(t *testing.T, ctx context.Context, seeds []string, topic string, parts int) {
	t.Helper()
	waitUntil(t, 10*time.Second, fmt.Sprintf("%s with %d partitions on every node", topic, parts), func() bool {
		for _, s := range seeds {
			c, err := kgo.NewClient(kgo.SeedBrokers(s))
			if err != nil {
				return false
			}
			m, err := kadm.NewClient(c).Metadata(ctx, topic)
			c.Close()
			if d := m.Topics[topic]; err != nil || d.Err != nil || len(d.Partitions) != parts {
				return false
			}
		}
		return true
	})
}

// saramaCount reads a topic's every partition from the beginning to its high
// watermark (as sarama's client tells it) with sarama's partition consumers.
func saramaCount(t *testing.T, addrs []string, cfg *sarama.Config, topic string) int {
	t.Helper()
	client, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	parts, err := cons.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("sarama partition %d high watermark: %v", p, err)
		}
		if hwm == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama partition %d: %v", p, err)
		}
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				got++
				done = m.Offset+1 >= hwm
			case err := <-pc.Errors():
				t.Fatalf("sarama partition %d: %v", p, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("sarama partition %d: stuck after %d records", p, got)
			}
		}
		pc.Close()
	}
	return got
}

// checkCellGroup: a kgo consumer group reads every record of "events"
// through the cell and commits; FindCoordinator names one node, and a
// JoinGroup sent to another answers NOT_COORDINATOR.
func checkCellGroup(t *testing.T, ctx context.Context, seeds []string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds[2]), kgo.ConsumerGroup("cell-group"), kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	for got < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) { t.Logf("group fetch %s-%d: %v", topic, p, err) })
		got += fs.NumRecords()
	}
	if got != n {
		t.Fatalf("the group read %d records, want %d", got, n)
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("group commit: %v", err)
	}
	adm := kadm.NewClient(cl)
	cs := adm.FindGroupCoordinators(ctx, "cell-group")
	if err := cs["cell-group"].Err; err != nil {
		t.Fatal(err)
	}
	coord := cs["cell-group"].NodeID
	offs, err := adm.FetchOffsets(ctx, "cell-group")
	if o, ok := offs.Lookup("events", 0); err != nil || !ok || o.At < 0 {
		t.Errorf("committed offsets: %+v, %v", offs, err)
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = "cell-group", "consumer", 10000, 10000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
	other := coord%3 + 1
	resp, err := cl.Broker(int(other)).Request(ctx, join)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.(*kmsg.JoinGroupResponse).ErrorCode; code != kerr.NotCoordinator.Code {
		t.Errorf("JoinGroup at node %d (coordinator %d): error %d, want NOT_COORDINATOR (16)", other, coord, code)
	}
	t.Logf("cell-group: coordinator node %d, %d records read through the cell", coord, got)
}

// topicHighWatermarks reads a topic's per-partition high watermarks from a
// node's admin API.
func topicHighWatermarks(t *testing.T, p *cellProc, topic string) []int64 {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr() + "/v1/topics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var topics []struct {
		Name       string `json:"name"`
		Partitions []struct {
			HighWatermark int64 `json:"high_watermark"`
		} `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&topics); err != nil {
		t.Fatal(err)
	}
	for _, tp := range topics {
		if tp.Name == topic {
			var out []int64
			for _, p := range tp.Partitions {
				out = append(out, p.HighWatermark)
			}
			return out
		}
	}
	t.Fatalf("node %d has no topic %s", p.i, topic)
	return nil
}
