package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/cluster"
	"github.com/katka-io/katka/appliance/storage"
)

// replTopic is the fault test's topic: 6 partitions, replication factor 3.
const (
	replTopic      = "repl"
	replPartitions = 6
)

// faultSeconds is how long the fault test injects faults: 60 s in make test,
// KATKA_FAULT_SECONDS (make test-long: 1200) otherwise.
func faultSeconds(t *testing.T) time.Duration {
	if s := os.Getenv("KATKA_FAULT_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KATKA_FAULT_SECONDS=%q: want a positive number of seconds", s)
		}
		return time.Duration(n) * time.Second
	}
	return 60 * time.Second
}

// ackLog collects what the producers had acknowledged and what the group
// consumer read.
type ackLog struct {
	mu       sync.Mutex
	acked    map[string]kgo.Record // by value
	consumed []kgo.Record
	failed   int
}

// TestCellReplicationFaults runs kgo idempotent producers (acks=all) and a
// consumer group against a 3-node cell with a 6-partition topic of
// replication factor 3 while faults run one after another: SIGKILL of a
// partition leader, SIGSTOP longer than the session timeout, a node cut
// from the other nodes (but not from clients), and a power cut of the whole
// cell. Then every acknowledged record must be in the log exactly once, in
// per-producer order; nothing a consumer read may have vanished; and every
// replica's log must equal the leader's below the high watermark.
func TestCellReplicationFaults(t *testing.T) {
	c := startReplCell(t, 3, "repl")
	net, nodes, seeds, adm := c.net, c.nodes, c.seeds, c.adm
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	log := &ackLog{acked: map[string]kgo.Record{}}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var produced atomic.Int64
	for pid := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			produceLoop(t, wctx, seeds, pid, log, &produced)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		consumeLoop(t, wctx, seeds, log)
	}()
	// The group's committed offsets, read over and over: they must never go
	// backwards (its coordinator moves with __consumer_offsets' leadership).
	commits := &commitLog{acked: map[int32]int64{}, seen: map[int32]int64{}}
	kc := mustClient(t, kgo.SeedBrokers(seeds...))
	defer kc.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		offsetMonitor(wctx, kc, "repl-check", commits)
	}()
	waitUntil(t, 30*time.Second, "the producers' first acknowledgements", func() bool { return log.count() > 100 })

	faults := []func(){
		func() { faultKillLeader(t, ctx, adm, nodes) },
		func() { faultPause(t, nodes, nodes[rand.IntN(3)]) },
		func() { faultIsolate(t, net, nodes) },
		func() { faultKillLeader(t, ctx, adm, nodes) },
		func() { faultPowerCut(t, nodes) },
	}
	until := time.Now().Add(faultSeconds(t))
	rounds := 0
	for i := 0; time.Now().Before(until); i++ {
		faults[i%len(faults)]()
		rounds++
		waitUntil(t, 60*time.Second, "the cell to have every partition fully in sync again", func() bool {
			return cellInSync(nodes) && fullISR(ctx, adm)
		})
		t.Logf("fault round %d done: %d records acknowledged so far", rounds, log.count())
	}
	// A marker: records acknowledged after the last fault prove the
	// producers and the consumer still work.
	before := log.count()
	waitUntil(t, 30*time.Second, "records acknowledged after the last fault", func() bool { return log.count() > before+200 })
	stopWork()
	wg.Wait()

	v := c.verify(t, ctx, log)
	t.Logf("%d fault rounds; %d records acknowledged (%d failed after retries), %d read back, %d consumed by the group; %d lost, %d duplicated, %d consumed then vanished, %d divergent replica records; committed offsets %v, %d times read going backwards",
		rounds, len(log.acked), log.failed, v.read, len(log.consumed), v.lost, v.dups, v.vanished, v.diverged, commits.seen, commits.regressed)
	if commits.regressed > 0 {
		t.Errorf("the group's committed offsets went backwards %d times", commits.regressed)
	}
}

// replCell is a cell of real nodes in namespaces with the fault tests'
// topic created (replication factor 3) and fully in sync.
type replCell struct {
	net        *cellNet
	nodes      []*cellProc
	seeds      []string
	adm        *kadm.Client
	controller int32 // the controller leader when the cell formed
}

