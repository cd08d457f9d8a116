package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startBenchCell starts a 3-node cell in network namespaces and waits until
// it has formed; it returns the nodes and their Kafka addresses.
func startBenchCell(b *testing.B, name string) ([]*cellProc, []string) {
	b.Helper()
	net := newCellNet(b, 3)
	dir := b.TempDir()
	ca := filepath.Join(dir, "ca")
	cellCLI(b, "cell", "init", "--name", name, "--out", ca)
	var nodes []*cellProc
	var seeds []string
	for i := 1; i <= 3; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		cellCLI(b, "cell", "issue", "--ca", ca, "--out", cred)
		nodes = append(nodes, net.node(i, cellNodeConfig(net.ip(i), cred, name, 3)))
		seeds = append(seeds, net.ip(i)+":9092")
	}
	for _, n := range nodes {
		n.start()
	}
	waitTB(b, 30*time.Second, "3 nodes to form the cell", func() bool {
		_, ok := agreed(nodes, []int32{1, 2, 3})
		return ok
	})
	return nodes, seeds
}

// quantile is the q-quantile of sorted durations (q 0.99 of 20 is the max).
func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// ackTimes are the moments a producer's records were acknowledged, in order.
type ackTimes struct {
	mu     sync.Mutex
	at     []time.Time
	failed int
}

