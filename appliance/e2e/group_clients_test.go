package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupKatka is the real binary with its Kafka listener on (the shared Katka
// helper starts it with the listener off).
type groupKatka struct {
	t       *testing.T
	dataDir string
	config  string
	Kafka   string // host:port of the Kafka listener
	cmd     *exec.Cmd
	done    chan struct{}
	log     string
}

func newGroupKatka(t *testing.T, dataDir string) *groupKatka {
	t.Helper()
	requireBinary(t)
	work := t.TempDir()
	k := &groupKatka{t: t, dataDir: dataDir, config: filepath.Join(work, "katka.yaml"), log: filepath.Join(work, "katka.log")}
	if err := os.WriteFile(k.config, []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.kill()
		if t.Failed() {
			b, _ := os.ReadFile(k.log)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("katka log tail:\n%s", b)
		}
	})
	return k
}

// start runs katka and waits for its /healthz (which turns 200 once the Kafka
// listener accepts), choosing other ports if another process took them.
func (k *groupKatka) start() {
	k.t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		if k.startOnce() {
			return
		}
	}
	k.t.Fatalf("katka did not become healthy on its own ports in 3 attempts")
}

// startOnce starts katka on fresh ports; false when another process answered
// on them.
func (k *groupKatka) startOnce() bool {
	k.t.Helper()
	hp, err1 := freePort()
	kp, err2 := freePort()
	if err1 != nil || err2 != nil {
		k.t.Fatal(err1, err2)
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(hp)
	k.Kafka = "127.0.0.1:" + strconv.Itoa(kp)
	lf, err := os.OpenFile(k.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	var logFrom int64 // this start's lines follow
	if fi, err := lf.Stat(); err == nil {
		logFrom = fi.Size()
	}
	k.cmd = exec.Command(katkaBin, "serve", "--config", k.config, "--data-dir", k.dataDir, "--http-addr", httpAddr, "--kafka-addr", k.Kafka)
	k.cmd.Stdout, k.cmd.Stderr = lf, lf
	if err := k.cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	k.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); lf.Close(); close(done) }(k.cmd, k.done)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if ownHealthy(k.log, logFrom) {
					return true
				}
				k.kill()
				return false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.t.Fatalf("katka did not become healthy")
	return false
}

// kill SIGKILLs katka and waits for it to exit.
func (k *groupKatka) kill() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	select {
	case <-k.done:
		return
	default:
	}
	k.cmd.Process.Signal(syscall.SIGKILL)
	<-k.done
}