// startReplCell starts n nodes (3 voters) of a cell named cell, waits until
// they agree, creates replTopic with replication factor 3 and waits until
// every partition is fully in sync.
func startReplCell(t *testing.T, n int, cell string) *replCell {
	t.Helper()
	c := &replCell{net: newCellNet(t, n)}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	cellCLI(t, "cell", "init", "--name", cell, "--out", ca)
	var want []int32
	for i := 1; i <= n; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		cellCLI(t, "cell", "issue", "--ca", ca, "--out", cred)
		c.nodes = append(c.nodes, c.net.node(i, cellNodeConfig(c.net.ip(i), cred, cell, 3)))
		c.seeds = append(c.seeds, c.net.ip(i)+":9092")
		want = append(want, int32(i))
	}
	for _, p := range c.nodes {
		p.start()
	}
	waitUntil(t, 30*time.Second, fmt.Sprintf("%d nodes to form the cell", n), func() bool {
		var ok bool
		c.controller, ok = agreed(c.nodes, want)
		return ok
	})
	c.adm = kadm.NewClient(mustClient(t, kgo.SeedBrokers(c.seeds...)))
	t.Cleanup(c.adm.Close)
	ctx := context.Background()
	waitUntil(t, 20*time.Second, "the replicated topic to be created", func() bool {
		r, err := c.adm.CreateTopic(ctx, replPartitions, 3, nil, replTopic)
		return (err == nil && r.Err == nil) || (r.Err != nil && strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS"))
	})
	waitFullISR(t, ctx, c.adm, 30*time.Second)
	return c
}

// verified are the counts of a replication test's final checks.
type verified struct{ read, lost, dups, vanished, diverged int }

// verify reads the topic back and checks what log acknowledged and consumed
// against it (checkAcked), then stops every node and compares its logs
// with the read (checkReplicaLog).
func (c *replCell) verify(t *testing.T, ctx context.Context, log *ackLog) verified {
	t.Helper()
	final := readAll(t, ctx, c.seeds, c.adm)
	var v verified
	v.read = countFinal(final)
	v.lost, v.dups, v.vanished = checkAcked(t, log, final)
	isr := isrOf(t, ctx, c.adm)
	for _, n := range c.nodes {
		n.stop()
	}
	for _, n := range c.nodes {
		v.diverged += checkReplicaLog(t, n, final, isr)
	}
	return v
}

