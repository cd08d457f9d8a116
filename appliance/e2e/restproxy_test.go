package e2e

// The REST proxy in Confluent's shape against the real binary, driven with
// curl exactly as Confluent's documentation writes the commands (the
// quickstarts of github.com/confluentinc/kafka-rest's README, copied
// verbatim below; only the host and the cluster id are put in), with the
// records checked by a Kafka client (kgo).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Confluent's documented commands, as written (kafka-rest README, "Quickstart
// (v3 API)" and "Quickstart (v2 API)").
const (
	confluentV3Clusters    = `curl http://localhost:8082/v3/clusters`
	confluentV3CreateTopic = `curl -X POST -H "Content-Type:application/json" -d '{"topic_name":"jsontest"}' \
       http://localhost:8082/v3/clusters/xFhUvurESIeeCI87SXWR-Q/topics`
	confluentV3ProduceJSON = `curl -X POST -H "Content-Type: application/json" \
       -d '{"value":{"type":"JSON","data":{"name":"testUser"}}}' \
       http://localhost:8082/v3/clusters/xFhUvurESIeeCI87SXWR-Q/topics/jsontest/records`
	confluentV3ProduceTwo = `curl -X POST -H "Content-Type: application/json" \
       -d '{"value":{"type":"JSON","data":"ONE"}} {"value":{"type":"JSON","data":"TWO"}}' \
       http://localhost:8082/v3/clusters/xFhUvurESIeeCI87SXWR-Q/topics/jsontest/records`

	confluentV2Produce = `curl -X POST -H "Content-Type: application/vnd.kafka.json.v2+json" \
       -d '{"records":[{"value":{"name": "testUser"}}]}' \
       http://localhost:8082/topics/jsontest`
	confluentV2CreateConsumer = `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -H "Accept: application/vnd.kafka.v2+json" \
       -d '{"name": "my_consumer_instance", "format": "json", "auto.offset.reset": "earliest"}' \
       http://localhost:8082/consumers/my_json_consumer`
	confluentV2Subscribe = `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" \
       -d '{"topics":["jsontest"]}' \
      http://localhost:8082/consumers/my_json_consumer/instances/my_consumer_instance/subscription`
	confluentV2Records = `curl -X GET -H "Accept: application/vnd.kafka.json.v2+json" \
       http://localhost:8082/consumers/my_json_consumer/instances/my_consumer_instance/records`
	confluentV2Delete = `curl -X DELETE -H "Accept: application/vnd.kafka.v2+json" \
       http://localhost:8082/consumers/my_json_consumer/instances/my_consumer_instance`
)

// confluentCurl runs a documented curl command against k: localhost:8082
// becomes k's HTTP listener and the documentation's cluster id k's. It
// returns stdout and the HTTP status (curl's -w is appended).
func confluentCurl(t *testing.T, k *kafkaKatka, clusterID, cmd string) (string, int) {
	t.Helper()
	requireTool(t, "curl", "curl")
	cmd = strings.ReplaceAll(cmd, "localhost:8082", k.HTTPAddr)
	if clusterID != "" {
		cmd = strings.ReplaceAll(cmd, "xFhUvurESIeeCI87SXWR-Q", clusterID)
	}
	out, err := exec.Command("sh", "-c", cmd+` -s -w '\n%{http_code}'`).Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	s := strings.TrimRight(string(out), "\n")
	body, code := "", s
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		body, code = strings.TrimRight(s[:i], "\n"), s[i+1:]
	}
	var status int
	fmt.Sscan(code, &status)
	return body, status
}

// startRESTKatka starts katka with extra config lines beside testConfig's.
func startRESTKatka(t *testing.T, extra string) *kafkaKatka {
	t.Helper()
	return startKafkaKatkaWith(t, testConfig+extra)
}

