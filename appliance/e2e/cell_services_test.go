package e2e

// Singleton services in a cell (issue 16 point 7): the sync uplink of a site
// and each plugin instance run on exactly one node and move when it dies.
// Three real nodes in network namespaces; the central cluster is franz-go's
// kfake in the test process, listening on the bridge's address.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

const (
	svcTopic      = "edge.data"
	svcPartitions = 4
	svcSite       = "plant-7"
	svcSync       = "sync/" + svcSite
	// svcRF2 has two replicas per partition: the node running the uplink
	// holds none of one of its partitions and reads it from its leader.
	svcRF2      = "edge.rf2"
	svcRF2Parts = 3
)

// svcCell is a 3-node cell whose nodes all run the same sync and plugin
// configuration.
type svcCell struct {
	net     *cellNet
	nodes   []*cellProc
	seeds   []string
	adm     *kadm.Client
	central *kfake.Cluster
}

// startSvcCell forms a 3-node cell with sync to a kfake central cluster on
// the bridge and a file-sink plugin instance "archive" (its input topic is
// another than svcTopic: an instance creates a missing input topic on its
// node, under a topic id of its own, before the test creates svcTopic), and
// creates svcTopic with replication factor 3.
func startSvcCell(t *testing.T) *svcCell {
	t.Helper()
	c := &svcCell{net: newCellNet(t, 3)}
	central, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
		return net.Listen(network, c.net.ip(254)+":0") // the bridge: reachable from every namespace
	}))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(central.Close)
	c.central = central
	plugins := examplePlugins(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	cellCLI(t, "cell", "init", "--name", "svc", "--out", ca)
	want := []int32{1, 2, 3}
	for i := 1; i <= 3; i++ {
		cred := filepath.Join(dir, fmt.Sprintf("n%d", i))
		cellCLI(t, "cell", "issue", "--ca", ca, "--out", cred)
		extra := fmt.Sprintf(`sync:
  enabled: true
  site: %s
  brokers: [%s]
  batch_bytes: 64KiB
  backoff_min: 50ms
  backoff_max: 1s
  uplink:
    - topic: %s
    - topic: %s
plugins:
  dir: %s
  restart_min: 50ms
  restart_max: 1s
  instances:
    - name: archive
      plugin: file-sink
      inputs: [archive.in]
      settings: ["dir=%s"]
`, svcSite, strings.Join(central.ListenAddrs(), ", "), svcTopic, svcRF2, plugins, filepath.Join(dir, fmt.Sprintf("archive%d", i)))
		c.nodes = append(c.nodes, c.net.node(i, cellNodeConfig(c.net.ip(i), cred, "svc", 3)+extra))
		c.seeds = append(c.seeds, c.net.ip(i)+":9092")
	}
	for _, p := range c.nodes {
		p.start()
	}
	waitUntil(t, 30*time.Second, "3 nodes to form the cell", func() bool {
		_, ok := agreed(c.nodes, want)
		return ok
	})
	c.adm = kadm.NewClient(mustClient(t, kgo.SeedBrokers(c.seeds...)))
	t.Cleanup(c.adm.Close)
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		partitions int32
		rf         int16
	}{{svcTopic, svcPartitions, 3}, {svcRF2, svcRF2Parts, 2}} {
		waitUntil(t, 20*time.Second, tt.name+" to be created", func() bool {
			r, err := c.adm.CreateTopic(ctx, tt.partitions, tt.rf, nil, tt.name)
			return (err == nil && r.Err == nil) || (r.Err != nil && strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS"))
		})
		waitUntil(t, 30*time.Second, tt.name+" fully in sync", func() bool {
			md, err := c.adm.Metadata(ctx, tt.name)
			if err != nil || len(md.Topics[tt.name].Partitions) != int(tt.partitions) {
				return false
			}
			for _, p := range md.Topics[tt.name].Partitions {
				if p.Err != nil || p.Leader < 0 || len(p.ISR) != int(tt.rf) {
					return false
				}
			}
			return true
		})
	}
	return c
}

