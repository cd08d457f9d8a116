package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/group"
)

// rest sends a REST proxy request with content type ct (none without a body).
func rest(t *testing.T, method, url, ct, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// groupServer is a live server whose REST consumers use a group coordinator
// heartbeating every 50 ms, with topic orders of 4 partitions.
type groupServer struct {
	ls   *liveServer
	base string // URL of group g's instances, ending in "/"
}

func startGroupServer(t *testing.T) *groupServer {
	t.Helper()
	ls := startLive(t, nil)
	gc, err := group.Open(ls.b, group.Options{Config: group.Config{ConsumerHeartbeatInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	ls.s.SetGroups(oneCoordinator(gc))
	if _, err := ls.b.CreateTopic("orders", 4, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	return &groupServer{ls: ls, base: ls.url + "/consumers/g/instances/"}
}

// join creates instance n of group g and subscribes it to orders.
func (gs *groupServer) join(t *testing.T, n string) {
	t.Helper()
	if code, out := rest(t, "POST", gs.ls.url+"/consumers/g", mediaV2, `{"name":"`+n+`","format":"binary","auto.offset.reset":"earliest"}`); code != 200 {
		t.Fatalf("create %s: %d %s", n, code, out)
	}
	if code, out := rest(t, "POST", gs.base+n+"/subscription", mediaV2, `{"topics":["orders"]}`); code != 204 {
		t.Fatalf("subscribe %s: %d %s", n, code, out)
	}
}

// assigned is how many partitions instance n owns.
func (gs *groupServer) assigned(t *testing.T, n string) int {
	t.Helper()
	code, out := rest(t, "GET", gs.base+n+"/assignments", "", "")
	var a struct{ Partitions []restTP }
	if code != 200 || json.Unmarshal([]byte(out), &a) != nil {
		t.Fatalf("assignments of %s: %d %s", n, code, out)
	}
	return len(a.Partitions)
}

// waitFor polls ok until it holds, for at most 15 s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRESTLongPollKeepsHeartbeating: while instance a waits in a long
// records read on empty partitions, b joins the group and gets its share:
// a's heartbeats (and so its revocations) go on during the wait.
func TestRESTLongPollKeepsHeartbeating(t *testing.T) {
	gs := startGroupServer(t)
	gs.join(t, "a")
	waitFor(t, "a owns all 4 partitions", func() bool { return gs.assigned(t, "a") == 4 })
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		rest(t, "GET", gs.base+"a/records?timeout=20000", "", "")
	}()
	gs.join(t, "b")
	waitFor(t, "b owns 2 partitions", func() bool { return gs.assigned(t, "b") == 2 })
	select {
	case <-polled:
		t.Fatal("a's long poll ended before b got its partitions; the test proves nothing")
	default:
	}
	gs.ls.b.Produce(context.Background(), "orders", 0, []broker.Record{{Value: []byte("wake")}}, broker.AcksAll)
	<-polled
}

// TestRESTConsumersShareGroup: two v2 instances of one group split a
// 4-partition topic through the group coordinator (background heartbeats,
// revocation and all), read every record exactly once between them, and
// when one is deleted the other takes over its partitions from the offsets
// it committed.
func TestRESTConsumersShareGroup(t *testing.T) {
	gs := startGroupServer(t)
	ls, base := gs.ls, gs.base
	for _, n := range []string{"a", "b"} {
		gs.join(t, n)
	}
	assigned := func(n string) int { return gs.assigned(t, n) }
	waitFor := func(what string, ok func() bool) { t.Helper(); waitFor(t, what, ok) }
	waitFor("a and b own 2 partitions each", func() bool { return assigned("a") == 2 && assigned("b") == 2 })

	const n = 40
	for i := range n {
		k := []byte(fmt.Sprintf("k%d", i))
		if _, err := ls.b.Produce(context.Background(), "orders", broker.HashPartition(k, 4), []broker.Record{{Key: k, Value: []byte(fmt.Sprint(i))}}, broker.AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	read := func(n string) {
		code, out := rest(t, "GET", base+n+"/records?timeout=50", "", "")
		var recs []struct {
			Key   []byte
			Value []byte
		}
		if code != 200 || json.Unmarshal([]byte(out), &recs) != nil {
			t.Fatalf("records of %s: %d %s", n, code, out)
		}
		for _, r := range recs {
			if by, dup := seen[string(r.Value)]; dup {
				t.Fatalf("record %s read by %s and %s", r.Value, by, n)
			}
			seen[string(r.Value)] = n
		}
	}
	waitFor("all records read", func() bool { read("a"); read("b"); return len(seen) == n })
	byA := 0
	for _, who := range seen {
		if who == "a" {
			byA++
		}
	}
	if byA == 0 || byA == n {
		t.Fatalf("a read %d of %d records: the partitions were not shared", byA, n)
	}
	// Delete b (auto commit on delete); a takes all four partitions and
	// reads nothing again: b's positions were committed, a's own ones too.
	if code, out := rest(t, "DELETE", base+"b", "", ""); code != 204 {
		t.Fatalf("delete b: %d %s", code, out)
	}
	waitFor("a owns all 4 partitions", func() bool { read("a"); return assigned("a") == 4 })
	if len(seen) != n {
		t.Fatalf("%d records seen, want %d", len(seen), n)
	}
	if code, out := rest(t, "GET", base+"b/records", "", ""); code != 404 || out != `{"error_code":40403,"message":"Consumer instance not found."}` {
		t.Fatalf("deleted instance: %d %s", code, out)
	}
}

// TestRESTConsumerWithoutGroups: without a group coordinator (no Kafka
// listener) a subscription answers 503 with Confluent's retriable code.
func TestRESTConsumerWithoutGroups(t *testing.T) {
	ls := startLive(t, nil)
	if code, out := rest(t, "POST", ls.url+"/consumers/g", mediaV2, `{"name":"a"}`); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	code, out := rest(t, "POST", ls.url+"/consumers/g/instances/a/subscription", mediaV2, `{"topics":["x"]}`)
	if code != 503 || !strings.Contains(out, `"error_code":50003`) {
		t.Fatalf("subscribe without groups: %d %s", code, out)
	}
}

// TestRESTProxyMediaTypes: the REST proxy's media types pass the request
// checks, a form does not (in Confluent's error shape on its paths, katka's
// on /v1), and a v2 consumer config katka cannot serve is 422 42204.
func TestRESTProxyMediaTypes(t *testing.T) {
	ls := startLive(t, nil)
	if code, out := rest(t, "POST", ls.url+"/topics/x", "application/x-www-form-urlencoded", `{"records":[]}`); code != 415 || !strings.Contains(out, `"error_code":415`) {
		t.Fatalf("form to /topics: %d %s", code, out)
	}
	if code, out := rest(t, "POST", ls.url+"/v1/topics", "text/plain", `{}`); code != 415 || !strings.Contains(out, `"code":"unsupported_media_type"`) {
		t.Fatalf("text to /v1: %d %s", code, out)
	}
	if code, out := rest(t, "POST", ls.url+"/consumers/g", mediaV2, `{"format":"avro"}`); code != 422 || !strings.Contains(out, `"error_code":42204`) {
		t.Fatalf("avro consumer: %d %s", code, out)
	}
	if _, err := ls.b.CreateTopic("x", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if code, out := rest(t, "POST", ls.url+"/topics/x", mediaV2Binary, `{"records":[{"key":"aw==","value":"AAE="}]}`); code != 200 || !strings.Contains(out, `"offset":0`) {
		t.Fatalf("binary produce: %d %s", code, out)
	}
	res, err := ls.b.Fetch(context.Background(), "x", 0, 0, 1<<20, 0)
	if err != nil || len(res.Records) != 1 || string(res.Records[0].Value) != "\x00\x01" || string(res.Records[0].Key) != "k" {
		t.Fatalf("binary record: %+v %v", res.Records, err)
	}
}

// TestRESTV3ConsumerGroupLag: v3 lists the group of a REST consumer with
// its member, and its lags and lag summary follow the committed offsets:
// 10 records on partition 0, 4 committed, lag 6.
func TestRESTV3ConsumerGroupLag(t *testing.T) {
	gs := startGroupServer(t)
	gs.join(t, "a")
	waitFor(t, "a owns all 4 partitions", func() bool { return gs.assigned(t, "a") == 4 })
	for i := range 10 {
		if _, err := gs.ls.b.Produce(context.Background(), "orders", 0, []broker.Record{{Value: []byte(fmt.Sprint(i))}}, broker.AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := rest(t, "POST", gs.base+"a/offsets", mediaV2, `{"offsets":[{"topic":"orders","partition":0,"offset":3}]}`); code != 204 {
		t.Fatalf("commit: %d %s", code, out)
	}
	v3 := gs.ls.url + "/v3/clusters/" + gs.ls.b.ClusterID() + "/consumer-groups"
	get := func(path string, v any) {
		t.Helper()
		code, out := rest(t, "GET", v3+path, "", "")
		if code != 200 || json.Unmarshal([]byte(out), v) != nil {
			t.Fatalf("GET %s: %d %s", path, code, out)
		}
	}
	var groups struct {
		Data []struct {
			ConsumerGroupID string `json:"consumer_group_id"`
			State           string `json:"state"`
		} `json:"data"`
	}
	get("", &groups)
	if len(groups.Data) != 1 || groups.Data[0].ConsumerGroupID != "g" || groups.Data[0].State != "STABLE" {
		t.Fatalf("groups: %+v", groups)
	}
	var consumers struct {
		Data []struct {
			ConsumerID string `json:"consumer_id"`
		} `json:"data"`
	}
	get("/g/consumers", &consumers)
	if len(consumers.Data) != 1 || !strings.HasPrefix(consumers.Data[0].ConsumerID, "katka-rest-a-") {
		t.Fatalf("consumers: %+v", consumers)
	}
	var sum struct {
		MaxLag            int64  `json:"max_lag"`
		TotalLag          int64  `json:"total_lag"`
		MaxLagTopicName   string `json:"max_lag_topic_name"`
		MaxLagPartitionID int32  `json:"max_lag_partition_id"`
		MaxLagConsumerID  string `json:"max_lag_consumer_id"`
	}
	get("/g/lag-summary", &sum)
	if sum.TotalLag != 6 || sum.MaxLag != 6 || sum.MaxLagTopicName != "orders" || sum.MaxLagPartitionID != 0 || sum.MaxLagConsumerID != consumers.Data[0].ConsumerID {
		t.Fatalf("lag summary: %+v", sum)
	}
	var lags struct {
		Data []struct {
			PartitionID   int32 `json:"partition_id"`
			CurrentOffset int64 `json:"current_offset"`
			LogEndOffset  int64 `json:"log_end_offset"`
			Lag           int64 `json:"lag"`
		} `json:"data"`
	}
	get("/g/lags", &lags)
	if len(lags.Data) != 4 || lags.Data[0].CurrentOffset != 4 || lags.Data[0].LogEndOffset != 10 || lags.Data[0].Lag != 6 || lags.Data[1].Lag != 0 {
		t.Fatalf("lags: %+v", lags)
	}
	// A group with only committed offsets (a classic, simple group).
	if code, out := rest(t, "POST", gs.ls.url+"/consumers/simple", mediaV2, `{"name":"s"}`); code != 200 {
		t.Fatalf("create s: %d %s", code, out)
	}
	if code, out := rest(t, "POST", gs.ls.url+"/consumers/simple/instances/s/offsets", mediaV2, `{"offsets":[{"topic":"orders","partition":0,"offset":8}]}`); code != 204 {
		t.Fatalf("commit s: %d %s", code, out)
	}
	sum.TotalLag = -1
	get("/simple/lag-summary", &sum)
	if sum.TotalLag != 1 || sum.MaxLagConsumerID != "" {
		t.Fatalf("simple group's lag summary: %+v", sum)
	}
	if code, out := rest(t, "GET", v3+"/nosuch", "", ""); code != 404 || !strings.Contains(out, `"error_code":404`) {
		t.Fatalf("unknown group: %d %s", code, out)
	}
}

// TestRESTV3ProduceBatched: records of one body sent together are produced
// in runs per partition, and each gets its own report in order; a bad record
// in the middle gets a 400 report and the others are written.
func TestRESTV3ProduceBatched(t *testing.T) {
	ls := startLive(t, nil)
	if _, err := ls.b.CreateTopic("p2", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	for i := range 7 {
		if i == 3 {
			body.WriteString(`{"value":{"type":"BINARY","data":"not base64!"}} `)
			continue
		}
		fmt.Fprintf(&body, `{"partition_id":%d,"value":{"type":"STRING","data":"v%d"}} `, i%2, i)
	}
	code, out := rest(t, "POST", ls.url+"/v3/clusters/"+ls.b.ClusterID()+"/topics/p2/records", "application/json", body.String())
	if code != 200 {
		t.Fatalf("produce: %d %s", code, out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	want := []string{"0/0", "1/0", "0/1", "400", "0/2", "1/1", "0/3"}
	for i, w := range want {
		var rep v3ProduceResp
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("report %d: %v in %s", i, err, out)
		}
		got := fmt.Sprint(rep.ErrorCode)
		if rep.ErrorCode == 200 {
			got = fmt.Sprintf("%d/%d", *rep.PartitionID, *rep.Offset)
		}
		if got != w {
			t.Fatalf("report %d: %s, want %s (%s)", i, got, w, out)
		}
	}
	res, err := ls.b.Fetch(context.Background(), "p2", 0, 0, 1<<20, 0)
	if err != nil || len(res.Records) != 4 || string(res.Records[3].Value) != "v6" {
		t.Fatalf("partition 0: %+v %v", res.Records, err)
	}
}

// TestRESTV3StreamOverBodyLimit: a chunked (streamed) produce is one request
// body, bounded by max_body_bytes: the records before the limit are written
// and reported, then a 413 report ends the stream.
func TestRESTV3StreamOverBodyLimit(t *testing.T) {
	ls := startLive(t, func(l *config.HTTPLimits) { l.MaxBodyBytes, l.MaxInFlightBodyBytes = config.KiB, config.KiB })
	if _, err := ls.b.CreateTopic("s", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	rec := `{"value":{"type":"STRING","data":"` + strings.Repeat("x", 60) + `"}}` + "\n"
	body := io.MultiReader(strings.NewReader(strings.Repeat(rec, 40))) // ~3.2 KiB, sent chunked
	req, _ := http.NewRequest("POST", ls.url+"/v3/clusters/"+ls.b.ClusterID()+"/topics/s/records", body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	ok := 0
	var last v3ProduceResp
	for dec.More() {
		last = v3ProduceResp{}
		if err := dec.Decode(&last); err != nil {
			t.Fatal(err)
		}
		if last.ErrorCode == 200 {
			ok++
		}
	}
	if resp.StatusCode != 200 || ok == 0 || ok > 1024/len(rec) || last.ErrorCode != 413 || !strings.Contains(last.Message, "max_body_bytes") {
		t.Fatalf("status %d, %d records reported written, last report %+v", resp.StatusCode, ok, last)
	}
	if info, err := ls.b.PartitionInfo("s", 0); err != nil || info.HighWatermark != int64(ok) {
		t.Fatalf("high watermark %d (%v), %d reported written", info.HighWatermark, err, ok)
	}
}

// TestRESTSubscribePattern: a topic_pattern subscription gets the partitions
// of the matching topics, and a subscription of both kinds is refused.
func TestRESTSubscribePattern(t *testing.T) {
	gs := startGroupServer(t)
	if _, err := gs.ls.b.CreateTopic("other", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if code, out := rest(t, "POST", gs.ls.url+"/consumers/g", mediaV2, `{"name":"p"}`); code != 200 {
		t.Fatalf("create: %d %s", code, out)
	}
	if code, out := rest(t, "POST", gs.base+"p/subscription", mediaV2, `{"topics":["orders"],"topic_pattern":"ord.*"}`); code != 422 {
		t.Fatalf("both kinds: %d %s", code, out)
	}
	if code, out := rest(t, "POST", gs.base+"p/subscription", mediaV2, `{"topic_pattern":"ord.*"}`); code != 204 {
		t.Fatalf("pattern: %d %s", code, out)
	}
	waitFor(t, "p owns the 4 partitions of orders", func() bool { return gs.assigned(t, "p") == 4 })
	if code, out := rest(t, "GET", gs.base+"p/subscription", "", ""); code != 200 || out != `{"topic_pattern":"ord.*","topics":[]}` {
		t.Fatalf("subscription: %d %s", code, out)
	}
}