// clusterID runs Confluent's "Get the local cluster information" command.
func clusterID(t *testing.T, k *kafkaKatka) string {
	t.Helper()
	out, status := confluentCurl(t, k, "", confluentV3Clusters)
	var list struct {
		Kind string `json:"kind"`
		Data []struct {
			Kind      string `json:"kind"`
			ClusterID string `json:"cluster_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || status != 200 || list.Kind != "KafkaClusterList" || len(list.Data) != 1 || list.Data[0].ClusterID == "" {
		t.Fatalf("GET /v3/clusters: %d %s (%v)", status, out, err)
	}
	return list.Data[0].ClusterID
}

// v3Report is a v3 delivery report.
type v3Report struct {
	ErrorCode   int    `json:"error_code"`
	Message     string `json:"message"`
	ClusterID   string `json:"cluster_id"`
	TopicName   string `json:"topic_name"`
	PartitionID int32  `json:"partition_id"`
	Offset      int64  `json:"offset"`
	Timestamp   string `json:"timestamp"`
	Key         *struct {
		Type string `json:"type"`
		Size int    `json:"size"`
	} `json:"key"`
	Value *struct {
		Type string `json:"type"`
		Size int    `json:"size"`
	} `json:"value"`
}

func decodeReports(t *testing.T, s string) []v3Report {
	t.Helper()
	var out []v3Report
	dec := json.NewDecoder(strings.NewReader(s))
	for dec.More() {
		var r v3Report
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("delivery reports %q: %v", s, err)
		}
		out = append(out, r)
	}
	return out
}

// TestRESTProxyV3ProduceConfluentCurl: Confluent's v3 quickstart, as
// written, creates a topic and produces one JSON record and then two
// concatenated ones; BINARY and STRING data with a key, a partition and a
// header go the same way; kgo reads back exactly those bytes. Then a
// streamed produce over one chunked request gets each record's delivery
// report before the next record is sent.
func TestRESTProxyV3ProduceConfluentCurl(t *testing.T) {
	k := startRESTKatka(t, "")
	cid := clusterID(t, k)
	if out, status := confluentCurl(t, k, cid, confluentV3CreateTopic); status != 201 || !strings.Contains(out, `"topic_name":"jsontest"`) {
		t.Fatalf("create topic: %d %s", status, out)
	}
	out, status := confluentCurl(t, k, cid, confluentV3ProduceJSON)
	reps := decodeReports(t, out)
	if status != 200 || len(reps) != 1 || reps[0].ErrorCode != 200 || reps[0].ClusterID != cid || reps[0].TopicName != "jsontest" ||
		reps[0].Offset != 0 || reps[0].Value == nil || reps[0].Value.Type != "JSON" || reps[0].Value.Size != 19 || reps[0].Timestamp == "" {
		t.Fatalf("produce JSON: %d %s", status, out)
	}
	out, status = confluentCurl(t, k, cid, confluentV3ProduceTwo)
	reps = decodeReports(t, out)
	if status != 200 || len(reps) != 2 || reps[0].Offset != 1 || reps[1].Offset != 2 || reps[1].Value.Size != 5 {
		t.Fatalf("produce two: %d %s", status, out)
	}
	// BINARY and STRING, a key, a partition and a header (the API reference's fields).
	bin := base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff})
	body := fmt.Sprintf(`{"partition_id":0,"headers":[{"name":"h1","value":"%s"}],"key":{"type":"STRING","data":"k-1"},"value":{"type":"BINARY","data":"%s"}}`,
		base64.StdEncoding.EncodeToString([]byte("hv")), bin)
	cmd := `curl -X POST -H "Content-Type: application/json" -d '` + body + `' http://localhost:8082/v3/clusters/xFhUvurESIeeCI87SXWR-Q/topics/jsontest/records`
	out, status = confluentCurl(t, k, cid, cmd)
	reps = decodeReports(t, out)
	if status != 200 || len(reps) != 1 || reps[0].Offset != 3 || reps[0].Key == nil || reps[0].Key.Type != "STRING" || reps[0].Key.Size != 3 || reps[0].Value.Type != "BINARY" || reps[0].Value.Size != 4 {
		t.Fatalf("produce binary: %d %s", status, out)
	}
	recs := consumeN(t, k, "jsontest", 4)
	want := []string{`{"name":"testUser"}`, `"ONE"`, `"TWO"`, "\x00\x01\x02\xff"}
	for i, r := range recs {
		if string(r.Value) != want[i] || r.Offset != int64(i) {
			t.Fatalf("record %d: offset %d value %q, want %q", i, r.Offset, r.Value, want[i])
		}
	}
	if string(recs[3].Key) != "k-1" || len(recs[3].Headers) != 1 || recs[3].Headers[0].Key != "h1" || string(recs[3].Headers[0].Value) != "hv" {
		t.Fatalf("record 3: key %q headers %+v", recs[3].Key, recs[3].Headers)
	}
	// An unknown topic and an unknown cluster in Confluent's error shape.
	out, status = confluentCurl(t, k, cid, strings.ReplaceAll(confluentV3ProduceJSON, "jsontest", "nosuch"))
	if status != 404 || out != `{"error_code":404,"message":"This server does not host this topic-partition."}` {
		t.Fatalf("unknown topic: %d %s", status, out)
	}
	out, status = confluentCurl(t, k, "", confluentV3ProduceJSON)
	if status != 404 || !strings.Contains(out, `"error_code":404`) {
		t.Fatalf("unknown cluster: %d %s", status, out)
	}

	// Streamed: one chunked request, a report for each record as it goes.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+k.HTTPAddr+"/v3/clusters/"+cid+"/topics/jsontest/records", pr)
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		got <- result{resp, err}
	}()
	fmt.Fprintf(pw, `{"value":{"type":"STRING","data":"s-0"}}`)
	res := <-got // the headers come with the first report
	if res.err != nil || res.resp.StatusCode != 200 {
		t.Fatalf("streamed produce: %v", res.err)
	}
	defer res.resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(res.resp.Body))
	for i := range 5 {
		if i > 0 {
			fmt.Fprintf(pw, `{"value":{"type":"STRING","data":"s-%d"}}`, i)
		}
		var rep v3Report
		if err := dec.Decode(&rep); err != nil || rep.ErrorCode != 200 || rep.Offset != int64(4+i) {
			t.Fatalf("streamed report %d: %+v %v", i, rep, err)
		}
	}
	pw.Close()
	if recs := consumeN(t, k, "jsontest", 9); string(recs[8].Value) != "s-4" {
		t.Fatalf("last streamed record %q", recs[8].Value)
	}
}

