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
)

// simulatedSensorsConfig turns node config's simulated sensors on: 24
// counters every 100 ms into cell.sim, 6 partitions (their keys, sensor-00
// to sensor-23, hash to every partition).
func simulatedSensorsConfig(config string) string {
	var sensors strings.Builder
	for i := range 24 {
		fmt.Fprintf(&sensors, "      - {id: sensor-%02d, kind: counter, min: 0, max: 1000000}\n", i)
	}
	return strings.Replace(config, "sensors:\n  simulated:\n    enabled: false\n",
		"sensors:\n  simulated:\n    enabled: true\n    topic: cell.sim\n    partitions: 6\n    interval: 100ms\n    sensors:\n"+sensors.String(), 1)
}

// cellMember is one row of GET /v1/cell's members.
type cellMember struct {
	NodeID           int32  `json:"node_id"`
	PeerAddr         string `json:"peer_addr"`
	KafkaAddr        string `json:"kafka_addr"`
	Role             string `json:"role"`
	ControllerLeader bool   `json:"controller_leader"`
	LastContactMs    int64  `json:"last_contact_ms"`
	PartitionsLed    int    `json:"partitions_led"`
}

// cellView is the part of GET /v1/cell the tests read.
type cellView struct {
	Raft struct {
		LeaderID int32  `json:"leader_id"`
		Term     uint64 `json:"term"`
	} `json:"raft"`
	Members []cellMember `json:"members"`
	Removed []int32      `json:"removed"`
}

func (p *cellProc) cell(t *testing.T) cellView {
	t.Helper()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + p.httpAddr() + "/v1/cell")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v cellView
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		t.Fatalf("GET /v1/cell on node %d: %s", p.i, resp.Status)
	}
	return v
}

// checkCellWriters: node 1's simulated sensors write cell.sim (6 partitions
// spread over the 3 nodes) through the broker API; every partition's
// records are on its leader's disk only and read back with kcat through
// node 2. A record POSTed to node 1's HTTP API for a partition node 2 leads
// lands on node 2 and is read back from there. GET /v1/cell shows the three
// voters, the controller leader and the partitions each leads.
func checkCellWriters(t *testing.T, net *cellNet, nodes []*cellProc) (leaderOf map[int]int32) {
	t.Helper()
	kcat := kcatPath(t)
	var v cellView
	waitUntil(t, 20*time.Second, "cell.sim spread over the nodes with records on 3 nodes", func() bool {
		v = nodes[0].cell(t)
		holding := 0
		for _, n := range nodes {
			for _, hw := range topicHighWatermarksOK(n, "cell.sim") {
				if hw > 0 {
					holding++
					break
				}
			}
		}
		return holding == 3
	})
	leaderOf = map[int]int32{}
	out, err := kcatCmd(kcat, "-b", net.ip(1)+":9092", "-L", "-t", "cell.sim", "-m", "5").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		var p int
		var leader int32
		if _, err := fmt.Sscanf(strings.TrimSpace(l), "partition %d, leader %d,", &p, &leader); err == nil {
			leaderOf[p] = leader
		}
	}
	if len(leaderOf) != 6 {
		t.Fatalf("kcat -L -t cell.sim: %d partitions with leaders:\n%s", len(leaderOf), out)
	}
	total := int64(0)
	for i, n := range nodes {
		for p, hw := range topicHighWatermarks(t, n, "cell.sim") {
			if hw > 0 && leaderOf[p] != int32(i+1) {
				t.Errorf("node %d holds %d records of cell.sim-%d, led by node %d", i+1, hw, p, leaderOf[p])
			}
			total += hw
		}
	}
	// -c, not -e: the sensors keep writing, so kcat would never reach the end.
	out, err = kcatCmd(kcat, "-b", net.ip(2)+":9092", "-C", "-t", "cell.sim", "-o", "beginning", "-c", fmt.Sprint(total), "-q", "-f", "%p %k\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat consume: %v\n%s", err, out)
	}
	parts := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, _, _ := strings.Cut(l, " ")
		parts[p] = true
	}
	if got := int64(len(strings.Split(strings.TrimSpace(string(out)), "\n"))); got != total || len(parts) < 3 {
		t.Errorf("kcat read %d records of cell.sim from %d partitions through node 2, want the %d the leaders held", got, len(parts), total)
	}

	// The HTTP produce API of node 1, to a partition led by node 2.
	p2 := -1
	for p, l := range leaderOf {
		if l == 2 {
			p2 = p
		}
	}
	body := `{"records":[{"key":"aHR0cA==","value":"ZnJvbS1ub2RlLTE="}]}`
	cl := http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Post(fmt.Sprintf("http://%s/v1/topics/cell.sim/partitions/%d/records", nodes[0].httpAddr(), p2), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		BaseOffset int64 `json:"base_offset"`
	}
	json.NewDecoder(resp.Body).Decode(&pr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST records to node 1 for partition %d (led by node 2): %s", p2, resp.Status)
	}
	out, err = kcatCmd(kcat, "-b", net.ip(2)+":9092", "-C", "-t", "cell.sim", "-p", fmt.Sprint(p2), "-o", fmt.Sprint(pr.BaseOffset), "-c", "1", "-q", "-f", "%k=%s\n").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "http=from-node-1") {
		t.Errorf("kcat on node 2 partition %d: want the record POSTed to node 1 (%v):\n%s", p2, err, out)
	}

	// GET /v1/cell: 3 voters, one controller leader, 6+6 partitions led.
	led, leaders := 0, 0
	for _, m := range v.Members {
		if m.Role != "voter" || m.KafkaAddr != fmt.Sprintf("%s:9092", net.ip(int(m.NodeID))) {
			t.Errorf("GET /v1/cell member %+v, want a voter with its Kafka address", m)
		}
		if m.ControllerLeader {
			leaders++
		}
		led += m.PartitionsLed
	}
	if len(v.Members) != 3 || leaders != 1 || led < 12 || v.Raft.Term == 0 {
		t.Errorf("GET /v1/cell: %+v, want 3 members, 1 controller leader, at least 12 partitions led (events and cell.sim)", v)
	}
	return leaderOf
}

