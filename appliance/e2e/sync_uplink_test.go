package e2e

// The sync uplink against franz-go's kfake as the central cluster: the real
// katka binary mirrors a 4-partition topic while the central side goes down and
// katka is SIGKILLed twice; the central topic must then hold every local record
// exactly once, in order. kfake runs in the test process behind a gate
// (mirrortest.Gate) that cuts or hangs its connections without losing its state.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	restarted := time.Now()
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	d := produceEdge(t, k, per, per)
	t.Logf("produced %d records locally in %v while the central side was down", per, d.Round(time.Millisecond))
	// SIGKILL only once this katka has tried the central side and reported it down.
	waitSyncDown(t, k, restarted)
	k.kill()

	// Phase 3: restart while still down, produce, bring the central side back.
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	produceEdge(t, k, 2*per, per)
	g.Up()
	produceEdge(t, k, 3*per, per)

	recs, want := waitCentral(t, k, c, "plant-7.edge.data")
	var total int64
	for _, n := range want {
		total += n
	}
	if total < 4*per+4 {
		t.Fatalf("local topic holds %d records, want at least %d", total, 4*per+4)
	}
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

// waitCentral appends one marker record to every partition of the local topic
// edge.data and waits until the central topic holds each marker. The uplink
// mirrors a partition in order, one batch at a time, so once a partition's
// marker is central every earlier record of it is too, and a duplicate (a
// batch sent again by a resumed session) would have been committed before it:
// the records returned are final. It also returns the local ends, markers
// included.
func waitCentral(t *testing.T, k *kafkaKatka, c *kfake.Cluster, topic string) ([]*kgo.Record, map[int32]int64) {
	t.Helper()
	cl := k.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var markers []*kgo.Record
	for p := range int32(4) {
		markers = append(markers, &kgo.Record{Topic: "edge.data", Partition: p, Key: []byte("marker"), Value: []byte("end")})
	}
	err := cl.ProduceSync(kafkaCtx(t, 30*time.Second), markers...).FirstErr()
	cl.Close()
	if err != nil {
		t.Fatalf("produce markers: %v", err)
	}
	want := localEnds(t, k, "edge.data")
	var recs []*kgo.Record
	waitUntil(t, 60*time.Second, "every partition's marker mirrored to "+topic, func() bool {
		recs, err = mirrortest.ReadAll(kafkaCtx(t, 30*time.Second), c.ListenAddrs(), topic)
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

// waitSyncDown waits until a katka started at since reports in its status
// file that its sync link is down with an error (it tried the central side).
func waitSyncDown(t *testing.T, k *kafkaKatka, since time.Time) {
	t.Helper()
	waitUntil(t, 30*time.Second, "sync status reporting the central side down", func() bool {
		st := readSyncStatus(t, k)
		return st.Updated.After(since) && len(st.Links) == 1 && !st.Links[0].Connected && st.Links[0].LastError != ""
	})
}

func mustAtoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

type syncStatus struct {
	Site    string    `json:"site"`
	Updated time.Time `json:"updated"`
	Links   []struct {
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