// v2Rec is a record of a v2 records read.
type v2Rec struct {
	Topic     string          `json:"topic"`
	Key       json.RawMessage `json:"key"`
	Value     json.RawMessage `json:"value"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
}

// pollRecords runs a documented records read until it returns n records in
// all (the first reads of a new member may come back empty, as Confluent's).
func pollRecords(t *testing.T, k *kafkaKatka, cmd string, n int) []v2Rec {
	t.Helper()
	var all []v2Rec
	deadline := time.Now().Add(20 * time.Second)
	for len(all) < n {
		out, status := confluentCurl(t, k, "", cmd)
		var recs []v2Rec
		if err := json.Unmarshal([]byte(out), &recs); status != 200 || err != nil {
			t.Fatalf("records: %d %s (%v)", status, out, err)
		}
		all = append(all, recs...)
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records before the deadline", len(all), n)
		}
	}
	return all
}

// TestRESTProxyV2ConsumerCurl: Confluent's v2 quickstart, as written:
// produce, create a JSON consumer instance, subscribe, read, delete. The
// instance is a member of the group in katka's group coordinator: with auto
// commit its position is committed when it is deleted, and kadm reads that
// offset over Kafka. A second (binary) instance commits explicitly, reads
// its committed offsets back, and a kgo producer's record reaches it.
func TestRESTProxyV2ConsumerCurl(t *testing.T) {
	k := startRESTKatka(t, "")
	ctx := kafkaCtx(t, 60*time.Second)
	k.createTopic(t, ctx, "jsontest", 2)
	out, status := confluentCurl(t, k, "", confluentV2Produce)
	if status != 200 || !strings.Contains(out, `"error_code":null`) || !strings.Contains(out, `"key_schema_id":null`) {
		t.Fatalf("v2 produce: %d %s", status, out)
	}
	out, status = confluentCurl(t, k, "", confluentV2CreateConsumer)
	if status != 200 || out != fmt.Sprintf(`{"instance_id":"my_consumer_instance","base_uri":"http://%s/consumers/my_json_consumer/instances/my_consumer_instance"}`, k.HTTPAddr) {
		t.Fatalf("create consumer: %d %s", status, out)
	}
	if out, status = confluentCurl(t, k, "", confluentV2CreateConsumer); status != 409 || !strings.Contains(out, `"error_code":40902`) {
		t.Fatalf("second create: %d %s", status, out)
	}
	if out, status = confluentCurl(t, k, "", confluentV2Subscribe); status != 204 || out != "" {
		t.Fatalf("subscribe: %d %s", status, out)
	}
	recs := pollRecords(t, k, confluentV2Records, 1)
	if len(recs) != 1 || recs[0].Topic != "jsontest" || string(recs[0].Value) != `{"name":"testUser"}` || string(recs[0].Key) != "null" || recs[0].Offset != 0 {
		t.Fatalf("records: %+v", recs)
	}
	// The instance is a member of my_json_consumer, as Kafka clients see it.
	adm := kadm.NewClient(k.client(t))
	if out, status = confluentCurl(t, k, "", confluentV2Delete); status != 204 || out != "" {
		t.Fatalf("delete: %d %s", status, out)
	}
	offs, err := adm.FetchOffsets(ctx, "my_json_consumer")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("jsontest", recs[0].Partition); !ok || o.At != 1 {
		t.Fatalf("committed offset after delete: %+v %v (want 1)", o, ok)
	}
	if out, status = confluentCurl(t, k, "", confluentV2Records); status != 404 || out != `{"error_code":40403,"message":"Consumer instance not found."}` {
		t.Fatalf("records after delete: %d %s", status, out)
	}

	// Binary, explicit commits, a record produced by kgo while it waits.
	H := "http://localhost:8082/consumers/bin_group/instances/b1"
	if _, status = confluentCurl(t, k, "", `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"name":"b1","format":"binary","auto.offset.reset":"earliest","auto.commit.enable":"false"}' http://localhost:8082/consumers/bin_group`); status != 200 {
		t.Fatalf("create binary consumer: %d", status)
	}
	if _, status = confluentCurl(t, k, "", `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"topics":["jsontest"]}' `+H+`/subscription`); status != 204 {
		t.Fatalf("subscribe binary: %d", status)
	}
	if out, status = confluentCurl(t, k, "", `curl -H "Accept: application/vnd.kafka.json.v2+json" `+H+`/records`); status != 406 || !strings.Contains(out, `"error_code":40601`) {
		t.Fatalf("json read of a binary consumer: %d %s", status, out)
	}
	cl := k.client(t)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "jsontest", Key: []byte("kk"), Value: []byte{0xde, 0xad}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	recs = pollRecords(t, k, `curl -H "Accept: application/vnd.kafka.binary.v2+json" `+H+`/records?timeout=1000`, 2)
	byKey := map[string]v2Rec{}
	for _, r := range recs {
		byKey[string(r.Key)] = r
	}
	kk := byKey[`"`+base64.StdEncoding.EncodeToString([]byte("kk"))+`"`]
	if string(kk.Value) != `"`+base64.StdEncoding.EncodeToString([]byte{0xde, 0xad})+`"` {
		t.Fatalf("binary records: %+v", recs)
	}
	commit := fmt.Sprintf(`curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"offsets":[{"topic":"jsontest","partition":%d,"offset":%d}]}' %s/offsets`, kk.Partition, kk.Offset, H)
	if out, status = confluentCurl(t, k, "", commit); status != 204 {
		t.Fatalf("commit: %d %s", status, out)
	}
	out, status = confluentCurl(t, k, "", fmt.Sprintf(`curl -X GET -H "Content-Type: application/vnd.kafka.v2+json" -d '{"partitions":[{"topic":"jsontest","partition":%d}]}' %s/offsets`, kk.Partition, H))
	if want := fmt.Sprintf(`{"offsets":[{"topic":"jsontest","partition":%d,"offset":%d,"metadata":""}]}`, kk.Partition, kk.Offset+1); status != 200 || out != want {
		t.Fatalf("committed offsets: %d %s, want %s", status, out, want)
	}
	if out, status = confluentCurl(t, k, "", `curl -X DELETE `+H); status != 204 {
		t.Fatalf("delete binary: %d %s", status, out)
	}
}