// count is how many records the producers had acknowledged so far.
func (l *ackLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func mustClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cellInSync reports whether the controller leader's metadata has the
// fault test's topic's partitions all led and fully in sync.
func cellInSync(nodes []*cellProc) bool { return topicInSync(nodes, replTopic, replPartitions) }

// topicInSync reports whether the controller leader's metadata has a
// topic's partitions (at least partitions of them) all led and fully in sync
// (read from the controller leader over HTTP: a node still replaying the
// controller's log, such as a wiped one, answers Kafka metadata from an old
// state).
func topicInSync(nodes []*cellProc, topic string, partitions int) bool {
	for _, n := range nodes {
		st, ok := n.status()
		if !ok || st.Raft.State != "Leader" {
			continue
		}
		if !admitted(nodes, n) {
			return false
		}
		rs, ok := n.replication()
		if !ok || rs.Partitions < partitions {
			return false
		}
		for _, l := range [][]cluster.PartitionRef{rs.UnderReplicated, rs.Offline} {
			for _, p := range l {
				if p.Topic == topic {
					return false
				}
			}
		}
		return true
	}
	return false
}

// admitted reports whether the controller leader ctl has admitted every
// node's current process run (a restarted node is fenced first, and leads
// nothing until then).
func admitted(nodes []*cellProc, ctl *cellProc) bool {
	var cs struct {
		Members []struct {
			NodeID      int32  `json:"node_id"`
			Incarnation string `json:"incarnation"`
		} `json:"members"`
	}
	if !getJSON(ctl, &cs) {
		return false
	}
	for _, n := range nodes {
		var own struct {
			Incarnation string `json:"incarnation"`
		}
		if !getJSON(n, &own) || own.Incarnation == "" {
			return false
		}
		found := false
		for _, m := range cs.Members {
			if m.NodeID == int32(n.i) {
				found = m.Incarnation == own.Incarnation
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// getJSON decodes a node's GET /v1/cell into v.
func getJSON(p *cellProc, v any) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr()+"/v1/cell", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// fullISR reports whether every partition of the topic has a leader and
// three in-sync replicas, as the Kafka metadata of some node says.
func fullISR(ctx context.Context, adm *kadm.Client) bool {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	md, err := adm.Metadata(cctx, replTopic)
	if err != nil {
		return false
	}
	td, ok := md.Topics[replTopic]
	if !ok || len(td.Partitions) != replPartitions {
		return false
	}
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 || len(p.ISR) != 3 {
			return false
		}
	}
	return true
}

func waitFullISR(t *testing.T, ctx context.Context, adm *kadm.Client, d time.Duration) {
	t.Helper()
	waitUntil(t, d, "every partition to have 3 in-sync replicas", func() bool { return fullISR(ctx, adm) })
}

// produceLoop produces records "<pid>-<seq>" round robin over the
// partitions with an idempotent acks=all producer, at most 256 in flight.
func produceLoop(t *testing.T, ctx context.Context, seeds []string, pid int, log *ackLog, produced *atomic.Int64) {
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5 * time.Millisecond),
		kgo.RecordDeliveryTimeout(2 * time.Minute), kgo.MaxBufferedRecords(256)}
	if p := os.Getenv("KATKA_KGO_LOG"); p != "" { // the client's own log, for debugging
		f, err := os.Create(fmt.Sprintf("%s.%d", p, pid))
		if err == nil {
			defer f.Close()
			opts = append(opts, kgo.WithLogger(kgo.BasicLogger(f, kgo.LogLevelInfo, nil)))
		}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	tick := time.NewTicker(2 * time.Millisecond) // about 2 x 500 records/s
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cl.Flush(fctx)
			cancel()
			return
		case <-tick.C:
		}
		r := &kgo.Record{Topic: replTopic, Partition: int32(seq % replPartitions), Value: []byte(fmt.Sprintf("%d-%d", pid, seq))}
		produced.Add(1)
		cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			log.mu.Lock()
			defer log.mu.Unlock()
			if err != nil {
				log.failed++
				return
			}
			log.acked[string(r.Value)] = *r
		})
	}
}

// consumeLoop reads the topic in a consumer group, recording every record.
func consumeLoop(t *testing.T, ctx context.Context, seeds []string, log *ackLog) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup("repl-check"), kgo.ConsumeTopics(replTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			log.mu.Lock()
			log.consumed = append(log.consumed, *r)
			log.mu.Unlock()
		})
	}
}

// leaderOf returns the node id leading partition p.
func leaderOf(ctx context.Context, adm *kadm.Client, p int32) int32 {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	md, err := adm.Metadata(cctx, replTopic)
	if err != nil {
		return -1
	}
	for _, pd := range md.Topics[replTopic].Partitions {
		if pd.Partition == p {
			return pd.Leader
		}
	}
	return -1
}

// faultKillLeader SIGKILLs the leader of a random partition, waits until
// another node leads it, then restarts the killed node.
func faultKillLeader(t *testing.T, ctx context.Context, adm *kadm.Client, nodes []*cellProc) {
	p := int32(rand.IntN(replPartitions))
	l := leaderOf(ctx, adm, p)
	if l < 1 || int(l) > len(nodes) {
		t.Fatalf("no leader for partition %d", p)
	}
	t.Logf("fault: SIGKILL node %d (leads partition %d)", l, p)
	nodes[l-1].kill()
	waitUntil(t, 30*time.Second, "another node to lead the killed node's partition", func() bool {
		nl := leaderOf(ctx, adm, p)
		return nl > 0 && nl != l
	})
	nodes[l-1].start()
}

// faultPause stops a node with SIGSTOP until the cell has fenced it (no
// partition counts it in sync any more: longer than the session timeout),
// then lets it go on.
func faultPause(t *testing.T, nodes []*cellProc, n *cellProc) {
	t.Logf("fault: SIGSTOP node %d until the cell fences it", n.i)
	n.cmd.Process.Signal(syscall.SIGSTOP)
	waitUntil(t, 30*time.Second, "the paused node to leave every ISR", func() bool { return outOfISR(nodes, int32(n.i)) })
	n.cmd.Process.Signal(syscall.SIGCONT)
}