// around returns the last acknowledgement at or before t and the first one
// after it (ok false while there is none after t yet).
func (a *ackTimes) around(t time.Time) (before, after time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, _ := slices.BinarySearchFunc(a.at, t, func(x, t time.Time) int {
		if x.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 || i == len(a.at) {
		return time.Time{}, time.Time{}, false
	}
	return a.at[i-1], a.at[i], true
}

// BenchmarkCellPartitionFailover measures producer unavailability when a
// partition leader dies: a 3-node cell (network namespaces) with the
// 6-partition topic of replication factor 3, one kgo idempotent acks=all
// producer writing to partition 0 every 2 ms (default kgo options, as a user
// would run it). KATKA_CELL_KILLS times (default 20) the leader of partition 0
// is SIGKILLed; unavailability is the gap between the last record
// acknowledged before the kill and the first acknowledged after it
// (acknowledgement times taken in the produce callback). Also logged per kill:
// when a survivor's controller metadata first named a new leader (the
// controller's share). KATKA_KGO_METADATA_MIN_AGE (e.g. 500ms) sets the
// producer's kgo.MetadataMinAge (kgo's default is 5s).
// The killed node is restarted and the partition's ISR is full again before
// the next kill.
//
//	go test -run XXX -bench BenchmarkCellPartitionFailover -benchtime 1x ./appliance/e2e
func BenchmarkCellPartitionFailover(b *testing.B) {
	kills := 20
	if v, err := strconv.Atoi(os.Getenv("KATKA_CELL_KILLS")); err == nil && v > 0 {
		kills = v
	}
	nodes, seeds := startBenchCell(b, "fobench")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		b.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	waitTB(b, 20*time.Second, "the replicated topic to be created", func() bool {
		r, err := adm.CreateTopic(ctx, replPartitions, 3, nil, replTopic)
		return (err == nil && r.Err == nil) || (r.Err != nil && strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS"))
	})
	waitTB(b, 30*time.Second, "every partition to have 3 in-sync replicas", func() bool { return fullISR(ctx, adm) })

	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(replTopic),
		kgo.RecordDeliveryTimeout(2 * time.Minute), kgo.MaxBufferedRecords(1000)}
	minAge := "kgo default (5s)"
	if v := os.Getenv("KATKA_KGO_METADATA_MIN_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("KATKA_KGO_METADATA_MIN_AGE=%q: %v", v, err)
		}
		opts = append(opts, kgo.MetadataMinAge(d))
		minAge = v
	}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	acks := &ackTimes{}
	pctx, stopProducing := context.WithCancel(ctx)
	var pw sync.WaitGroup
	pw.Add(1)
	go func() {
		defer pw.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; pctx.Err() == nil; seq++ {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			prod.Produce(pctx, &kgo.Record{Partition: 0, Value: []byte(strconv.Itoa(seq))}, func(_ *kgo.Record, err error) {
				now := time.Now()
				acks.mu.Lock()
				defer acks.mu.Unlock()
				if err != nil {
					acks.failed++
					return
				}
				acks.at = append(acks.at, now)
			})
		}
	}()
	defer func() { stopProducing(); pw.Wait() }()
	waitTB(b, 30*time.Second, "the producer's first acknowledgements", func() bool {
		acks.mu.Lock()
		defer acks.mu.Unlock()
		return len(acks.at) > 100
	})

	b.ResetTimer()
	var gaps, moved []time.Duration
	for k := range kills {
		var l int32
		waitTB(b, 30*time.Second, "every node to name the same leader of partition 0", func() bool {
			l = agreedLeader(ctx, cl, len(nodes))
			return l > 0
		})
		nodes[l-1].kill()
		dead := time.Now()
		var newLeader time.Duration
		var before, after time.Time
		waitTB(b, 60*time.Second, "a record acknowledged after the kill", func() bool {
			if newLeader == 0 && movedAway(nodes, l) {
				newLeader = time.Since(dead)
			}
			var ok bool
			before, after, ok = acks.around(dead)
			return ok
		})
		gap := after.Sub(before)
		gaps = append(gaps, gap)
		moved = append(moved, newLeader)
		b.Logf("kill %d (node %d, at %s): unavailable %v; first ack %v after the kill; the controller's metadata named a new leader after %v",
			k+1, l, dead.UTC().Format("15:04:05.000"), gap.Round(time.Millisecond), after.Sub(dead).Round(time.Millisecond), newLeader.Round(10*time.Millisecond))
		nodes[l-1].start()
		waitTB(b, 60*time.Second, "every partition fully in sync again", func() bool {
			return cellInSync(nodes) && fullISR(ctx, adm)
		})
	}
	b.StopTimer()
	all := slices.Clone(gaps)
	slices.Sort(gaps)
	p50, p99 := quantile(gaps, 0.5), quantile(gaps, 0.99)
	b.ReportMetric(p50.Seconds(), "p50-s")
	b.ReportMetric(p99.Seconds(), "p99-s")
	b.ReportMetric(gaps[len(gaps)-1].Seconds(), "max-s")
	acks.mu.Lock()
	failed, acked := acks.failed, len(acks.at)
	acks.mu.Unlock()
	var vals []string
	for i, g := range all {
		vals = append(vals, fmt.Sprintf("%.2f/%.2f", g.Seconds(), moved[i].Seconds()))
	}
	b.Logf("producer metadata min age: %s", minAge)
	b.Logf("%d partition-leader kills: producer unavailability p50 %v, p99 (max) %v; unavailable/new-leader-in-metadata seconds per kill: %s; %d records acknowledged, %d failed",
		len(gaps), p50.Round(time.Millisecond), p99.Round(time.Millisecond), strings.Join(vals, " "), acked, failed)
	if failed > 0 {
		b.Errorf("%d records failed after retries", failed)
	}
}

// agreedLeader asks every node (by broker id) for the topic's metadata and
// returns the leader of partition 0 if they all name the same one, else -1
// (a node's copy of the controller metadata may lag just after a restart).
func agreedLeader(ctx context.Context, cl *kgo.Client, nodes int) int32 {
	leader := int32(-1)
	for id := 1; id <= nodes; id++ {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req := kmsg.NewPtrMetadataRequest()
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(replTopic)
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(cctx, cl.Broker(id))
		cancel()
		if err != nil || len(resp.Topics) != 1 {
			return -1
		}
		l := int32(-1)
		for _, p := range resp.Topics[0].Partitions {
			if p.Partition == 0 && p.ErrorCode == 0 && len(p.ISR) == 3 {
				l = p.Leader
			}
		}
		if l < 1 || (leader > 0 && l != leader) {
			return -1
		}
		leader = l
	}
	return leader
}

// movedAway reports whether a live node's copy of the controller metadata
// has partition 0 of the topic led by a node other than old (read over HTTP,
// not through a Kafka client, whose own retries would blur the time).
func movedAway(nodes []*cellProc, old int32) bool {
	for _, n := range nodes {
		if int32(n.i) == old {
			continue
		}
		st, ok := n.replication()
		if !ok {
			continue
		}
		for _, p := range st.UnderReplicated {
			if p.Topic == replTopic && p.Partition == 0 && p.Leader > 0 && p.Leader != old {
				return true
			}
		}
	}
	return false
}

// BenchmarkCellReplicatedProduce compares `katka bench produce` (100 B
// records, acks=all, one producer, fsync always: the default) on topics of
// replication factor 1 and 3 with 1 and 6 partitions against a 3-node cell
// in network namespaces, run from the root namespace with every node's Kafka
// address, interleaved, KATKA_BENCH_ROUNDS rounds (default 3) of
// KATKA_BENCH_SECONDS (default 8) each, a fresh topic per run. Reports the
// median records/s of each and the ratio RF3/RF1 per partition count.
//
//	go test -run XXX -bench BenchmarkCellReplicatedProduce -benchtime 1x ./appliance/e2e
func BenchmarkCellReplicatedProduce(b *testing.B) {
	rounds, secs := 3, 8
	if v, err := strconv.Atoi(os.Getenv("KATKA_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	if v, err := strconv.Atoi(os.Getenv("KATKA_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	_, seeds := startBenchCell(b, "tpbench")
	bin := requireBinary(b)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		b.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	type cfg struct{ partitions, rf int }
	cfgs := []cfg{{1, 1}, {1, 3}, {6, 1}, {6, 3}}
	got := map[cfg][]float64{}
	b.ResetTimer()
	for r := range rounds {
		for _, c := range cfgs {
			topic := fmt.Sprintf("tp-p%d-rf%d-r%d", c.partitions, c.rf, r)
			var out, errb bytes.Buffer
			cmd := exec.Command(bin, "bench", "produce", "--brokers", strings.Join(seeds, ","), "--topic", topic,
				"--partitions", strconv.Itoa(c.partitions), "--replication-factor", strconv.Itoa(c.rf),
				"--record-size", "100", "--acks", "all", "--records", "0", "--duration", fmt.Sprintf("%ds", secs), "--json", "--quiet")
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				b.Fatalf("katka bench produce (%d partitions, RF %d): %v\n%s%s", c.partitions, c.rf, err, out.String(), errb.String())
			}
			var res struct {
				Sent          int64   `json:"records_sent"`
				Failed        int64   `json:"records_failed"`
				RecordsPerSec float64 `json:"records_per_sec"`
			}
			if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Sent == 0 || res.Failed > 0 {
				b.Fatalf("katka bench produce (%d partitions, RF %d): %v: %s", c.partitions, c.rf, err, out.String())
			}
			md, err := adm.Metadata(context.Background(), topic)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range md.Topics[topic].Partitions {
				if len(p.Replicas) != c.rf {
					b.Fatalf("topic %s partition %d has replicas %v, want %d", topic, p.Partition, p.Replicas, c.rf)
				}
			}
			got[c] = append(got[c], res.RecordsPerSec)
			b.Logf("round %d, %d partition(s), RF %d: %.0f records/s", r+1, c.partitions, c.rf, res.RecordsPerSec)
		}
	}
	b.StopTimer()
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	for _, p := range []int{1, 6} {
		rf1, rf3 := median(got[cfg{p, 1}]), median(got[cfg{p, 3}])
		b.ReportMetric(rf1, fmt.Sprintf("rf1-p%d-rec/s", p))
		b.ReportMetric(rf3, fmt.Sprintf("rf3-p%d-rec/s", p))
		b.ReportMetric(rf3/rf1, fmt.Sprintf("ratio-p%d", p))
		b.Logf("%d partition(s): RF 1 %v records/s, RF 3 %v records/s (medians %.0f and %.0f, RF3/RF1 %.2f)",
			p, fmtRates(got[cfg{p, 1}]), fmtRates(got[cfg{p, 3}]), rf1, rf3, rf3/rf1)
	}
}

func fmtRates(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(s, "/")
}