// TestRESTProxyLimits: every limit of the REST proxy answers in Confluent's
// shape and counts in katka_limit_rejections_total: a body over
// max_body_bytes (413), one consumer instance over max_consumer_instances
// (429), a records read capped at fetch_max_bytes (the first record whole),
// and an instance idle for consumer_instance_timeout deleted (it leaves its
// group and frees its place).
func TestRESTProxyLimits(t *testing.T) {
	k := startRESTKatka(t, "http:\n  limits:\n    max_body_bytes: 1KiB\n    max_in_flight_body_bytes: 1KiB\n    fetch_max_bytes: 1KiB\n    max_consumer_instances: 2\n    consumer_instance_timeout: 1s\n")
	cid := clusterID(t, k)
	ctx := kafkaCtx(t, 60*time.Second)
	k.createTopic(t, ctx, "lim", 1)

	big := strings.Repeat("x", 2000)
	out, status := confluentCurl(t, k, cid, `curl -X POST -H "Content-Type: application/json" -d '{"value":{"type":"STRING","data":"`+big+`"}}' http://localhost:8082/v3/clusters/xFhUvurESIeeCI87SXWR-Q/topics/lim/records`)
	if status != 413 || out != `{"error_code":413,"message":"request body is larger than 1KiB (http.limits.max_body_bytes)"}` {
		t.Fatalf("large body: %d %s", status, out)
	}

	// Three records of 600 bytes (kgo), one read capped at 1 KiB: one record.
	cl := k.client(t)
	for i := range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "lim", Value: []byte(fmt.Sprintf("%03d", i) + strings.Repeat("v", 597))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	create := func(name string) (string, int) {
		return confluentCurl(t, k, "", `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"name":"`+name+`","format":"binary","auto.offset.reset":"earliest"}' http://localhost:8082/consumers/limgroup`)
	}
	for _, n := range []string{"c1", "c2"} {
		if out, status := create(n); status != 200 {
			t.Fatalf("create %s: %d %s", n, status, out)
		}
	}
	if out, status := create("c3"); status != 429 || !strings.Contains(out, `"error_code":429`) || !strings.Contains(out, "max_consumer_instances") {
		t.Fatalf("third instance: %d %s", status, out)
	}
	H := "http://localhost:8082/consumers/limgroup/instances/c1"
	if _, status := confluentCurl(t, k, "", `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"topics":["lim"]}' `+H+`/subscription`); status != 204 {
		t.Fatalf("subscribe: %d", status)
	}
	recs := pollRecords(t, k, `curl -H "Accept: application/vnd.kafka.binary.v2+json" `+H+`/records?max_bytes=1000000`, 1)
	if len(recs) != 1 || recs[0].Offset != 0 {
		t.Fatalf("first capped read: %d records %+v", len(recs), recs)
	}
	recs = pollRecords(t, k, `curl -H "Accept: application/vnd.kafka.binary.v2+json" `+H+`/records?max_bytes=1000000`, 1)
	if len(recs) != 1 || recs[0].Offset != 1 {
		t.Fatalf("second capped read: %+v", recs)
	}
	metrics, _ := confluentCurl(t, k, "", `curl http://localhost:8082/metrics`)
	for _, l := range []string{"http_body", "http_fetch_bytes", "rest_consumer_instances"} {
		if !strings.Contains(metrics, `katka_limit_rejections_total{limit="`+l+`"}`) {
			t.Fatalf("no %s rejection counted", l)
		}
	}
	if !strings.Contains(metrics, "\nkatka_rest_consumer_instances 2\n") {
		t.Fatal("katka_rest_consumer_instances is not 2")
	}

	// Idle expiry: c1 and c2 are left alone; the log says when they go.
	deadline := time.Now().Add(15 * time.Second)
	for k.logCount("rest consumer instance expired") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("idle instances not expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, status := confluentCurl(t, k, "", `curl `+H+`/subscription`); status != 404 || !strings.Contains(out, `"error_code":40403`) {
		t.Fatalf("expired instance: %d %s", status, out)
	}
	if out, status := create("c3"); status != 200 {
		t.Fatalf("create after expiry: %d %s", status, out)
	}
	// c1 left limgroup: no member of it remains but c3's (not subscribed).
	dg, err := kadm.NewClient(k.client(t)).DescribeConsumerGroups(context.Background(), "limgroup")
	if err == nil {
		if g, ok := dg["limgroup"]; ok && len(g.Members) != 0 {
			t.Fatalf("members of limgroup after expiry: %+v", g.Members)
		}
	}
}