// faultIsolate cuts a node from the other nodes (clients still reach it)
// until the cell has fenced it, then heals the cut.
func faultIsolate(t *testing.T, net *cellNet, nodes []*cellProc) {
	i := 1 + rand.IntN(len(nodes))
	var others []int
	for j := 1; j <= len(nodes); j++ {
		if j != i {
			others = append(others, j)
		}
	}
	t.Logf("fault: node %d cut from the other nodes until the cell fences it", i)
	net.partition(i, others)
	waitUntil(t, 30*time.Second, "the isolated node to leave every ISR", func() bool { return outOfISR(nodes, int32(i)) })
	net.heal(i, others)
}

// outOfISR reports whether node id leads no partition of the topic and is
// in no partition's ISR, as another node's controller metadata says (asked
// over HTTP: a Kafka metadata request may land on the node cut off, whose
// copy is stale).
func outOfISR(nodes []*cellProc, id int32) bool {
	for _, n := range nodes {
		if int32(n.i) == id {
			continue
		}
		st, ok := n.replication()
		if !ok {
			continue
		}
		out := 0
		for _, p := range st.UnderReplicated {
			if p.Topic == replTopic && p.Leader != id && !slices.Contains(p.ISR, id) {
				out++
			}
		}
		return out == replPartitions
	}
	return false
}

