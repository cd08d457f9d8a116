package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// owners tracks which kgo member holds each partition (from its callbacks)
// and records any moment a partition was given to a member while another
// still held it.
type owners struct {
	mu      sync.Mutex
	owner   map[int32]int
	doubles []string
	revokes int
}

func (o *owners) callbacks(member int, topic string) []kgo.Opt {
	drop := func(ps map[string][]int32) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, p := range ps[topic] {
			if o.owner[p] == member {
				delete(o.owner, p)
			}
			o.revokes++
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
			cl.CommitMarkedOffsets(ctx)
			drop(r)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { drop(r) }),
	}
}

func (o *owners) snapshot() (map[int32]int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int32]int{}
	for p, m := range o.owner {
		out[p] = m
	}
	return out, o.revokes
}

// describe848 returns the group as ConsumerGroupDescribe shows it: state and
// each member's partition count, or "" on error.
func describe848(t *testing.T, cl *kgo.Client, group string) (string, []int) {
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctxFor(t, 5*time.Second), cl)
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
		return "", nil
	}
	var counts []int
	for _, m := range resp.Groups[0].Members {
		n := 0
		for _, tp := range m.Assignment.TopicPartitions {
			n += len(tp.Partitions)
		}
		counts = append(counts, n)
	}
	sort.Ints(counts)
	return resp.Groups[0].State, counts
}

// TestGroup848Kgo: three franz-go consumers with the KIP-848 protocol
// (kgo.ServerSideBalancer, the broker's "uniform" assignor) against the real
// binary: 2 partitions each, one leaves and the other two get 3 each, no
// partition ever held by two members; then katka is SIGKILLed and restarted:
// the group is replayed from __consumer_offsets and the members carry on in
// their epochs with the same partitions (no revocation), consuming new
// records exactly once.
func TestGroup848Kgo(t *testing.T) {
	t.Parallel()
	k := newGroupKatka(t, t.TempDir())
	k.start()
	k.setupTopic(t, "k848", 600)
	var mu sync.Mutex
	seen := map[string]int{}
	own := &owners{owner: map[int32]int{}}
	var ms []*kgoMember
	for i := range 3 {
		opts := append(own.callbacks(i, "k848"), kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer()))
		ms = append(ms, startKgo848Member(t, k, "g848", "k848", seen, &mu, opts...))
	}
	adm := k.client(t)
	stable := func(counts ...int) func() bool {
		return func() bool {
			st, got := describe848(t, adm, "g848")
			if st != "Stable" || fmt.Sprint(got) != fmt.Sprint(counts) {
				return false
			}
			o, _ := own.snapshot()
			return len(o) == 6
		}
	}
	took := waitUntil(t, 40*time.Second, "3 KIP-848 members with 2 partitions each", stable(2, 2, 2))
	t.Logf("kip-848: 3 members balanced after %v", took)
	waitUntil(t, 15*time.Second, "600 records", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 600 })
	t0 := time.Now()
	ms[2].close()
	waitUntil(t, 30*time.Second, "2 members with 3 partitions each", stable(3, 3))
	t.Logf("kip-848: leaving member's partitions taken over after %v", time.Since(t0).Round(time.Millisecond))

	before, revokes := own.snapshot()
	k.kill()
	restartOnSameKafkaPort(t, k)
	// The members reconnect and heartbeat in their epochs: same partitions,
	// nothing revoked.
	waitUntil(t, 30*time.Second, "the group back after the restart", stable(3, 3))
	cl := k.client(t, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var recs []*kgo.Record
	for i := range 60 {
		recs = append(recs, &kgo.Record{Topic: "k848", Value: []byte(fmt.Sprint("after-", i))})
	}
	if err := cl.ProduceSync(ctxFor(t, 20*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "660 records", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 660 })
	after, revokes2 := own.snapshot()
	if fmt.Sprint(before) != fmt.Sprint(after) || revokes2 != revokes {
		t.Errorf("assignment changed across the restart: %v (%d revokes) -> %v (%d revokes)", before, revokes, after, revokes2)
	}
	ms[0].close()
	ms[1].close()
	own.mu.Lock()
	if len(own.doubles) > 0 {
		t.Errorf("ownership violations: %v", own.doubles)
	}
	own.mu.Unlock()
	mu.Lock()
	for r, n := range seen {
		if n != 1 {
			t.Errorf("record %s consumed %d times", r, n)
		}
	}
	mu.Unlock()
	offs, err := kadm.NewClient(adm).FetchOffsets(ctxFor(t, 5*time.Second), "g848")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 660 {
		t.Errorf("committed offsets sum to %d, want 660", sum)
	}
}

// startKgo848Member is startKgoMember with extra options (the KIP-848 opt-in
// and the ownership callbacks).
func startKgo848Member(t *testing.T, k *groupKatka, group, topic string, seen map[string]int, mu *sync.Mutex, opts ...kgo.Opt) *kgoMember {
	base := []kgo.Opt{kgo.SeedBrokers(k.Kafka), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200 * time.Millisecond), kgo.BlockRebalanceOnPoll()}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m := &kgoMember{cl: cl, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				mu.Lock()
				seen[fmt.Sprintf("%d %d", r.Partition, r.Offset)]++
				mu.Unlock()
				cl.MarkCommitRecords(r)
			})
			cl.AllowRebalance()
		}
	}()
	t.Cleanup(m.close)
	return m
}

// restartOnSameKafkaPort starts katka again on its data dir with the Kafka
// listener on the address it had (so running clients reconnect), waiting
// for /healthz.
func restartOnSameKafkaPort(t *testing.T, k *groupKatka) {
	t.Helper()
	hp, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(hp)
	lf, err := os.OpenFile(k.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	k.cmd = exec.Command(katkaBin, "serve", "--config", k.config, "--data-dir", k.dataDir, "--http-addr", httpAddr, "--kafka-addr", k.Kafka)
	k.cmd.Stdout, k.cmd.Stderr = lf, lf
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); lf.Close(); close(done) }(k.cmd, k.done)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-k.done:
			t.Fatalf("katka exited at restart (Kafka port %s taken?)", k.Kafka)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("katka did not become healthy after the restart")
}