// TestRESTProxyAuth: the REST proxy applies the HTTP API's tokens and the
// Kafka ACLs of the token's principal: no token is 401 (40101); a read
// token may not produce (403, 40301) but may run a consumer on the topic
// and group its ACLs allow, and not on another topic.
func TestRESTProxyAuth(t *testing.T) {
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	cfg := fmt.Sprintf(`http:
  tokens:
    - {name: reader, sha256: %s, role: read}
    - {name: ops, sha256: %s, role: admin}
auth:
  authorization: true
  super_users: [User:ops, User:ANONYMOUS]
  acl:
    - {principal: "User:reader", resource: topic, name: open, operations: [read]}
    - {principal: "User:reader", resource: group, name: readers, operations: [read]}
`, hash("reader-token"), hash("ops-token"))
	k := startRESTKatka(t, cfg)
	ctx := kafkaCtx(t, 60*time.Second)
	k.createTopic(t, ctx, "open", 1)
	k.createTopic(t, ctx, "closed", 1)
	rd, ops := `-H "Authorization: Bearer reader-token" `, `-H "Authorization: Bearer ops-token" `
	produce := func(auth, topic string) (string, int) {
		return confluentCurl(t, k, "", `curl -X POST `+auth+`-H "Content-Type: application/vnd.kafka.json.v2+json" -d '{"records":[{"value":{"n":1}}]}' http://localhost:8082/topics/`+topic)
	}
	if out, status := produce("", "open"); status != 401 || !strings.Contains(out, `"error_code":40101`) {
		t.Fatalf("no token: %d %s", status, out)
	}
	if out, status := produce(rd, "open"); status != 403 || !strings.Contains(out, `"error_code":40301`) {
		t.Fatalf("read token produce: %d %s", status, out)
	}
	for _, topic := range []string{"open", "closed"} {
		if out, status := produce(ops, topic); status != 200 {
			t.Fatalf("ops produce %s: %d %s", topic, status, out)
		}
	}
	mk := func(group, name string) int {
		_, status := confluentCurl(t, k, "", `curl -X POST `+rd+`-H "Content-Type: application/vnd.kafka.v2+json" -d '{"name":"`+name+`","format":"json","auto.offset.reset":"earliest"}' http://localhost:8082/consumers/`+group)
		return status
	}
	if status := mk("others", "r0"); status != 403 {
		t.Fatalf("reader in group others: %d", status)
	}
	if status := mk("readers", "r1"); status != 200 {
		t.Fatalf("reader in group readers: %d", status)
	}
	H := "http://localhost:8082/consumers/readers/instances/r1"
	if _, status := confluentCurl(t, k, "", `curl -X POST `+rd+`-H "Content-Type: application/vnd.kafka.v2+json" -d '{"topics":["open"]}' `+H+`/subscription`); status != 204 {
		t.Fatalf("subscribe open: %d", status)
	}
	recs := pollRecords(t, k, `curl `+rd+`-H "Accept: application/vnd.kafka.json.v2+json" `+H+`/records`, 1)
	if string(recs[0].Value) != `{"n":1}` {
		t.Fatalf("reader's records: %+v", recs)
	}
	// Another principal does not see the reader's instance.
	if out, status := confluentCurl(t, k, "", `curl `+ops+H+`/records`); status != 404 || !strings.Contains(out, "40403") {
		t.Fatalf("ops reading the reader's instance: %d %s", status, out)
	}
	if _, status := confluentCurl(t, k, "", `curl -X POST `+rd+`-H "Content-Type: application/vnd.kafka.v2+json" -d '{"topics":["closed"]}' `+H+`/subscription`); status != 403 {
		t.Fatalf("subscribe closed: %d", status)
	}
}

