package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// newGroupEnv is newEnv with the group coordinator stopped before the broker
// closes (the server owns and closes it).
func newGroupEnv(t *testing.T) *testEnv {
	e := newEnv(t)
	t.Cleanup(func() { e.srv.closeGroups() })
	return e
}

// groupMember is one kgo group consumer that records what it consumed.
type groupMember struct {
	cl       *kgo.Client
	mu       sync.Mutex
	assigned map[int32]bool
	seen     map[string]int
	cancel   context.CancelFunc
	done     chan struct{}
}

func startMember(t *testing.T, e *testEnv, groupID, topic string, opts ...kgo.Opt) *groupMember {
	t.Helper()
	m := &groupMember{assigned: map[int32]bool{}, seen: map[string]int{}, done: make(chan struct{})}
	base := []kgo.Opt{
		kgo.SeedBrokers(e.addr), kgo.ConsumerGroup(groupID), kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
			m.mu.Unlock()
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			cl.CommitMarkedOffsets(ctx)
			m.mu.Lock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
			m.mu.Unlock()
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
			m.mu.Unlock()
		}),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200 * time.Millisecond), kgo.BlockRebalanceOnPoll(),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				m.mu.Lock()
				m.seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
				m.mu.Unlock()
				cl.MarkCommitRecords(r)
			})
			cl.AllowRebalance()
		}
	}()
	return m
}

func (m *groupMember) partitions() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int32
	for p := range m.assigned {
		out = append(out, p)
	}
	return out
}

// close leaves the group cleanly, committing what was consumed.
func (m *groupMember) close() {
	m.cancel()
	<-m.done
	m.cl.Close()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < d {
		if cond() {
			return time.Since(t0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

func groupProduceN(t *testing.T, e *testEnv, topic string, n int) {
	t.Helper()
	cl := e.client(t, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i))})
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestGroupKgoCooperativeStickyBalancesAndTakesOver(t *testing.T) {
	e := newGroupEnv(t)
	if _, err := e.b.CreateTopic("gtopic", 6, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	groupProduceN(t, e, "gtopic", 600)
	var ms []*groupMember
	for i := 0; i < 3; i++ {
		ms = append(ms, startMember(t, e, "g1", "gtopic", kgo.Balancers(kgo.CooperativeStickyBalancer())))
	}
	balanced := func(ms []*groupMember, each int) func() bool {
		return func() bool {
			total := map[int32]int{}
			for _, m := range ms {
				ps := m.partitions()
				if len(ps) != each {
					return false
				}
				for _, p := range ps {
					total[p]++
				}
			}
			return len(total) == 6
		}
	}
	took := waitFor(t, 20*time.Second, "3 members with 2 partitions each", balanced(ms, 2))
	t.Logf("3 members balanced after %v", took)
	// Everything consumed exactly once.
	waitFor(t, 10*time.Second, "600 records consumed", func() bool {
		n := 0
		for _, m := range ms {
			m.mu.Lock()
			n += len(m.seen)
			m.mu.Unlock()
		}
		return n == 600
	})
	ms[2].close()
	took = waitFor(t, 6*time.Second, "2 members with 3 partitions each", balanced(ms[:2], 3))
	t.Logf("leave: rebalanced in %v", took)
	ms[0].close()
	ms[1].close()
	// Every record was consumed exactly once and the commits are at the end.
	seen := map[string]int{}
	for _, m := range ms {
		for k, v := range m.seen {
			seen[k] += v
		}
	}
	for k, v := range seen {
		if v != 1 {
			t.Errorf("record %s consumed %d times", k, v)
		}
	}
	adm := e.admin(t)
	offs, err := adm.FetchOffsets(ctxT(t), "g1")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 600 {
		t.Errorf("committed offsets sum to %d, want 600: %v", sum, offs)
	}
	dg, err := adm.DescribeGroups(ctxT(t), "g1")
	if err != nil {
		t.Fatal(err)
	}
	if st := dg["g1"].State; st != "Empty" {
		t.Errorf("state after all left = %s, want Empty", st)
	}
}

func TestGroupOffsetFetchUnknownGroupAndSimpleCommit(t *testing.T) {
	e := newGroupEnv(t)
	if _, err := e.b.CreateTopic("t", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	for _, v := range []int16{1, 5, 7, 8} {
		req := kmsg.NewPtrOffsetFetchRequest()
		topics := []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}
		if v >= 8 {
			req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "nope", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 1}}}}}
		} else {
			req.Group, req.Topics = "nope", topics
		}
		resp := r.roundTrip(req, v).(*kmsg.OffsetFetchResponse)
		var parts []kmsg.OffsetFetchResponseTopicPartition
		if v >= 8 {
			if resp.Groups[0].ErrorCode != 0 {
				t.Fatalf("v%d group error %d", v, resp.Groups[0].ErrorCode)
			}
			for _, p := range resp.Groups[0].Topics[0].Partitions {
				parts = append(parts, kmsg.OffsetFetchResponseTopicPartition{Offset: p.Offset, ErrorCode: p.ErrorCode})
			}
		} else {
			if resp.ErrorCode != 0 {
				t.Fatalf("v%d error %d", v, resp.ErrorCode)
			}
			parts = resp.Topics[0].Partitions
		}
		if len(parts) != 2 || parts[0].Offset != -1 || parts[1].Offset != -1 || parts[0].ErrorCode != 0 {
			t.Fatalf("v%d unknown group: %+v", v, parts)
		}
	}
	// A simple (generation -1) commit creates an Empty group; unknown topics are refused.
	adm := e.admin(t)
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "t", Partition: 1, At: 42, LeaderEpoch: -1})
	os.Add(kadm.Offset{Topic: "missing", Partition: 0, At: 1, LeaderEpoch: -1})
	cr, err := adm.CommitOffsets(ctxT(t), "simple", os)
	if err != nil {
		t.Fatal(err)
	}
	if err := cr["t"][1].Err; err != nil {
		t.Fatalf("commit t/1: %v", err)
	}
	if err := cr["missing"][0].Err; !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("commit missing/0: %v", err)
	}
	fo, err := adm.FetchOffsets(ctxT(t), "simple")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := fo.Lookup("t", 1); o.At != 42 {
		t.Fatalf("fetched %+v", o)
	}
	// DeleteGroups removes it; a second delete says GROUP_ID_NOT_FOUND.
	dr, err := adm.DeleteGroups(ctxT(t), "simple")
	if err != nil || dr["simple"].Err != nil {
		t.Fatalf("delete: %v %v", err, dr["simple"].Err)
	}
	dr, _ = adm.DeleteGroups(ctxT(t), "simple")
	if !errors.Is(dr["simple"].Err, kerr.GroupIDNotFound) {
		t.Fatalf("second delete: %v", dr["simple"].Err)
	}
	fo, _ = adm.FetchOffsets(ctxT(t), "simple")
	if o, ok := fo.Lookup("t", 1); ok && o.At != -1 {
		t.Fatalf("offset survived delete: %+v", o)
	}
}