// topicHighWatermarksOK is topicHighWatermarks that reports a missing topic
// (or a node not answering) as none instead of failing.
func topicHighWatermarksOK(p *cellProc, topic string) []int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr()+"/v1/topics/"+topic, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var tp struct {
		Partitions []struct {
			HighWatermark int64 `json:"high_watermark"`
		} `json:"partitions"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tp) != nil {
		return nil
	}
	var out []int64
	for _, p := range tp.Partitions {
		out = append(out, p.HighWatermark)
	}
	return out
}

// checkCellRemoveNode stops node 3 and removes it with `katka cell remove-node`
// through node 1: it leaves GET /v1/cell (listed as removed), and node 1's
// sensors write again to the partitions node 3 led (leaderOf: before), now
// led by live nodes.
func checkCellRemoveNode(t *testing.T, nodes []*cellProc, leaderOf map[int]int32) {
	t.Helper()
	nodes[2].kill()
	out := cellCLI(t, "cell", "remove-node", "3", "--http", nodes[0].httpAddr())
	if !strings.Contains(out, "node 3 removed from the cell for good") {
		t.Errorf("katka cell remove-node 3: %q", out)
	}
	var v cellView
	waitUntil(t, 10*time.Second, "node 3 gone from GET /v1/cell on node 2", func() bool {
		v = nodes[1].cell(t)
		return len(v.Members) == 2 && len(v.Removed) == 1 && v.Removed[0] == 3
	})
	var moved []int
	for p, l := range leaderOf {
		if l == 3 {
			moved = append(moved, p)
		}
	}
	waitUntil(t, 20*time.Second, fmt.Sprintf("records in cell.sim partitions %v (led by node 3 before) on nodes 1 and 2", moved), func() bool {
		for _, p := range moved {
			n := int64(0)
			for _, node := range nodes[:2] {
				if hw := topicHighWatermarksOK(node, "cell.sim"); p < len(hw) {
					n += hw[p]
				}
			}
			if n == 0 {
				return false
			}
		}
		return true
	})
	if out := cellCLI(t, "cell", "status", "--http", nodes[1].httpAddr()); !strings.Contains(out, "removed for good: [3]") {
		t.Errorf("katka cell status after the removal:\n%s", out)
	}
}

// kcatCmd is kcat bounded to 30 s (a consumer chasing a topic that sensors
// keep writing must still end).
func kcatCmd(kcat string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, kcat, args...)
	go func() { <-ctx.Done(); cancel() }()
	return cmd
}