// TestRESTProxyShutdownCommits: a v2 instance with auto commit that read
// records has its position committed when katka stops (SIGTERM): after a
// restart the group's committed offset is where it had read to.
func TestRESTProxyShutdownCommits(t *testing.T) {
	k := startRESTKatka(t, "")
	ctx := kafkaCtx(t, 60*time.Second)
	k.createTopic(t, ctx, "jsontest", 1)
	for range 3 {
		if _, status := confluentCurl(t, k, "", confluentV2Produce); status != 200 {
			t.Fatalf("produce: %d", status)
		}
	}
	for _, cmd := range []string{confluentV2CreateConsumer, confluentV2Subscribe} {
		if out, status := confluentCurl(t, k, "", cmd); status/100 != 2 {
			t.Fatalf("%s: %d %s", cmd, status, out)
		}
	}
	pollRecords(t, k, confluentV2Records, 3)
	k.stop()
	if !strings.Contains(k.logTail(50), "stopped") {
		t.Fatalf("no clean stop:\n%s", k.logTail(20))
	}
	if err := k.restart(); err != nil {
		t.Fatal(err)
	}
	offs, err := kadm.NewClient(k.client(t)).FetchOffsets(ctx, "my_json_consumer")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("jsontest", 0); !ok || o.At != 3 {
		t.Fatalf("committed offset after a stop: %+v %v (want 3)", o, ok)
	}
}