// replication reads the replication part of a node's cell status.
func (p *cellProc) replication() (cluster.ReplicationStatus, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr()+"/v1/cell", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cluster.ReplicationStatus{}, false
	}
	defer resp.Body.Close()
	var st struct {
		Replication cluster.ReplicationStatus `json:"replication"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return cluster.ReplicationStatus{}, false
	}
	return st.Replication, true
}

// faultPowerCut SIGKILLs every node at once and restarts them all.
func faultPowerCut(t *testing.T, nodes []*cellProc) {
	t.Logf("fault: power cut of the whole cell")
	for _, n := range nodes {
		n.kill()
	}
	for _, n := range nodes {
		n.start()
	}
	waitUntil(t, 60*time.Second, "the cell to form again after the power cut", func() bool {
		_, ok := agreed(nodes, []int32{1, 2, 3})
		return ok
	})
}

// stop ends the node with SIGTERM and waits for it.
func (p *cellProc) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		// A goroutine dump (SIGQUIT) into the node's log says where it hangs.
		p.cmd.Process.Signal(syscall.SIGQUIT)
		<-p.done
		p.cmd = nil
		dump, _ := os.ReadFile(p.logPath)
		i := strings.Index(string(dump), "goroutine ")
		if i < 0 {
			i = len(dump)
		}
		for _, l := range strings.Split(string(dump[i:]), "\n") {
			if strings.Contains(l, "katka") || strings.HasPrefix(l, "goroutine ") {
				p.t.Logf("node %d stack: %s", p.i, l)
			}
		}
		p.t.Errorf("node %d did not stop on SIGTERM within 30 s", p.i)
	}
	p.kill()
}

// readAll reads every partition from its start to its high watermark.
func readAll(t *testing.T, ctx context.Context, seeds []string, adm *kadm.Client) map[int32][]kgo.Record {
	t.Helper()
	ends, err := adm.ListEndOffsets(ctx, replTopic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		want[o.Partition] = o.Offset
		offsets[o.Partition] = kgo.NewOffset().AtStart()
	})
	cl := mustClient(t, kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{replTopic: offsets}))
	defer cl.Close()
	out := map[int32][]kgo.Record{}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	done := func() bool {
		for p, end := range want {
			if int64(len(out[p])) < end {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("reading the topic back timed out: %v", fs.Errors())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(len(out[r.Partition])) {
				t.Fatalf("partition %d: offset %d read after %d records (a gap)", r.Partition, r.Offset, len(out[r.Partition]))
			}
			out[r.Partition] = append(out[r.Partition], *r)
		})
	}
	return out
}

// isrOf reads the topic's ISR of every partition.
func isrOf(t *testing.T, ctx context.Context, adm *kadm.Client) map[int32][]int32 {
	t.Helper()
	md, err := adm.Metadata(ctx, replTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]int32{}
	for _, p := range md.Topics[replTopic].Partitions {
		out[p.Partition] = p.ISR
	}
	return out
}

func countFinal(final map[int32][]kgo.Record) int {
	n := 0
	for _, rs := range final {
		n += len(rs)
	}
	return n
}

// checkAcked: every acknowledged record is in the final log at its offset,
// no value appears twice, each producer's records of a partition are in
// order, and every record the group read is still there.
func checkAcked(t *testing.T, log *ackLog, final map[int32][]kgo.Record) (lost, dups, vanished int) {
	t.Helper()
	seen := map[string]bool{}
	lastSeq := map[string]int{}
	for p, rs := range final {
		for _, r := range rs {
			v := string(r.Value)
			if seen[v] {
				dups++
				if dups < 5 {
					t.Errorf("partition %d offset %d: value %s appears twice", p, r.Offset, v)
				}
			}
			seen[v] = true
			pid, seq, _ := strings.Cut(v, "-")
			n, _ := strconv.Atoi(seq)
			k := fmt.Sprintf("%s/%d", pid, p)
			if last, ok := lastSeq[k]; ok && n <= last {
				t.Errorf("partition %d offset %d: producer %s's record %d after %d (out of order)", p, r.Offset, pid, n, last)
			}
			lastSeq[k] = n
		}
	}
	for v, r := range log.acked {
		rs := final[r.Partition]
		if r.Offset >= int64(len(rs)) || string(rs[r.Offset].Value) != v {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged record %s (partition %d offset %d) is not in the log", v, r.Partition, r.Offset)
			}
		}
	}
	for _, r := range log.consumed {
		rs := final[r.Partition]
		if r.Offset >= int64(len(rs)) || !slices.Equal(rs[r.Offset].Value, r.Value) {
			vanished++
			if vanished < 5 {
				t.Errorf("consumed record %s (partition %d offset %d) vanished", r.Value, r.Partition, r.Offset)
			}
		}
	}
	if lost+dups+vanished > 0 {
		t.Errorf("%d acknowledged records lost, %d duplicated, %d consumed records vanished", lost, dups, vanished)
	}
	return lost, dups, vanished
}

// checkReplicaLog opens a stopped node's copy of every partition and checks
// it equals the final log wherever both have records, and that the node has
// every record of the partitions whose ISR (as read before the stop) holds it.
func checkReplicaLog(t *testing.T, n *cellProc, final map[int32][]kgo.Record, isr map[int32][]int32) (diverged int) {
	t.Helper()
	for p := int32(0); p < replPartitions; p++ {
		dir := filepath.Join(n.dataDir, replTopic, strconv.Itoa(int(p)))
		l, _, err := storage.Open(dir, storage.Options{})
		if err != nil {
			t.Errorf("node %d partition %d: open: %v", n.i, p, err)
			continue
		}
		rs := final[p]
		end := min(l.EndOffset(), int64(len(rs)))
		for off := l.StartOffset(); off < end; {
			recs, err := l.Read(off, end, 1<<20)
			if err != nil || len(recs) == 0 {
				t.Errorf("node %d partition %d: read at %d: %v", n.i, p, off, err)
				break
			}
			for _, r := range recs {
				if r.Offset < end && !slices.Equal(r.Value, rs[r.Offset].Value) {
					diverged++
					if diverged < 3 {
						t.Errorf("node %d partition %d offset %d holds %q, the leader %q", n.i, p, r.Offset, r.Value, rs[r.Offset].Value)
					}
				}
			}
			off = recs[len(recs)-1].Offset + 1
		}
		if isr != nil && slices.Contains(isr[p], int32(n.i)) && l.EndOffset() < int64(len(rs)) {
			t.Errorf("node %d partition %d ends at %d, below the high watermark %d: a stopped in-sync replica lacks records", n.i, p, l.EndOffset(), len(rs))
		}
		l.Close()
	}
	return diverged
}