func (k *groupKatka) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Kafka)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// setupTopic creates a 6-partition topic with n records spread round robin.
func (k *groupKatka) setupTopic(t *testing.T, topic string, n int) {
	t.Helper()
	cl := k.client(t, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctxFor(t, 10*time.Second), 6, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctxFor(t, 20*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// assignment returns the partitions per member of a stable group, by
// DescribeGroups (nil while it is rebalancing).
func (k *groupKatka) assignment(t *testing.T, adm *kadm.Client, group string) map[string][]int32 {
	dg, err := adm.DescribeGroups(ctxFor(t, 5*time.Second), group)
	if err != nil || dg[group].State != "Stable" {
		return nil
	}
	out := map[string][]int32{}
	for _, m := range dg[group].Members {
		ca, ok := m.Assigned.AsConsumer()
		if !ok {
			return nil
		}
		out[m.MemberID] = nil
		for _, tp := range ca.Topics {
			out[m.MemberID] = append(out[m.MemberID], tp.Partitions...)
		}
	}
	return out
}

// balanced reports whether members members share the 6 partitions, each
// holding 6/members.
func balanced(a map[string][]int32, members int) bool {
	if len(a) != members {
		return false
	}
	seen := map[int32]bool{}
	for _, ps := range a {
		if len(ps) != 6/members {
			return false
		}
		for _, p := range ps {
			seen[p] = true
		}
	}
	return len(seen) == 6
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < d {
		if cond() {
			return time.Since(t0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

// waitProgress waits until remaining() reaches 0, checking every interval;
// it fails only when remaining has not gone down for stall. Used where the
// work is large and the box may be loaded: a fixed deadline would fail a slow
// but progressing run, while a stall still fails within stall.
func waitProgress(t *testing.T, stall, interval time.Duration, what string, remaining func() int) {
	t.Helper()
	best, since := -1, time.Now()
	for {
		r := remaining()
		if r == 0 {
			return
		}
		if best < 0 || r < best {
			best, since = r, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("no progress for %v waiting for %s: %d remaining", stall, what, r)
		}
		time.Sleep(interval)
	}
}

func kcatPath(t *testing.T) string {
	p, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not installed (apt-get install -y kcat) and CI=true")
		}
		t.Skip("kcat not installed (apt-get install -y kcat)")
	}
	return p
}

// TestGroupKcatBalancedConsumers: three `kcat -G` members on a 6-partition
// topic get two partitions each and consume every record once; when one is
// SIGKILLed the other two take its partitions within the session timeout.
func TestGroupKcatBalancedConsumers(t *testing.T) {
	kcat := kcatPath(t)
	t.Parallel()
	k := newGroupKatka(t, t.TempDir())
	k.start()
	k.setupTopic(t, "kc", 600)
	var mu sync.Mutex
	seen := map[string]int{}
	var cmds []*exec.Cmd
	for i := 0; i < 3; i++ {
		cmd := exec.Command(kcat, "-b", k.Kafka, "-G", "kcat-group", "-q", "-u", "-f", "%p %o\n",
			"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "-X", "auto.commit.interval.ms=200", "-X", "auto.offset.reset=earliest", "kc")
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		cmds = append(cmds, cmd)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				mu.Lock()
				seen[sc.Text()]++
				mu.Unlock()
			}
		}()
	}
	adm := kadm.NewClient(k.client(t))
	took := waitUntil(t, 30*time.Second, "3 kcat members with 2 partitions each", func() bool { return balanced(k.assignment(t, adm, "kcat-group"), 3) })
	t.Logf("kcat: 3 members balanced %v after the assignment was first checked", took)
	waitUntil(t, 15*time.Second, "600 records", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 600 })
	mu.Lock()
	for r, n := range seen {
		if n != 1 {
			t.Errorf("record %s consumed %d times", r, n)
		}
	}
	mu.Unlock()
	commitsAt := func() int64 {
		offs, err := adm.FetchOffsets(ctxFor(t, 5*time.Second), "kcat-group")
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		if err != nil {
			return -1
		}
		return sum
	}
	waitUntil(t, 10*time.Second, "auto-commits up to the end of every partition", func() bool { return commitsAt() == 600 })
	cmds[2].Process.Signal(syscall.SIGKILL)
	t0 := time.Now()
	waitUntil(t, 12*time.Second, "2 kcat members with 3 partitions each", func() bool { return balanced(k.assignment(t, adm, "kcat-group"), 2) })
	t.Logf("kcat: SIGKILLed member's partitions taken over after %v (session timeout 6s)", time.Since(t0).Round(time.Millisecond))
	// Absence of re-reads, proved by a marker: one new record per partition,
	// produced after the takeover. The new owners read each partition in
	// order from its committed offset, so anything they would re-read comes
	// before the marker; once every marker has arrived, nothing more can.
	mcl := k.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var markers []string
	for p := int32(0); p < 6; p++ {
		r, err := mcl.ProduceSync(ctxFor(t, 10*time.Second), &kgo.Record{Topic: "kc", Partition: p, Value: []byte("marker")}).First()
		if err != nil {
			t.Fatal(err)
		}
		markers = append(markers, fmt.Sprintf("%d %d", r.Partition, r.Offset))
	}
	waitUntil(t, 15*time.Second, "the marker record of every partition", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range markers {
			if seen[m] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	again := 0
	for _, n := range seen {
		again += n - 1
	}
	mu.Unlock()
	if again != 0 {
		t.Errorf("%d records consumed again after the takeover, want 0 (all were committed)", again)
	}
}

// kgoMember is a franz-go group consumer that records what it consumed.
type kgoMember struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func startKgoMember(t *testing.T, k *groupKatka, group, topic string, seen map[string]int, mu *sync.Mutex) *kgoMember {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Kafka), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200*time.Millisecond), kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) { cl.CommitMarkedOffsets(ctx) }))
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

func (m *kgoMember) close() {
	select {
	case <-m.done:
		return
	default:
	}
	m.cancel()
	<-m.done
	m.cl.Close() // commits marked offsets and leaves the group
}

// TestGroupKgoCooperativeSticky: three franz-go consumers with the
// cooperative-sticky balancer, then one leaves.
func TestGroupKgoCooperativeSticky(t *testing.T) {
	t.Parallel()
	k := newGroupKatka(t, t.TempDir())
	k.start()
	k.setupTopic(t, "kg", 600)
	var mu sync.Mutex
	seen := map[string]int{}
	var ms []*kgoMember
	for i := 0; i < 3; i++ {
		ms = append(ms, startKgoMember(t, k, "kgo-group", "kg", seen, &mu))
	}
	adm := kadm.NewClient(k.client(t))
	took := waitUntil(t, 30*time.Second, "3 kgo members with 2 partitions each", func() bool { return balanced(k.assignment(t, adm, "kgo-group"), 3) })
	t.Logf("kgo: 3 members balanced after %v", took)
	waitUntil(t, 15*time.Second, "600 records", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 600 })
	t0 := time.Now()
	ms[2].close()
	waitUntil(t, 6*time.Second, "2 kgo members with 3 partitions each", func() bool { return balanced(k.assignment(t, adm, "kgo-group"), 2) })
	t.Logf("kgo: leaving member's partitions taken over after %v", time.Since(t0).Round(time.Millisecond))
	ms[0].close()
	ms[1].close()
	mu.Lock()
	for r, n := range seen {
		if n != 1 {
			t.Errorf("record %s consumed %d times", r, n)
		}
	}
	mu.Unlock()
	offs, err := adm.FetchOffsets(ctxFor(t, 5*time.Second), "kgo-group")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 600 {
		t.Errorf("committed offsets sum to %d, want 600", sum)
	}
}

