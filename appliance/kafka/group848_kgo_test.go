package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
)

// ownership records which member holds each partition, from the members'
// assigned/revoked/lost callbacks, and every moment a partition was handed
// to a member while another still held it.
type ownership struct {
	mu      sync.Mutex
	owner   map[int32]int
	doubles []string
}

func (o *ownership) opts(member int, topic string) []kgo.Opt {
	drop := func(ps map[string][]int32) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, p := range ps[topic] {
			if o.owner[p] == member {
				delete(o.owner, p)
			}
		}
	}
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			o.mu.Lock()
			defer o.mu.Unlock()
			for _, p := range a[topic] {
				if cur, ok := o.owner[p]; ok && cur != member {
					o.doubles = append(o.doubles, fmt.Sprintf("partition %d given to member %d while member %d holds it", p, member, cur))
				}
				o.owner[p] = member
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				o.mu.Lock()
				o.doubles = append(o.doubles, fmt.Sprintf("member %d: commit on revoke: %v", member, err))
				o.mu.Unlock()
			}
			drop(r)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { drop(r) }),
	}
}

// count reports how many partitions each member holds.
func (o *ownership) count() map[int]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int]int{}
	for _, m := range o.owner {
		out[m]++
	}
	return out
}

// TestGroup848KgoBalancesAndRebalances: three franz-go consumers with the
// KIP-848 protocol (kgo.ServerSideBalancer, the server's "uniform" assignor)
// share 6 partitions 2 each, consume 600 records exactly once, and after one
// leaves the other two hold 3 each; no partition is ever held by two members.
func TestGroup848KgoBalancesAndRebalances(t *testing.T) {
	e := newEnvConfig(t, Config{State: StateConfig{Groups: group.Config{ConsumerHeartbeatInterval: 200 * time.Millisecond}}})
	t.Cleanup(func() { e.srv.closeGroups() })
	if _, err := e.b.CreateTopic("t848", 6, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	groupProduceN(t, e, "t848", 600)
	own := &ownership{owner: map[int32]int{}}
	var ms []*groupMember
	for i := range 3 {
		opts := append(own.opts(i, "t848"), kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer()))
		ms = append(ms, startMember(t, e, "g848", "t848", opts...))
	}
	balanced := func(members, each int) func() bool {
		return func() bool {
			c := own.count()
			if len(c) != members {
				return false
			}
			for _, n := range c {
				if n != each {
					return false
				}
			}
			return true
		}
	}
	took := waitFor(t, 20*time.Second, "3 members with 2 partitions each", balanced(3, 2))
	t.Logf("3 members balanced after %v", took)
	waitFor(t, 10*time.Second, "600 records consumed", func() bool {
		n := 0
		for _, m := range ms {
			m.mu.Lock()
			n += len(m.seen)
			m.mu.Unlock()
		}
		return n == 600
	})

	// The group as ConsumerGroupDescribe shows it.
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{"g848"}
	dresp, err := req.RequestWith(ctxT(t), e.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if g := dresp.Groups[0]; g.ErrorCode != 0 || g.State != "Stable" || len(g.Members) != 3 || g.AssignorName != "uniform" {
		t.Fatalf("describe: %+v", g)
	}

	ms[2].close()
	took = waitFor(t, 10*time.Second, "2 members with 3 partitions each", balanced(2, 3))
	t.Logf("leave: rebalanced in %v", took)
	ms[0].close()
	ms[1].close()
	if len(own.doubles) > 0 {
		t.Fatalf("ownership violations: %v", own.doubles)
	}
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
	offs, err := e.admin(t).FetchOffsets(ctxT(t), "g848")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 600 {
		t.Errorf("committed offsets sum to %d, want 600", sum)
	}
	lg, err := e.admin(t).ListGroups(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if g := lg["g848"]; g.ProtocolType != "consumer" || g.State != "Empty" {
		t.Errorf("listed as %+v, want an Empty consumer group", g)
	}
}

// TestGroup848KgoSimple is franz-go's TestGroupSimple/848: one consumer with
// the KIP-848 protocol produces and consumes a record twice, committing each.
func TestGroup848KgoSimple(t *testing.T) {
	e := newGroupEnv(t)
	if _, err := e.b.CreateTopic("simple848", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.DefaultProduceTopic("simple848"), kgo.ConsumeTopics("simple848"), kgo.ConsumerGroup("gs848"),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.FetchMaxWait(time.Second), kgo.ServerSideBalancer())
	for range 2 {
		if err := cl.ProduceSync(ctxT(t), kgo.StringRecord("foo")).FirstErr(); err != nil {
			t.Fatal(err)
		}
		fs := cl.PollFetches(ctxT(t))
		if errs := fs.Errors(); errs != nil {
			t.Fatalf("fetch errors: %v", errs)
		}
		if n := fs.NumRecords(); n != 1 {
			t.Fatalf("got %d records, want 1", n)
		}
		if err := cl.CommitUncommittedOffsets(ctxT(t)); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{"gs848"}
	dresp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if g := dresp.Groups[0]; g.ErrorCode != 0 || len(g.Members) != 1 || g.Members[0].MemberEpoch < 1 {
		t.Fatalf("describe: %+v", g)
	}
}
