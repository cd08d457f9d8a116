package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// testCell is an in-process cell: nodes over seeds on 127.0.0.1, each with
// its own broker routed through the cell (as `katka serve` wires them).
type testCell struct {
	nodes   []*Node
	brokers []*broker.Broker
}

// startTestCell starts n nodes (node ids 1..n); tweak may change each node's
// cell config.
func startTestCell(t testing.TB, n int, tweak func(i int, c *config.Cell)) *testCell {
	t.Helper()
	dirs := issue(t, "plant7", n)
	lns := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lns {
		lns[i] = boundPeerPort(t)
		addrs[i] = lns[i].Addr().String()
	}
	fast := RaftTimeouts{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond, LeaderLease: 250 * time.Millisecond}
	tc := &testCell{nodes: make([]*Node, n), brokers: make([]*broker.Broker, n)}
	t.Cleanup(func() {
		for i := range tc.nodes {
			tc.stop(i)
		}
	})
	for i := range n {
		c := config.Default().Cell
		c.Name, c.CredentialDir, c.PeerAddr, c.MDNS = "plant7", dirs[i], addrs[i], false
		c.Seeds = slices.Delete(slices.Clone(addrs), i, i+1)
		c.BootstrapExpect, c.RebrowseInterval, c.PeerTTL = min(n, 3), 500*time.Millisecond, 5*time.Second
		if tweak != nil {
			tweak(i, &c)
		}
		b, err := broker.Open(broker.Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		nd, err := Start(Options{Cell: c, DataDir: t.TempDir(), KafkaAddr: fmt.Sprintf("127.0.0.1:%d", 19092+i),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Raft: &fast, PeerListener: lns[i]})
		if err != nil {
			b.Close()
			t.Fatal(err)
		}
		b.SetRouter(nd.Router(b))
		nd.Reconcile(testTopics{b})
		tc.nodes[i], tc.brokers[i] = nd, b
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d registered nodes everywhere", n), func() bool {
		for _, nd := range tc.nodes {
			if len(nd.Metadata().Nodes) != n || nd.ControllerID() < 0 {
				return false
			}
		}
		return true
	})
	return tc
}

// stop closes node i (index, node id i+1) and its broker.
func (tc *testCell) stop(i int) {
	if tc.nodes[i] != nil {
		tc.nodes[i].Close()
		tc.nodes[i] = nil
	}
	if tc.brokers[i] != nil {
		tc.brokers[i].Close()
		tc.brokers[i] = nil
	}
}