// saramaHandler counts claims and records of one sarama group member.
type saramaHandler struct {
	mu   *sync.Mutex
	seen map[string]int
}

func (h saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		h.mu.Lock()
		h.seen[fmt.Sprintf("%d %d", msg.Partition, msg.Offset)]++
		h.mu.Unlock()
		s.MarkMessage(msg, "")
	}
	return nil
}

// TestGroupSaramaConsumerGroup: three IBM/sarama ConsumerGroup members (range
// assignor), then one leaves.
func TestGroupSaramaConsumerGroup(t *testing.T) {
	t.Parallel()
	k := newGroupKatka(t, t.TempDir())
	k.start()
	k.setupTopic(t, "sa", 600)
	var mu sync.Mutex
	seen := map[string]int{}
	type member struct {
		g      sarama.ConsumerGroup
		cancel context.CancelFunc
		done   chan struct{}
	}
	var ms []member
	for i := 0; i < 3; i++ {
		cfg := sarama.NewConfig()
		cfg.Version = sarama.V2_6_0_0
		cfg.Consumer.Group.Session.Timeout = 6 * time.Second
		cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
		cfg.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
		cfg.Consumer.MaxWaitTime = 200 * time.Millisecond
		g, err := sarama.NewConsumerGroup([]string{k.Kafka}, "sarama-group", cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := member{g: g, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(m.done)
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{"sa"}, saramaHandler{&mu, seen}); err != nil && ctx.Err() == nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
		ms = append(ms, m)
		t.Cleanup(func() { cancel(); <-m.done; g.Close() })
	}
	adm := kadm.NewClient(k.client(t))
	took := waitUntil(t, 30*time.Second, "3 sarama members with 2 partitions each", func() bool { return balanced(k.assignment(t, adm, "sarama-group"), 3) })
	t.Logf("sarama: 3 members balanced after %v", took)
	waitUntil(t, 15*time.Second, "600 records", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 600 })
	t0 := time.Now()
	ms[2].cancel()
	<-ms[2].done
	ms[2].g.Close()
	waitUntil(t, 6*time.Second, "2 sarama members with 3 partitions each", func() bool { return balanced(k.assignment(t, adm, "sarama-group"), 2) })
	t.Logf("sarama: leaving member's partitions taken over after %v", time.Since(t0).Round(time.Millisecond))
	mu.Lock()
	for r, n := range seen {
		if n != 1 {
			t.Errorf("record %s consumed %d times", r, n)
		}
	}
	mu.Unlock()
}

