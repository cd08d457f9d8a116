package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// checkCellKafka is the Kafka view of a formed 3-node cell: kcat -L on every
// node lists the three brokers; a 6-partition topic created through node 1 is
// spread over the nodes (two leaders each); kgo produces 600 keyed records
// through all seeds, each partition's records landing on its leader's disk
// only; kcat reads all 600 back through node 3.
func checkCellKafka(t *testing.T, net *cellNet, nodes []*cellProc) {
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
	cellCLI(t, "topic", "create", "events", "-p", "6", "--brokers", net.ip(1)+":9092")
	leaders := map[string]int{}
	var out []byte
	defer func() {
		if t.Failed() {
			t.Logf("last kcat -L -t events on node 3:\n%s", out)
		}
	}()
	waitUntil(t, 10*time.Second, "6 partitions with leaders on node 3", func() bool {
		// All topics (no -t): a request for the one topic would auto-create it
		// if node 3 asked before node 1 proposed it to the controller (Kafka
		// CreateTopics is still local first, then proposed: README).
		out, _ = exec.Command(kcat, "-b", net.ip(3)+":9092", "-L", "-m", "5").CombinedOutput()
		clear(leaders)
		_, events, _ := strings.Cut(string(out), `topic "events"`)
		events, _, _ = strings.Cut(events, "topic \"")
		for _, l := range strings.Split(events, "\n") {
			if f := strings.Fields(l); len(f) >= 4 && f[0] == "partition" && f[2] == "leader" {
				leaders[strings.TrimSuffix(f[3], ",")]++
			}
		}
		return leaders["1"]+leaders["2"]+leaders["3"] == 6
	})
	if leaders["1"] != 2 || leaders["2"] != 2 || leaders["3"] != 2 {
		t.Errorf("partition leaders per node %v, want 2 each", leaders)
	}

	seeds := []string{net.ip(1) + ":9092", net.ip(2) + ":9092", net.ip(3) + ":9092"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("events"), kgo.RequiredAcks(kgo.AllISRAcks()),
		// Producer ids are still handed out by each node on its own, so an id
		// from one node is unknown to the others: idempotence waits for the
		// controller to hand out producer-id blocks (README checklist).
		kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 600
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to the cell: %v", err)
	}
	perPartition := map[int32]int64{}
	for _, r := range recs {
		perPartition[r.Partition]++
	}
	// Each partition's records are on its leader's disk, and only there.
	total := int64(0)
	for i := range nodes {
		hw := topicHighWatermarks(t, nodes[i], "events")
		for p, v := range hw {
			total += v
			if v != 0 && v != perPartition[int32(p)] {
				t.Errorf("node %d partition %d holds %d records, the producer sent %d", i+1, p, v, perPartition[int32(p)])
			}
		}
	}
	if total != n {
		t.Errorf("the nodes hold %d records together, want %d (each partition on one node)", total, n)
	}
	out, err = exec.Command(kcat, "-b", net.ip(3)+":9092", "-C", "-t", "events", "-o", "beginning", "-e", "-q", "-f", "%k\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat consume: %v\n%s", err, out)
	}
	if got := len(strings.Fields(string(out))); got != n {
		t.Errorf("kcat read %d records through node 3, want %d", got, n)
	}
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
