package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// agreed reports whether every node's status shows the same formed cell: the
// same leader, raft members exactly want, and want registered in the metadata.
func agreed(nodes []*cellProc, want []int32) (int32, bool) {
	leader := int32(-1)
	for _, n := range nodes {
		st, ok := n.status()
		if !ok || !st.Formed || st.Raft.LeaderID < 0 {
			return -1, false
		}
		if leader >= 0 && st.Raft.LeaderID != leader {
			return -1, false
		}
		leader = st.Raft.LeaderID
		var servers, registered []int32
		for _, s := range st.Servers {
			servers = append(servers, s.NodeID)
		}
		for _, r := range st.Nodes {
			registered = append(registered, r.ID)
		}
		slices.Sort(servers)
		slices.Sort(registered)
		if !slices.Equal(servers, want) || !slices.Equal(registered, want) {
			return -1, false
		}
	}
	return leader, true
}

// TestCellFormsOverMDNS starts three katka nodes that know only the cell's
// name and credential, each in its own network namespace, and checks that they
// find each other over mDNS and form one cell (and Kafka clients see and use
// three brokers, checkCellKafka); that a fourth node holding
// another CA's credential never appears in it; that a katka without a cell
// section sends no multicast packet; that `katka cell status` shows the cell;
// and that after the controller leader is SIGKILLed the other two elect a new
// one and the killed node rejoins on restart; and that a network partition
// isolating the leader leaves the majority in charge (checkCellPartition);
// that node 1's simulated sensors write to the partitions other nodes lead
// (checkCellWriters); and that `katka cell remove-node` takes a stopped node
// out for good (checkCellRemoveNode).
func TestCellFormsOverMDNS(t *testing.T) {
	net := newCellNet(t, 5)
	dir := t.TempDir()
	ca, badCA := filepath.Join(dir, "ca"), filepath.Join(dir, "badca")
	cellCLI(t, "cell", "init", "--name", "plant7", "--out", ca)
	cellCLI(t, "cell", "init", "--name", "plant7", "--out", badCA) // same name, other CA and secret
	var nodes []*cellProc
	for i := 1; i <= 3; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		out := cellCLI(t, "cell", "issue", "--ca", ca, "--out", cred)
		if !strings.Contains(out, fmt.Sprintf("node %d:", i)) {
			t.Fatalf("cell issue gave %q, want node %d", out, i)
		}
		conf := cellNodeConfig(net.ip(i), cred, "plant7", 3)
		if i == 1 {
			conf = simulatedSensorsConfig(conf) // an in-process writer (checkCellWriters)
		}
		nodes = append(nodes, net.node(i, conf))
	}
	badCred := filepath.Join(dir, "bad")
	cellCLI(t, "cell", "issue", "--ca", badCA, "--node-id", "4", "--out", badCred)
	bad := net.node(4, cellNodeConfig(net.ip(4), badCred, "plant7", 3))
	plain := net.node(5, testConfig+fmt.Sprintf("kafka:\n  addr: %[1]s:9092\n  allow_unauthenticated: true\nhttp:\n  addr: %[1]s:8092\n  allow_unauthenticated: true\n", net.ip(5)))

	plain.start()
	t0 := time.Now()
	for _, n := range append(slices.Clone(nodes), bad) {
		n.start()
	}
	want := []int32{1, 2, 3}
	var leader int32
	waitUntil(t, 30*time.Second, "3 nodes to form one cell over mDNS", func() bool {
		var ok bool
		leader, ok = agreed(nodes, want)
		return ok
	})
	t.Logf("3 nodes formed the cell %v after start (poll every 100ms; the process starts are included), controller leader node %d", time.Since(t0).Round(10*time.Millisecond), leader)

	// The foreign node: the members saw its announcements (the marker) and
	// dropped them; it is nowhere in the cell, and it found no one.
	waitUntil(t, 10*time.Second, "node 1 to log node 4's announcement as ignored", func() bool {
		return nodes[0].logHas("ignoring announcement", "katka-plant7-4")
	})
	for _, n := range nodes {
		st, _ := n.status()
		for _, p := range st.Peers {
			if p.NodeID == 4 {
				t.Errorf("node %d lists the foreign node 4 as a peer", st.NodeID)
			}
		}
	}
	if _, ok := agreed(nodes, want); !ok {
		t.Errorf("the cell changed after node 4 announced itself")
	}
	if st, ok := bad.status(); !ok || st.Formed || len(st.Peers) != 0 {
		t.Errorf("foreign node: status %+v (answering %v), want not formed and no peers", st, ok)
	}

	// No multicast from single-node katka, while the cell nodes' namespaces sent plenty.
	if got := net.mcastSent(1); got == 0 {
		t.Errorf("node 1 sent no multicast packet: the counter does not work")
	}
	if got := net.mcastSent(5); got != 0 {
		t.Errorf("katka without a cell section sent %d multicast packets, want 0", got)
	}
	if _, ok := plain.status(); ok {
		t.Errorf("katka without a cell section serves a cell status")
	}

	// katka cell status, from the root namespace.
	out := cellCLI(t, "cell", "status", "--http", nodes[1].httpAddr())
	for _, s := range []string{"cell plant7, this is node 2", fmt.Sprintf("controller leader node %d", leader), net.ip(1) + ":9092", net.ip(3) + ":9093"} {
		if !strings.Contains(out, s) {
			t.Errorf("katka cell status lacks %q:\n%s", s, out)
		}
	}

	// What Kafka clients see.
	checkCellKafka(t, net, nodes, leader)
	// In-process writers of node 1 reach the partitions other nodes lead.
	leaderOf := checkCellWriters(t, net, nodes)

	// SIGKILL the controller leader: the other two elect a new one.
	old := nodes[leader-1]
	rest := slices.DeleteFunc(slices.Clone(nodes), func(n *cellProc) bool { return n == old })
	old.kill()
	tk := time.Now()
	var newLeader int32
	waitUntil(t, 30*time.Second, "a new controller leader after SIGKILL", func() bool {
		l := int32(-1)
		for _, n := range rest {
			st, ok := n.status()
			if !ok || st.Raft.LeaderID < 0 || st.Raft.LeaderID == leader || (l >= 0 && st.Raft.LeaderID != l) {
				return false
			}
			l = st.Raft.LeaderID
		}
		newLeader = l
		return true
	})
	t.Logf("new controller leader node %d seen %v after the SIGKILL of node %d", newLeader, time.Since(tk).Round(10*time.Millisecond), leader)
	// The new controller fences the killed one a session timeout (3 s)
	// after raft last heard from it, not after its election plus a grace.
	waitUntil(t, 30*time.Second, "the killed node fenced", func() bool {
		st, ok := nodes[newLeader-1].status()
		return ok && slices.Equal(st.fenced(), []int32{leader})
	})
	t.Logf("node %d fenced %v after its SIGKILL (cell.session_timeout 3s)", leader, time.Since(tk).Round(10*time.Millisecond))

	// The killed node rejoins on restart, follows the new leader and is
	// unfenced.
	old.start()
	tr := time.Now()
	waitUntil(t, 30*time.Second, "the killed node to rejoin", func() bool {
		l, ok := agreed(nodes, want)
		return ok && l == newLeader
	})
	waitUntil(t, 30*time.Second, "the restarted node unfenced everywhere", func() bool {
		for _, n := range nodes {
			if st, ok := n.status(); !ok || len(st.fenced()) != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("node %d unfenced %v after its restart", leader, time.Since(tr).Round(10*time.Millisecond))

	// A network partition isolating the controller leader, then healed.
	checkCellPartition(t, net, nodes, newLeader)

	// Node 3 removed for good; its partitions go on on nodes 1 and 2.
	checkCellRemoveNode(t, nodes, leaderOf)
}

// partition cuts node i from the other nodes both ways with blackhole routes
// in the namespaces (the test still reaches every node through the bridge's
// address); heal removes them.
func (c *cellNet) partition(i int, others []int) {
	c.t.Helper()
	for _, o := range others {
		c.run("ip", "-n", c.ns[i-1], "route", "add", "blackhole", c.ip(o)+"/32")
		c.run("ip", "-n", c.ns[o-1], "route", "add", "blackhole", c.ip(i)+"/32")
	}
}

func (c *cellNet) heal(i int, others []int) {
	c.t.Helper()
	for _, o := range others {
		c.run("ip", "-n", c.ns[i-1], "route", "del", "blackhole", c.ip(o)+"/32")
		c.run("ip", "-n", c.ns[o-1], "route", "del", "blackhole", c.ip(i)+"/32")
	}
}

// checkCellPartition isolates the controller leader from the other two: the
// majority elects a new leader and keeps committing metadata changes; the
// isolated node steps down, has no controller, and its clients asking for a
// new topic are told LEADER_NOT_AVAILABLE; after healing it follows the new
// leader and catches up with the changes it missed.
func checkCellPartition(t *testing.T, net *cellNet, nodes []*cellProc, leader int32) {
	t.Helper()
	isolated := nodes[leader-1]
	var others []int
	var majority []*cellProc
	for _, n := range nodes {
		if n != isolated {
			others = append(others, n.i)
			majority = append(majority, n)
		}
	}
	before := topicsOf(majority[0])
	net.partition(isolated.i, others)
	var newLeader int32
	elected := waitUntil(t, 30*time.Second, "the majority to elect a new leader", func() bool {
		a, ok1 := majority[0].status()
		b, ok2 := majority[1].status()
		newLeader = a.Raft.LeaderID
		return ok1 && ok2 && a.Raft.LeaderID >= 0 && a.Raft.LeaderID != leader && b.Raft.LeaderID == a.Raft.LeaderID
	})
	waitUntil(t, 30*time.Second, "the isolated node to lose its controller", func() bool {
		st, ok := isolated.status()
		return ok && st.Raft.State != "Leader" && st.Raft.LeaderID < 0
	})
	cellCLI(t, "topic", "create", "during-partition", "-p", "2", "--brokers", net.ip(majority[0].i)+":9092")
	waitUntil(t, 10*time.Second, "the majority to commit a topic", func() bool { return topicsOf(majority[1]) == before+1 })

	kcat := kcatPath(t)
	out, _ := exec.Command(kcat, "-b", net.ip(isolated.i)+":9092", "-L", "-t", "made-in-minority", "-m", "5").CombinedOutput()
	if !strings.Contains(string(out), "Leader not available") {
		t.Errorf("auto-create on the isolated node: want Leader not available, got\n%s", out)
	}
	if got := topicsOf(isolated); got != before {
		t.Errorf("the isolated node's metadata changed to %d topics (had %d)", got, before)
	}

	net.heal(isolated.i, others)
	caught := waitUntil(t, 30*time.Second, "the healed node to catch up", func() bool {
		st, ok := isolated.status()
		return ok && st.Raft.LeaderID == newLeader && st.Topics == before+1
	})
	t.Logf("leader node %d isolated: the majority elected node %d after %v; healed, it caught up after %v",
		leader, newLeader, elected.Round(10*time.Millisecond), caught.Round(10*time.Millisecond))
}

// TestCellFiveNodes: five nodes started together with bootstrap_expect 3: the
// three lowest ids form the cell, the leader adds the other two, and all five
// are voters.
func TestCellFiveNodes(t *testing.T) {
	net := newCellNet(t, 5)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	cellCLI(t, "cell", "init", "--name", "plant5", "--out", ca)
	var nodes []*cellProc
	for i := 1; i <= 5; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		cellCLI(t, "cell", "issue", "--ca", ca, "--out", cred)
		nodes = append(nodes, net.node(i, cellNodeConfig(net.ip(i), cred, "plant5", 3)))
	}
	t0 := time.Now()
	for _, n := range nodes {
		n.start()
	}
	want := []int32{1, 2, 3, 4, 5}
	waitUntil(t, 30*time.Second, "5 nodes in one cell", func() bool {
		_, ok := agreed(nodes, want)
		return ok
	})
	t.Logf("5 nodes formed the cell %v after start", time.Since(t0).Round(10*time.Millisecond))
	waitUntil(t, 10*time.Second, "5 voters", func() bool {
		st, ok := nodes[4].status()
		voters := 0
		for _, s := range st.Servers {
			if s.Role == "voter" {
				voters++
			}
		}
		return ok && voters == 5
	})
	// Metrics: every node counts five nodes; exactly one is the leader and
	// has timed its metadata changes.
	leaders := 0
	for _, n := range nodes {
		m := cellMetrics(t, n)
		if !strings.Contains(m, "katka_cell_nodes 5\n") {
			t.Errorf("node %d: no katka_cell_nodes 5", n.i)
		}
		if strings.Contains(m, "katka_cell_controller_leader 1\n") {
			leaders++
			if strings.Contains(m, "katka_cell_controller_apply_seconds_count 0\n") || !strings.Contains(m, "katka_cell_controller_apply_seconds_count") {
				t.Errorf("leader node %d timed no metadata change", n.i)
			}
		}
	}
	if leaders != 1 {
		t.Errorf("%d nodes report katka_cell_controller_leader 1, want 1", leaders)
	}
}

func cellMetrics(t *testing.T, p *cellProc) string {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
