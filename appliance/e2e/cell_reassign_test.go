package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCellWipedNodeAndReassign runs a 4-node cell (3 voters, 1 non-voter)
// with a 6-partition topic of replication factor 3 under an idempotent
// acks=all producer, and checks two operator actions while it writes: a node
// whose data directory is wiped (a replaced SSD) rejoins and becomes a full
// replica again, and `katka topic reassign --wait` moves a partition off its
// leader onto the node that did not hold it. Nothing acknowledged is lost or
// duplicated, and every replica's log equals the leader's.
func TestCellWipedNodeAndReassign(t *testing.T) {
	c := startReplCell(t, 4, "move")
	nodes, seeds, adm, controller := c.nodes, c.seeds, c.adm, c.controller
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	log := &ackLog{acked: map[string]kgo.Record{}}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var produced atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		produceLoop(t, wctx, seeds, 0, log, &produced)
	}()
	acked := log.count
	waitUntil(t, 30*time.Second, "the first acknowledgements", func() bool { return acked() > 200 })

	// A replaced SSD: a node other than the controller leader loses its data
	// directory (partition logs and raft state) and starts again.
	var wiped *cellProc
	for _, n := range nodes[:3] {
		if int32(n.i) != controller {
			wiped = n
			break
		}
	}
	wiped.kill()
	if err := os.RemoveAll(wiped.dataDir); err != nil {
		t.Fatal(err)
	}
	before := acked()
	t0 := time.Now()
	wiped.start()
	// The marker that the cell noticed the restart: the controller fenced
	// the node's new run (so it led nothing with its empty disk).
	waitUntil(t, 30*time.Second, "the controller to fence the wiped node's new run", func() bool {
		for _, n := range nodes {
			if n.logHas("node fenced: it restarted", fmt.Sprintf("node_id=%d", wiped.i)) {
				return true
			}
		}
		return false
	})
	waitUntil(t, 90*time.Second, "the wiped node to be a full replica again", func() bool {
		return cellInSync(nodes) && acked() > before+200
	})
	t.Logf("node %d wiped and restarted: every partition fully in sync again after %v", wiped.i, time.Since(t0).Round(100*time.Millisecond))

	// Move partition 0 off its leader onto a node that does not hold it.
	md, err := adm.Metadata(ctx, replTopic)
	if err != nil {
		t.Fatal(err)
	}
	p0 := md.Topics[replTopic].Partitions[0]
	var target []int32
	var newNode int32
	for id := int32(1); id <= 4; id++ {
		if !slices.Contains(p0.Replicas, id) {
			newNode = id
		}
	}
	for _, r := range p0.Replicas {
		if r != p0.Leader {
			target = append(target, r)
		}
	}
	target = append(target, newNode)
	ids := make([]string, len(target))
	for i, id := range target {
		ids[i] = fmt.Sprint(id)
	}
	t1 := time.Now()
	out, err := exec.Command(requireBinary(t), "topic", "reassign", replTopic, "--partition", "0", "--replicas", strings.Join(ids, ","),
		"--wait", "--wait-timeout", "60s", "--brokers", strings.Join(seeds, ",")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "moved repl-0 to nodes") {
		t.Fatalf("katka topic reassign: %v\n%s", err, out)
	}
	t.Logf("partition 0 moved from %v (leader %d) to %v in %v; the command said: %s", p0.Replicas, p0.Leader, target, time.Since(t1).Round(100*time.Millisecond),
		strings.TrimSpace(string(out[strings.LastIndex(string(out[:len(out)-1]), "\n")+1:])))
	waitUntil(t, 30*time.Second, "the metadata to show the moved partition with a new leader", func() bool {
		md, err := adm.Metadata(ctx, replTopic)
		if err != nil {
			return false
		}
		p := md.Topics[replTopic].Partitions[0]
		return sameInt32s(p.Replicas, target) && p.Leader != p0.Leader && p.Leader >= 0
	})
	before = acked()
	waitUntil(t, 30*time.Second, "records acknowledged after the move", func() bool { return acked() > before+200 })
	stopWork()
	wg.Wait()

	v := c.verify(t, ctx, log)
	t.Logf("%d records acknowledged, %d read back: %d lost, %d duplicated, %d vanished, %d divergent", len(log.acked), v.read, v.lost, v.dups, v.vanished, v.diverged)
}

func sameInt32s(a, b []int32) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