// TestGroupOffsetsSurviveSIGKILL: offsets committed by a group consumer are
// there after katka is SIGKILLed and restarted; the katka group CLI sees them
// and resets them.
func TestGroupOffsetsSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	k := newGroupKatka(t, data)
	k.start()
	k.setupTopic(t, "dur", 120)
	cl := k.client(t, kgo.ConsumerGroup("dur-group"), kgo.ConsumeTopics("dur"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), kgo.SessionTimeout(6*time.Second), kgo.FetchMaxWait(200*time.Millisecond))
	n := 0
	for n < 120 {
		fs := cl.PollFetches(ctxFor(t, 20*time.Second))
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	k.kill()
	cl.Close()
	k.start()
	adm := kadm.NewClient(k.client(t))
	offs, err := adm.FetchOffsets(ctxFor(t, 10*time.Second), "dur-group")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 120 {
		t.Fatalf("after SIGKILL and restart committed offsets sum to %d, want 120: %v", sum, offs)
	}

	run := func(args ...string) string {
		out, err := exec.Command(katkaBin, append([]string{"group"}, append(args, "--brokers", k.Kafka)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("katka group %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("list"); !strings.Contains(out, "dur-group") {
		t.Fatalf("group list:\n%s", out)
	}
	if out := run("describe", "dur-group"); !strings.Contains(out, "dur") || !strings.Contains(out, "LAG") {
		t.Fatalf("group describe:\n%s", out)
	}
	// The consumer's membership was restored from __consumer_offsets; it is
	// gone, so its session expires and the group becomes Empty.
	took := waitUntil(t, 10*time.Second, "the restored member to expire", func() bool {
		dg, err := adm.DescribeGroups(ctxFor(t, 5*time.Second), "dur-group")
		return err == nil && dg["dur-group"].State == "Empty"
	})
	t.Logf("restored member of the killed consumer expired %v after restart", took.Round(time.Millisecond))
	if out := run("reset-offsets", "dur-group", "--topic", "dur", "--to-earliest"); !strings.Contains(out, "dry run") {
		t.Fatalf("reset dry run:\n%s", out)
	}
	offs, _ = adm.FetchOffsets(ctxFor(t, 10*time.Second), "dur-group")
	if o, _ := offs.Lookup("dur", 0); o.At != 20 {
		t.Fatalf("dry run changed offsets: %+v", o)
	}
	run("reset-offsets", "dur-group", "--topic", "dur", "--to-earliest", "--execute")
	offs, _ = adm.FetchOffsets(ctxFor(t, 10*time.Second), "dur-group")
	if o, _ := offs.Lookup("dur", 0); o.At != 0 {
		t.Fatalf("reset to earliest: %+v", o)
	}
	run("delete", "dur-group")
	if out := run("list"); strings.Contains(out, "dur-group") {
		t.Fatalf("group still listed after delete:\n%s", out)
	}
}

// TestGroupInitialRebalanceDelayConfig: groups.initial_rebalance_delay
// (Kafka's group.initial.rebalance.delay.ms) replaces the fixed 3 s: with 0
// the first member of a new group is answered at once, with 5s only after 5 s.
func TestGroupInitialRebalanceDelayConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		delay    string
		min, max time.Duration
	}{{"0s", 0, 2 * time.Second}, {"5s", 5 * time.Second, 20 * time.Second}} {
		t.Run(tc.delay, func(t *testing.T) {
			t.Parallel()
			k := newGroupKatka(t, t.TempDir())
			if err := os.WriteFile(k.config, []byte(testConfig+"groups:\n  initial_rebalance_delay: "+tc.delay+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			k.start()
			cl := k.client(t)
			join := func(member string) *kmsg.JoinGroupResponse {
				req := kmsg.NewPtrJoinGroupRequest()
				req.Group, req.MemberID, req.ProtocolType = "delayed", member, "consumer"
				req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 30000, 30000
				req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{}}}
				resp, err := req.RequestWith(ctxFor(t, 30*time.Second), cl)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			first := join("")
			if first.ErrorCode != 79 { // MEMBER_ID_REQUIRED
				t.Fatalf("first join: error %d", first.ErrorCode)
			}
			t0 := time.Now()
			r := join(first.MemberID)
			took := time.Since(t0)
			if r.ErrorCode != 0 || r.Generation != 1 {
				t.Fatalf("join: error %d generation %d", r.ErrorCode, r.Generation)
			}
			t.Logf("initial_rebalance_delay %s: first join answered after %v", tc.delay, took.Round(time.Millisecond))
			if took < tc.min || took > tc.max {
				t.Fatalf("first join answered after %v, want %v..%v", took, tc.min, tc.max)
			}
		})
	}
}