// TestRESTProxyClassicGroupConflict: a group in use by classic-protocol
// Kafka consumers (kcat -G, librdkafka 2.0) cannot take a REST instance
// (which joins with KIP-848): the subscription answers 409 40903 and kcat's
// group goes on.
func TestRESTProxyClassicGroupConflict(t *testing.T) {
	kcat := kcatBinary(t)
	k := startRESTKatka(t, "groups:\n  initial_rebalance_delay: 0s\n")
	ctx := kafkaCtx(t, 60*time.Second)
	k.createTopic(t, ctx, "jsontest", 1)
	cmd := exec.Command(kcat, "-b", k.KafkaAddr, "-G", "classicgrp", "jsontest")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	adm := kadm.NewClient(k.client(t))
	deadline := time.Now().Add(20 * time.Second)
	for {
		dg, err := adm.DescribeGroups(ctx, "classicgrp")
		if g, ok := dg["classicgrp"]; err == nil && ok && g.State == "Stable" && len(g.Members) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kcat's group not stable: %+v %v", dg, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, status := confluentCurl(t, k, "", `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"name":"r"}' http://localhost:8082/consumers/classicgrp`); status != 200 {
		t.Fatalf("create: %d", status)
	}
	out, status := confluentCurl(t, k, "", `curl -X POST -H "Content-Type: application/vnd.kafka.v2+json" -d '{"topics":["jsontest"]}' http://localhost:8082/consumers/classicgrp/instances/r/subscription`)
	if status != 409 || !strings.Contains(out, `"error_code":40903`) {
		t.Fatalf("subscribe into a classic group: %d %s", status, out)
	}
	if dg, err := adm.DescribeGroups(ctx, "classicgrp"); err != nil || dg["classicgrp"].State != "Stable" || len(dg["classicgrp"].Members) != 1 {
		t.Fatalf("kcat's group after the refusal: %+v %v", dg, err)
	}
}
