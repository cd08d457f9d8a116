package e2e

// Kafka's own client library, librdkafka, through confluent-kafka-python
// (Debian's python3-confluent-kafka) against a real `katka serve`: the
// transactional producer and the AdminClient calls librdkafka's own test
// suite makes. The client side is testdata/confluent_kafka_client.py.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// confluentPython returns Debian's python3 if it has confluent_kafka; the
// test is skipped without it, unless CI=true.
func confluentPython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import confluent_kafka").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-confluent-kafka is missing and CI=true (apt-get install python3-confluent-kafka): %v %s", err, out)
		}
		t.Skip("python3-confluent-kafka is not installed (apt-get install python3-confluent-kafka)")
	}
	return py
}

// runConfluent runs testdata/confluent_kafka_client.py in mode against k and
// returns its stdout.
func runConfluent(t *testing.T, k *kafkaKatka, mode, topic string) string {
	t.Helper()
	py := confluentPython(t)
	ctx := kafkaCtx(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, py, "testdata/confluent_kafka_client.py", mode, k.KafkaAddr, topic)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("confluent_kafka_client.py %s: %v\nstdout: %s\nstderr: %s", mode, err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// TestTxnConfluentPython: confluent-kafka-python's transactional producer
// (librdkafka) commits c1..c3 on two partitions, aborts a1..a3 (flushed into
// the log before the abort), commits c4; kcat with isolation.level
// read_committed reads exactly the committed records, read_uncommitted all
// seven, both to the end past the markers.
func TestTxnConfluentPython(t *testing.T) {
	kcatBinary(t)
	confluentPython(t)
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 60*time.Second)
	const topic = "txn-confluent"
	k.createTopic(t, ctx, topic, 2)
	if out := runConfluent(t, k, "txn", topic); out != "txn ok" {
		t.Fatalf("producer said %q", out)
	}
	sorted := func(v []string) string { sort.Strings(v); return strings.Join(v, ",") }
	if got, want := sorted(kcatCommitted(t, ctx, k, topic)), "c1,c2,c3,c4"; got != want {
		t.Fatalf("read_committed kcat got %s, want %s", got, want)
	}
	if got, want := sorted(kcatRead(t, ctx, k, topic, "read_uncommitted")), "a1,a2,a3,c1,c2,c3,c4"; got != want {
		t.Fatalf("read_uncommitted kcat got %s, want %s", got, want)
	}
	ds, err := kadm.NewClient(k.client(t)).DescribeTransactions(ctx, "confluent-py-txn")
	if err != nil || ds["confluent-py-txn"].State != "CompleteCommit" {
		t.Fatalf("transaction state after the last commit: %+v %v", ds, err)
	}
}

// TestAdminConfluentPython: confluent-kafka-python's AdminClient creates a
// topic with segment.bytes and compression.type=lz4 (librdkafka's tests
// 0081/0092/0129 do), alter_configs (AlterConfigs, API 33) sets
// segment.bytes and compression.type=zstd, an unknown config name is refused
// with INVALID_CONFIG and changes nothing; kadm describes the same values as
// set on the topic.
func TestAdminConfluentPython(t *testing.T) {
	confluentPython(t)
	k := startKafkaKatka(t)
	const topic = "admin-confluent"
	var got struct {
		Created      map[string]string `json:"created"`
		Altered      map[string]string `json:"altered"`
		AfterUnknown map[string]string `json:"after_unknown"`
		Unknown      string            `json:"unknown"`
	}
	out := runConfluent(t, k, "admin", topic)
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("admin output %q: %v", out, err)
	}
	check := func(stage string, m map[string]string, seg, comp string) {
		t.Helper()
		if m["segment.bytes"] != seg || m["compression.type"] != comp {
			t.Errorf("%s: described %v, want segment.bytes %s compression.type %s", stage, m, seg, comp)
		}
	}
	check("after create_topics", got.Created, "131072", "lz4")
	check("after alter_configs", got.Altered, "262144", "zstd")
	check("after the refused alter_configs", got.AfterUnknown, "262144", "zstd")
	if got.Unknown != "INVALID_CONFIG" {
		t.Errorf("alter_configs of an unknown name: %s, want INVALID_CONFIG", got.Unknown)
	}
	rc, err := kadm.NewClient(k.client(t)).DescribeTopicConfigs(kafkaCtx(t, 10*time.Second), topic)
	if err != nil || rc[0].Err != nil {
		t.Fatalf("kadm describe: %v %+v", err, rc)
	}
	seen := map[string]string{}
	for _, c := range rc[0].Configs {
		if c.Source == kmsg.ConfigSourceDynamicTopicConfig { // set on the topic
			seen[c.Key] = c.MaybeValue()
		}
	}
	check("kadm (set on the topic)", seen, "262144", "zstd")
}