// running returns the live nodes whose current run has the service running
// (the last of its "service runs on this node" and "service stopped on this
// node" log lines is the former), but skip.
func (c *svcCell) running(service string, skip *cellProc) []*cellProc {
	var out []*cellProc
	for _, p := range c.nodes {
		if p.cmd != nil && p != skip && p.serviceRunning(service) {
			out = append(out, p)
		}
	}
	return out
}

// serviceRunning reports whether the node's current run last logged that it
// runs the service (and not since that it stopped it).
func (p *cellProc) serviceRunning(service string) bool {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return false
	}
	on := false
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, "service="+service+" ") && !strings.HasSuffix(l, "service="+service) {
			continue
		}
		switch {
		case strings.Contains(l, "service runs on this node"):
			on = true
		case strings.Contains(l, "service stopped on this node"):
			on = false
		}
	}
	return on
}

// logCount counts the lines of the node's current run log that contain
// all of parts.
func (p *cellProc) logCount(parts ...string) int {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		ok := true
		for _, s := range parts {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// pluginUp returns the live nodes on which the plugin instance's process is
// up, as GET /v1/status/plugins says.
func (c *svcCell) pluginUp(instance string) []*cellProc {
	var out []*cellProc
	for _, p := range c.nodes {
		if p.cmd == nil {
			continue
		}
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + p.httpAddr() + "/v1/status/plugins")
		if err != nil {
			continue
		}
		var sts []struct {
			Instance string `json:"instance"`
			Up       bool   `json:"up"`
			PID      int    `json:"pid"`
		}
		err = json.NewDecoder(resp.Body).Decode(&sts)
		resp.Body.Close()
		for _, s := range sts {
			if err == nil && s.Instance == instance && s.Up && s.PID > 0 {
				out = append(out, p)
			}
		}
	}
	return out
}

// produceUntil writes records to every partition of svcTopic and svcRF2
// (acks=all, idempotent) until stop is closed, counting the acknowledged
// ones.
func (c *svcCell) produceUntil(t *testing.T, stop <-chan struct{}, acked, failed *atomic.Int64) {
	cl := mustClient(t, kgo.SeedBrokers(c.seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MetadataMinAge(500*time.Millisecond))
	defer cl.Close()
	val := []byte(strings.Repeat("v", 80))
	for i := 0; ; i += 200 {
		select {
		case <-stop:
			return
		default:
		}
		recs := make([]*kgo.Record, 0, 200)
		for j := i; j < i+200; j++ {
			r := &kgo.Record{Topic: svcTopic, Partition: int32(j % svcPartitions), Key: fmt.Appendf(nil, "r%d", j), Value: val}
			if j%4 == 3 {
				r.Topic, r.Partition = svcRF2, int32(j%(4*svcRF2Parts)/4)
			}
			recs = append(recs, r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var first error
		for _, r := range cl.ProduceSync(ctx, recs...) {
			if r.Err == nil {
				acked.Add(1)
			} else if first == nil {
				first = r.Err
			}
		}
		if first != nil && failed.Add(1) == 1 {
			t.Logf("produce (first failure; the records of a failed call are not in the local log, or are and count): %v", first)
		}
		cancel()
	}
}

// TestCellSyncAndPluginsMoveOnKill: the uplink runs on one node. Its node
// SIGKILLed mid-stream, then (after a restart) cut off from the other nodes
// while it still reaches the central cluster, then paused with SIGSTOP beyond
// the session timeout and let go again: each time the uplink runs on another
// node a few seconds later, the deposed node stops it, and the central copy
// ends with every record of the replicated topic exactly once, in order. The
// plugin instance runs on one node and moves when that node is SIGKILLed.
func TestCellSyncAndPluginsMoveOnKill(t *testing.T) {
	c := startSvcCell(t)
	central := svcSite + "." + svcTopic // progress is watched on this one

	waitUntil(t, 30*time.Second, "one node to run the uplink", func() bool { return len(c.running(svcSync, nil)) == 1 })
	waitUntil(t, 30*time.Second, "the plugin instance up on one node", func() bool { return len(c.pluginUp("archive")) >= 1 })
	if up := c.pluginUp("archive"); len(up) != 1 {
		t.Fatalf("plugin instance up on %d nodes, want 1", len(up))
	}

	var acked, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.produceUntil(t, stop, &acked, &failed) })
	defer func() {
		for _, p := range c.nodes {
			if p.cmd != nil {
				p.cmd.Process.Signal(syscall.SIGCONT) // a test failed mid-fault: the producer must not hang on a paused node
			}
		}
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	all := []int32{1, 2, 3}
	faults := []struct {
		name      string
		do, after func(p *cellProc)
	}{
		{"SIGKILL", func(p *cellProc) { p.kill() }, func(p *cellProc) { p.start() }},
		{"cut from the other nodes (central still reachable)", func(p *cellProc) { c.net.partition(p.i, c.others(p.i)) },
			func(p *cellProc) { c.net.heal(p.i, c.others(p.i)) }},
		{"SIGSTOP", func(p *cellProc) { p.cmd.Process.Signal(syscall.SIGSTOP) }, func(p *cellProc) { p.cmd.Process.Signal(syscall.SIGCONT) }},
	}
	for _, f := range faults {
		waitUntil(t, 30*time.Second, "one node running the uplink", func() bool { return len(c.running(svcSync, nil)) == 1 })
		owner := c.running(svcSync, nil)[0]
		base := centralCount(c.central, central)
		waitUntil(t, 60*time.Second, "the uplink mirroring mid-stream", func() bool { return centralCount(c.central, central) > base+2000 })
		ups := map[*cellProc]int{}
		for _, p := range c.nodes {
			ups[p] = p.logCount("uplink session started")
		}
		t0 := time.Now()
		f.do(owner)
		t.Logf("fault %s on node %d (runs the uplink) with %d central offsets written, %d records acknowledged", f.name, owner.i, centralCount(c.central, central), acked.Load())
		waitUntil(t, 30*time.Second, "another node to run the uplink", func() bool { return len(c.running(svcSync, owner)) == 1 })
		next := c.running(svcSync, owner)[0]
		t.Logf("uplink on node %d %v after the fault", next.i, time.Since(t0).Round(10*time.Millisecond))
		// Its session is up: it fenced the old owner's transactional id at
		// the central cluster, then read the checkpoints.
		waitUntil(t, 30*time.Second, "the new owner's uplink session", func() bool {
			return next.logCount("uplink session started") > ups[next]
		})
		t.Logf("uplink session on node %d up %v after the fault", next.i, time.Since(t0).Round(10*time.Millisecond))
		f.after(owner)
		// Producers held up by a paused or cut-off leader go on now.
		mid := centralCount(c.central, central)
		waitUntil(t, 60*time.Second, "the new owner mirroring", func() bool { return centralCount(c.central, central) > mid+2000 })
		t.Logf("new owner mirrored %d more central offsets; %d records acknowledged", centralCount(c.central, central)-mid, acked.Load())
		if owner.cmd != nil && owner.starts > 0 && f.name != "SIGKILL" {
			waitUntil(t, 30*time.Second, "the deposed node to stop its uplink", func() bool { return !owner.serviceRunning(svcSync) })
		}
		waitUntil(t, 60*time.Second, "the node back in the cell", func() bool {
			ctl, ok := agreed(c.nodes, all)
			return ok && admitted(c.nodes, c.nodes[ctl-1])
		})
		if n := len(c.running(svcSync, nil)); n != 1 {
			t.Fatalf("uplink runs on %d nodes after the %s fault, want 1", n, f.name)
		}
		if owner.logHas("level=WARN", "PRODUCER_FENCED") || owner.logHas("level=WARN", "INVALID_PRODUCER_EPOCH") {
			t.Logf("node %d: its central transaction was fenced", owner.i)
		}
	}
	close(stop)
	wg.Wait()

	var local int64
	for _, topic := range []string{svcTopic, svcRF2} {
		recs, want := c.waitCentral(t, topic)
		var total int64
		for _, n := range want {
			total += n
		}
		local += total
		missing, dups, ooo, err := mirrortest.CheckUplink(recs, svcSite, topic, want)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: local %d records, central %d: missing %d, duplicated %d, out of order %d", topic, total, len(recs), missing, dups, ooo)
		if missing != 0 || dups != 0 || ooo != 0 || int64(len(recs)) != total {
			t.Fatalf("%s not exactly once: central %d records for %d local; missing %d, duplicated %d, out of order %d",
				topic, len(recs), total, missing, dups, ooo)
		}
	}
	t.Logf("%d records acknowledged (%d produce calls failed), %d local with the markers", acked.Load(), failed.Load(), local)
	if local < acked.Load() {
		t.Fatalf("%d records acknowledged, only %d in the local logs", acked.Load(), local)
	}

	// Plugins: one node runs the instance; SIGKILL it.
	if up := c.pluginUp("archive"); len(up) != 1 {
		t.Fatalf("plugin instance up on %d nodes, want 1", len(up))
	}
	host := c.pluginUp("archive")[0]
	t0 := time.Now()
	host.kill()
	waitUntil(t, 30*time.Second, "the plugin instance up on another node", func() bool { return len(c.pluginUp("archive")) == 1 })
	to := c.pluginUp("archive")[0]
	t.Logf("plugin instance moved from node %d to node %d %v after the kill", host.i, to.i, time.Since(t0).Round(10*time.Millisecond))
	// katka cell status names each service's owner.
	out := cellCLI(t, "cell", "status", "--http", to.httpAddr())
	if want := fmt.Sprintf("service plugin/archive on node %d ", to.i); !strings.Contains(out, want) || !strings.Contains(out, "service "+svcSync+" on node ") {
		t.Fatalf("katka cell status lacks %q or the sync service:\n%s", want, out)
	}
	for _, l := range strings.Split(out, "\n") {
		t.Logf("katka cell status: %s", l)
	}
}

// others lists every node index but i.
func (c *svcCell) others(i int) []int {
	var out []int
	for j := 1; j <= len(c.nodes); j++ {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// waitCentral writes one marker record to every partition of the local
// topic and waits until its central topic holds each one (the uplink mirrors
// a partition in order, so everything before a marker is central then); it
// returns the central records and the local ends, markers included.
func (c *svcCell) waitCentral(t *testing.T, local string) ([]*kgo.Record, map[int32]int64) {
	t.Helper()
	topic := svcSite + "." + local
	cl := mustClient(t, kgo.SeedBrokers(c.seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	md, err := c.adm.Metadata(kafkaCtx(t, 10*time.Second), local)
	if err != nil {
		t.Fatalf("metadata of %s: %v", local, err)
	}
	var markers []*kgo.Record
	for p := range int32(len(md.Topics[local].Partitions)) {
		markers = append(markers, &kgo.Record{Topic: local, Partition: p, Key: []byte("marker"), Value: []byte("end")})
	}
	if err := cl.ProduceSync(kafkaCtx(t, 30*time.Second), markers...).FirstErr(); err != nil {
		t.Fatalf("produce markers: %v", err)
	}
	ends, err := c.adm.ListEndOffsets(kafkaCtx(t, 10*time.Second), local)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	want := map[int32]int64{}
	ends.Each(func(l kadm.ListedOffset) { want[l.Partition] = l.Offset })
	var recs []*kgo.Record
	waitUntil(t, 60*time.Second, "every partition's marker mirrored to "+topic, func() bool {
		recs, err = mirrortest.ReadAll(kafkaCtx(t, 30*time.Second), c.central.ListenAddrs(), topic)
		if err != nil {
			return false
		}
		got := 0
		for _, r := range recs {
			p := int32(mustAtoi(mirrortest.Header(r, "katka.origin.partition")))
			if string(r.Key) == "marker" && mirrortest.Header(r, "katka.origin.offset") == strconv.FormatInt(want[p]-1, 10) {
				got++
			}
		}
		return got == len(want)
	})
	return recs, want
}