// TestWritesRouteToPartitionLeaders: a writer on node 1 produces through
// its broker API to every partition of a topic spread over 3 nodes; each
// partition's records land in its leader's log only, in order, and a
// forwarded write returns the leader's offset.
func TestWritesRouteToPartitionLeaders(t *testing.T) {
	tc := startTestCell(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tc.nodes[0].CreateTopic(ctx, "telemetry", 6, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the topic on every broker", func() bool {
		for _, b := range tc.brokers {
			if _, err := b.Topic("telemetry"); err != nil {
				return false
			}
		}
		return true
	})
	md := tc.nodes[0].Metadata()
	src := tc.brokers[0]
	for round := range 3 {
		for p := range int32(6) {
			recs := []broker.Record{{Key: []byte("k"), Value: []byte(fmt.Sprintf("p%d-r%d-a", p, round))}, {Value: []byte(fmt.Sprintf("p%d-r%d-b", p, round))}}
			var base int64
			var err error
			if round%2 == 0 {
				base, err = src.ProduceBatches(ctx, "telemetry", p, recs, broker.AcksAll)
			} else {
				base, err = src.Produce(ctx, "telemetry", p, recs, broker.AcksAll)
			}
			if err != nil {
				t.Fatalf("produce to partition %d (leader %d): %v", p, md.Topics["telemetry"].Partitions[p].Leader, err)
			}
			if base != int64(2*round) {
				t.Errorf("partition %d round %d: base offset %d, want %d", p, round, base, 2*round)
			}
		}
	}
	for p := range int32(6) {
		leader := md.Topics["telemetry"].Partitions[p].Leader
		for i, b := range tc.brokers {
			res, err := b.Fetch(ctx, "telemetry", p, 0, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			if int32(i+1) != leader {
				if len(res.Records) != 0 {
					t.Errorf("partition %d: node %d (not the leader %d) holds %d records", p, i+1, leader, len(res.Records))
				}
				continue
			}
			var got []string
			for _, r := range res.Records {
				got = append(got, string(r.Value))
			}
			want := []string{}
			for round := range 3 {
				want = append(want, fmt.Sprintf("p%d-r%d-a", p, round), fmt.Sprintf("p%d-r%d-b", p, round))
			}
			if !slices.Equal(got, want) {
				t.Errorf("partition %d on leader %d: %q, want %q", p, leader, got, want)
			}
			if string(res.Records[0].Key) != "k" || res.Records[1].Key != nil {
				t.Errorf("partition %d: keys %q %q, want \"k\" and null", p, res.Records[0].Key, res.Records[1].Key)
			}
		}
	}
	// A topic an input creates on its own node (as sensors do) is placed by
	// the controller before its first write: the write waits for that, then
	// goes to the partition's leader; the topic is not adopted by the writer.
	if _, err := tc.brokers[1].CreateTopic("sensors.local", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if _, err := tc.brokers[1].ProduceBatches(ctx, "sensors.local", p, []broker.Record{{Value: []byte("r")}}, broker.AcksAll); err != nil {
			t.Fatalf("first write to a new local topic's partition %d: %v", p, err)
		}
	}
	leaders := map[int32]bool{}
	for p, pi := range tc.nodes[1].Metadata().Topics["sensors.local"].Partitions {
		leaders[pi.Leader] = true
		b := tc.brokers[pi.Leader-1]
		if res, err := b.Fetch(ctx, "sensors.local", int32(p), 0, 1<<20, 0); err != nil || len(res.Records) != 1 {
			t.Errorf("sensors.local-%d on its leader %d: %d records, %v", p, pi.Leader, len(res.Records), err)
		}
	}
	if len(leaders) != 3 {
		t.Errorf("sensors.local led by %v, want spread over the 3 nodes", leaders)
	}
	// A topic only this node knows (never proposed: internal) stays local.
	if _, err := src.CreateTopic("__local", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Produce(ctx, "__local", 0, []broker.Record{{Value: []byte("x")}}, broker.AcksAll); err != nil {
		t.Fatalf("internal topic: %v", err)
	}
}

// TestForwardCodecAndLimits: a request frame round-trips records (null and
// empty keys, headers, zero timestamps); a frame over maxForwardFrame, one
// with more than maxForwardItems writes, a truncated one and a hostile record
// count are refused.
func TestForwardCodecAndLimits(t *testing.T) {
	ts := time.UnixMilli(1700000000123)
	items := []fwdItem{{topic: "t", partition: 5, acks: broker.AcksAll, recs: []broker.Record{
		{Key: nil, Value: []byte("v"), Timestamp: ts, Headers: []broker.Header{{Key: "h", Value: nil}, {Key: "", Value: []byte{}}}},
		{Key: []byte{}, Value: nil},
	}}, {topic: "u", partition: 0, acks: broker.AcksNone}}
	frame := appendRequest(nil, 77, items)
	p, err := readFrame(bytes.NewReader(frame), nil, maxForwardFrame)
	if err != nil {
		t.Fatal(err)
	}
	id, got, err := parseRequest(p)
	if err != nil || id != 77 || len(got) != 2 {
		t.Fatalf("parse: id %d, %d items, %v", id, len(got), err)
	}
	r0, r1 := got[0].recs[0], got[0].recs[1]
	if got[0].topic != "t" || got[0].partition != 5 || got[0].acks != broker.AcksAll || got[1].acks != broker.AcksNone ||
		r0.Key != nil || string(r0.Value) != "v" || !r0.Timestamp.Equal(ts) || len(r0.Headers) != 2 || r0.Headers[0].Value != nil || r0.Headers[1].Value == nil ||
		r1.Key == nil || r1.Value != nil || !r1.Timestamp.IsZero() {
		t.Errorf("round trip: %+v", got)
	}
	resp := appendResponse(nil, 77, []fwdResult{{base: 12, code: fwdFailed, kind: errKind(broker.ErrRecordTooLarge), leader: 3, msg: "too big"}})
	rp, _ := readFrame(bytes.NewReader(resp), nil, maxForwardFrame)
	if _, res, err := parseResponse(rp); err != nil || !errors.Is(res[0].error(), broker.ErrRecordTooLarge) || res[0].base != 12 || res[0].leader != 3 {
		t.Errorf("response round trip: %+v %v", res, err)
	}

	big := make([]byte, 4)
	binary.BigEndian.PutUint32(big, maxForwardFrame+1)
	if _, err := readFrame(bytes.NewReader(big), nil, maxForwardFrame); err == nil {
		t.Error("a frame over maxForwardFrame was read")
	}
	many := make([]fwdItem, maxForwardItems+1)
	for i := range many {
		many[i].topic = "t"
	}
	p, _ = readFrame(bytes.NewReader(appendRequest(nil, 1, many)), nil, maxForwardFrame)
	if _, _, err := parseRequest(p); err == nil {
		t.Errorf("a frame with %d writes was accepted", len(many))
	}
	whole := appendRequest(nil, 1, items)[4:]
	if _, _, err := parseRequest(whole[:len(whole)-3]); err == nil {
		t.Error("a truncated frame was accepted")
	}
	hostile := binary.BigEndian.AppendUint64(nil, 1)
	hostile = binary.AppendUvarint(hostile, 1)
	hostile = append(appendBytes(hostile, []byte("t")), 0, 0)
	hostile = binary.AppendUvarint(hostile, 1<<40) // a record count no frame can hold
	if _, _, err := parseRequest(hostile); err == nil {
		t.Error("a frame claiming 2^40 records was accepted")
	}
}

// TestServeWriteChecksLeadership: the receiving side answers not-leader (with
// the leader it knows) for a partition it does not lead, and retry for a
// topic not in its metadata, so the sender refreshes and retries.
func TestServeWriteChecksLeadership(t *testing.T) {
	tc := startTestCell(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tc.nodes[0].CreateTopic(ctx, "lead", 3, 1); err != nil {
		t.Fatal(err)
	}
	n2 := tc.nodes[1]
	waitFor(t, 10*time.Second, "the topic in node 2's metadata and broker", func() bool {
		_, err := tc.brokers[1].Topic("lead")
		return err == nil && len(n2.Metadata().Topics["lead"].Partitions) == 3
	})
	for p, pi := range n2.Metadata().Topics["lead"].Partitions {
		res := n2.serveWrite(fwdItem{topic: "lead", partition: int32(p), acks: broker.AcksAll, recs: []broker.Record{{Value: []byte("x")}}})
		switch {
		case pi.Leader == 2 && res.code != fwdOK:
			t.Errorf("partition %d led by node 2: %+v", p, res)
		case pi.Leader != 2 && (res.code != fwdNotLeader || res.leader != pi.Leader):
			t.Errorf("partition %d led by node %d: %+v, want not leader naming %d", p, pi.Leader, res, pi.Leader)
		}
	}
	if res := n2.serveWrite(fwdItem{topic: "nope", recs: []broker.Record{{}}}); res.code != fwdRetry {
		t.Errorf("unknown topic: %+v, want retry", res)
	}
}

// testTopics is a broker as the reconciler sees it (cmd/katka has the real one).
type testTopics struct{ b *broker.Broker }

func (l testTopics) Topics() []LocalTopic {
	var out []LocalTopic
	for _, t := range l.b.Topics() {
		lt := LocalTopic{Name: t.Name, ID: t.IDString(), Partitions: t.Partitions, Internal: broker.InternalTopic(t.Name), Empty: true}
		parts, _ := l.b.Partitions(t.Name)
		for _, p := range parts {
			lt.Empty = lt.Empty && p.HighWatermark == 0
		}
		out = append(out, lt)
	}
	return out
}

func (l testTopics) CreateTopic(name string, n int32, _ map[string]string, id string) error {
	var tid [16]byte
	if b, err := hex.DecodeString(id); err == nil && len(b) == len(tid) {
		copy(tid[:], b)
	}
	_, err := l.b.CreateTopicID(name, n, broker.TopicConfig{}, tid)
	return err
}

func (l testTopics) CreatePartitions(name string, n int32) error {
	return l.b.CreatePartitions(name, n)
}

func (l testTopics) DeleteTopic(name string) error { return l.b.DeleteTopic(name) }
