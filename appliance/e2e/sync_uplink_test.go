package e2e

// The sync uplink against franz-go's kfake as the central cluster: the real
// katka binary mirrors a 4-partition topic while the central side goes down and
// katka is SIGKILLed twice; the central topic must then hold every local record
// exactly once, in order. kfake runs in the test process behind a gate
// (mirrortest.Gate) that cuts or hangs its connections without losing its state.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// syncCentral starts a one-broker kfake cluster behind a gate.
func syncCentral(t testing.TB) (*kfake.Cluster, *mirrortest.Gate) {
	t.Helper()
	g := mirrortest.NewGate()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(g.Listen))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, g
}

// syncKatkaConfig is a katka config with one 4-partition topic mirrored to brokers.
func syncKatkaConfig(brokers []string, extra string) string {
	return fmt.Sprintf(`sensors:
  simulated:
    enabled: false
storage:
  segment_bytes: 1MiB
topics:
  create:
    - name: edge.data
      partitions: 4
sync:
  enabled: true
  site: plant-7
  brokers: [%s]
  batch_bytes: 256KiB
  backoff_min: 50ms
  backoff_max: 1s
%s`, strings.Join(brokers, ", "), extra)
}

// produceEdge writes n records spread evenly over the 4 partitions of edge.data
// through katka's Kafka listener, acks=all.
func produceEdge(t *testing.T, k *kafkaKatka, from, n int) time.Duration {
	t.Helper()
	cl := k.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond))
	defer cl.Close()
	ctx := kafkaCtx(t, 60*time.Second)
	val := []byte(strings.Repeat("v", 80))
	t0 := time.Now()
	const chunk = 2000
	for i := from; i < from+n; i += chunk {
		recs := make([]*kgo.Record, 0, chunk)
		for j := i; j < min(i+chunk, from+n); j++ {
			recs = append(recs, &kgo.Record{Topic: "edge.data", Partition: int32(j % 4), Key: fmt.Appendf(nil, "r%d", j), Value: val})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce to katka: %v", err)
		}
	}
	return time.Since(t0)
}

// localEnds returns the high watermark of each partition of a katka topic.
func localEnds(t *testing.T, k *kafkaKatka, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(k.client(t))
	o, err := adm.ListEndOffsets(kafkaCtx(t, 10*time.Second), topic)
	if err == nil {
		err = o.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	o.Each(func(l kadm.ListedOffset) { out[l.Partition] = l.Offset })
	return out
}

// centralCount sums the end offsets of a central topic (0 if it does not exist yet).
func centralCount(c *kfake.Cluster, topic string) int64 {
	var n int64
	for _, pi := range c.PartitionInfos(topic) {
		if pi != nil {
			n += pi.HighWatermark
		}
	}
	return n
}

func TestSyncUplinkExactlyOnceThroughOutageAndSIGKILL(t *testing.T) {
	c, g := syncCentral(t)
	k := startKafkaKatkaWith(t, syncKatkaConfig(c.ListenAddrs(), "  uplink:\n    - topic: edge.data\n"))
	const per = 50000

	// Phase 1: central up; SIGKILL while the uplink is mid-transfer.
	produceEdge(t, k, 0, per)
	waitUntil(t, 30*time.Second, "uplink started mirroring", func() bool { return centralCount(c, "plant-7.edge.data") > 0 })
	mid := centralCount(c, "plant-7.edge.data")
	k.kill()
	t.Logf("kill 1 with %d central offsets written", mid)

	// Phase 2: central down; produce, then SIGKILL again while it is down.
	g.Down()
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	d := produceEdge(t, k, per, per)
	t.Logf("produced %d records locally in %v while the central side was down", per, d.Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	k.kill()

	// Phase 3: restart while still down, produce, bring the central side back.
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	produceEdge(t, k, 2*per, per)
	g.Up()
	produceEdge(t, k, 3*per, per)

	want := localEnds(t, k, "edge.data")
	var total int64
	for _, n := range want {
		total += n
	}
	if total < 4*per {
		t.Fatalf("local topic holds %d records, want at least %d", total, 4*per)
	}
	recs := waitCentral(t, c, "plant-7.edge.data", total)
	missing, dups, ooo, err := mirrortest.CheckUplink(recs, "plant-7", "edge.data", want)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("local %d records, central %d: missing %d, duplicated %d, out of order %d", total, len(recs), missing, dups, ooo)
	if missing != 0 || dups != 0 || ooo != 0 || int64(len(recs)) != total {
		t.Fatalf("not exactly once: central %d records for %d local; missing %d, duplicated %d, out of order %d", len(recs), total, missing, dups, ooo)
	}
	for _, r := range recs[:10] {
		if r.Partition != int32(mustAtoi(mirrortest.Header(r, "katka.origin.partition"))) {
			t.Fatalf("record of local partition %s went to central partition %d", mirrortest.Header(r, "katka.origin.partition"), r.Partition)
		}
	}

	// The status file (and `katka sync status`) report the link.
	waitUntil(t, 5*time.Second, "status shows no lag", func() bool {
		st := readSyncStatus(t, k)
		return len(st.Links) == 1 && st.Links[0].Connected && st.Links[0].Lag == 0
	})
	st := readSyncStatus(t, k)
	if st.Links[0].Delivery != "exactly_once" || st.Site != "plant-7" {
		t.Fatalf("status: %+v", st)
	}
	out, err := exec.Command(k.bin, "sync", "status", "--config", k.config, "--data-dir", k.dataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "exactly_once") {
		t.Fatalf("katka sync status: %v\n%s", err, out)
	}
	t.Logf("katka sync status:\n%s", out)
	if resp, err := http.Get("http://" + k.HTTPAddr + "/v1/status/sync"); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "exactly_once") || !strings.Contains(string(body), "plant-7") {
			t.Fatalf("GET /v1/status/sync: %d %s", resp.StatusCode, body)
		}
	}
	resp, err := http.Get("http://" + k.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`katka_sync_connected{link="uplink"} 1`, `katka_sync_exactly_once{link="uplink"} 1`,
		`katka_sync_uplink_records_total{topic="edge.data"}`, `katka_sync_uplink_backlog_records{topic="edge.data"} 0`,
		`katka_sync_uplink_backlog_oldest_age_seconds{topic="edge.data"} 0`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// waitCentral waits until a central topic holds at least total committed
// records, waits a little longer (so a duplicate would show) and returns them.
func waitCentral(t *testing.T, c *kfake.Cluster, topic string, total int64) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		recs, err := mirrortest.ReadAll(ctx, c.ListenAddrs(), topic)
		cancel()
		if err == nil && int64(len(recs)) >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("central %s holds %d of %d records after 60s (err %v)", topic, len(recs), total, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	recs, err := mirrortest.ReadAll(kafkaCtx(t, 30*time.Second), c.ListenAddrs(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func mustAtoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

type syncStatus struct {
	Site  string `json:"site"`
	Links []struct {
		Link      string `json:"link"`
		Connected bool   `json:"connected"`
		Delivery  string `json:"delivery"`
		Lag       int64  `json:"lag_records"`
		LastError string `json:"last_error"`
		Records   int64  `json:"records"`
	} `json:"links"`
}

func readSyncStatus(t *testing.T, k *kafkaKatka) syncStatus {
	t.Helper()
	var st syncStatus
	raw, err := os.ReadFile(filepath.Join(k.dataDir, "sync-status.json"))
	if err != nil {
		return st
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("sync-status.json: %v", err)
	}
	return st
}
