package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// waitTB polls cond every 20ms until it holds or d passes (then fails tb).
func waitTB(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkCellLeaderFailover SIGKILLs the controller leader of a 3-node cell
// (mDNS, network namespaces) KATKA_CELL_KILLS times (default 20). For each
// kill it measures the time until both survivors name the same new leader,
// checks that a metadata change (a topic created through a survivor) is
// committed, then restarts the killed node and waits until it has rejoined.
// Reports p50, p99 and max seconds to a new leader (polled every 20 ms).
//
//	go test -run XXX -bench BenchmarkCellLeaderFailover -benchtime 1x ./appliance/e2e
func BenchmarkCellLeaderFailover(b *testing.B) {
	kills := 20
	if v, err := strconv.Atoi(os.Getenv("KATKA_CELL_KILLS")); err == nil && v > 0 {
		kills = v
	}
	net := newCellNet(b, 3)
	dir := b.TempDir()
	ca := filepath.Join(dir, "ca")
	cellCLI(b, "cell", "init", "--name", "bench", "--out", ca)
	var nodes []*cellProc
	for i := 1; i <= 3; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		cellCLI(b, "cell", "issue", "--ca", ca, "--out", cred)
		nodes = append(nodes, net.node(i, cellNodeConfig(net.ip(i), cred, "bench", 3)))
	}
	for _, n := range nodes {
		n.start()
	}
	want := []int32{1, 2, 3}
	var leader int32
	waitTB(b, 30*time.Second, "the cell to form", func() bool { l, ok := agreed(nodes, want); leader = l; return ok })
	b.ResetTimer()
	var took []time.Duration
	for k := range kills {
		old := nodes[leader-1]
		rest := slices.DeleteFunc(slices.Clone(nodes), func(n *cellProc) bool { return n == old })
		old.kill()
		t0 := time.Now()
		var nl int32
		waitTB(b, 30*time.Second, "a new leader", func() bool {
			l := int32(-1)
			for _, n := range rest {
				st, ok := n.status()
				if !ok || st.Raft.LeaderID < 0 || st.Raft.LeaderID == leader || (l >= 0 && st.Raft.LeaderID != l) {
					return false
				}
				l = st.Raft.LeaderID
			}
			nl = l
			return true
		})
		took = append(took, time.Since(t0))
		topic := fmt.Sprintf("after-kill-%d", k)
		cellCLI(b, "topic", "create", topic, "-p", "1", "--brokers", rest[0].net.ip(rest[0].i)+":9092")
		waitTB(b, 10*time.Second, "the topic committed by the new controller", func() bool {
			st, ok := rest[1].status()
			return ok && st.Raft.LeaderID == nl && len(st.Nodes) == 3 && topicsOf(rest[1]) > k
		})
		old.start()
		waitTB(b, 30*time.Second, "the killed node to rejoin", func() bool { l, ok := agreed(nodes, want); leader = l; return ok && l == nl })
	}
	b.StopTimer()
	slices.Sort(took)
	q := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	b.ReportMetric(q(0.5).Seconds(), "p50-s")
	b.ReportMetric(q(0.99).Seconds(), "p99-s")
	b.ReportMetric(took[len(took)-1].Seconds(), "max-s")
	b.Logf("%d leader kills: time to a new controller leader p50 %v, p99 %v, max %v", len(took), q(0.5), q(0.99), took[len(took)-1])
}

// topicsOf is the number of topics in the node's controller metadata.
func topicsOf(p *cellProc) int {
	st, ok := p.status()
	if !ok {
		return -1
	}
	return st.Topics
}
