package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/broker"
)

// TestHTTPInternalTopicsRefused: HTTP clients cannot create, delete or
// produce into internal topics (names starting with "__" or "."): each is
// answered 403 internal_topic, changes nothing and is counted; reading them
// stays allowed.
func TestHTTPInternalTopicsRefused(t *testing.T) {
	ls := startLive(t, nil)
	// In-process writers (the group coordinator) may create internal topics.
	if _, err := ls.b.CreateTopic("__consumer_offsets", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.b.Produce(context.Background(), "__consumer_offsets", 0, []broker.Record{{Value: []byte("committed")}}, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	refused := 0
	refuse := func(what, method, path, body string) {
		t.Helper()
		code, m := do(t, method, ls.url+path, body)
		if code != 403 || m["code"] != "internal_topic" || !strings.Contains(fmt.Sprint(m["error"]), "internal") {
			t.Errorf("%s: %d %v, want 403 internal_topic", what, code, m)
		}
		refused++
	}
	for _, name := range []string{"__consumer_offsets", "__katka_evil", ".deleted-x-1", "._x"} {
		refuse("create "+name, "POST", "/v1/topics", `{"name":"`+name+`","partitions":1}`)
		refuse("delete "+name, "DELETE", "/v1/topics/"+name, "")
		refuse("produce to "+name, "POST", "/v1/topics/"+name+"/partitions/0/records", `{"records":[{"value":"djE="}]}`)
	}
	for _, name := range []string{"__katka_evil", ".deleted-x-1", "._x"} {
		if _, err := ls.b.Topic(name); err == nil {
			t.Errorf("internal topic %s created by a refused request", name)
		}
	}
	parts, err := ls.b.Partitions("__consumer_offsets")
	if err != nil {
		t.Fatalf("__consumer_offsets after the refused delete: %v", err)
	}
	if parts[0].HighWatermark != 1 {
		t.Fatalf("__consumer_offsets-0 high watermark %d after a refused produce, want 1", parts[0].HighWatermark)
	}
	if n := ls.rejections(t, broker.LimitInternalTopic); n != float64(refused) {
		t.Fatalf("%s rejections %v, want %d", broker.LimitInternalTopic, n, refused)
	}
	// Reading stays allowed.
	if code, m := do(t, "GET", ls.url+"/v1/topics/__consumer_offsets", ""); code != 200 || m["name"] != "__consumer_offsets" {
		t.Fatalf("GET internal topic: %d %v", code, m)
	}
	if code, m := do(t, "GET", ls.url+"/v1/topics/__consumer_offsets/partitions/0/records?offset=0", ""); code != 200 || len(m["records"].([]any)) != 1 {
		t.Fatalf("read internal topic: %d %v", code, m)
	}
	code, _ := do(t, "GET", ls.url+"/v1/topics", "")
	if code != 200 {
		t.Fatalf("list: %d", code)
	}
	if n := ls.rejections(t, broker.LimitInternalTopic); n != float64(refused) {
		t.Fatalf("reads counted as %s rejections: %v, want %d", broker.LimitInternalTopic, n, refused)
	}
	// An ordinary topic whose name merely contains "__" or "." is not internal.
	if code, m := do(t, "POST", ls.url+"/v1/topics", `{"name":"a__b.c","partitions":1}`); code != 201 {
		t.Fatalf("create a__b.c: %d %v", code, m)
	}
	if code, m := do(t, "DELETE", ls.url+"/v1/topics/a__b.c", ""); code != 204 {
		t.Fatalf("delete a__b.c: %d %v", code, m)
	}
}

// TestHTTPBrokerErrorsClientCaused: broker errors a client causes are
// answered 4xx with a stable code, never 500: past topics.max_partitions
// 409 partition_limit (counted as a "partitions" limit rejection), a
// partition count out of range 400 invalid_partitions, a bad name 400; a
// broker shutting down is 503 unavailable, not a client error either.
func TestHTTPBrokerErrorsClientCaused(t *testing.T) {
	ls := startLiveBroker(t, broker.Options{MaxPartitions: 4}, nil)
	if code, m := do(t, "POST", ls.url+"/v1/topics", `{"name":"a","partitions":3}`); code != 201 {
		t.Fatalf("create a: %d %v", code, m)
	}
	cases := []struct {
		body string
		code int
		err  string
	}{
		{`{"name":"b","partitions":2}`, 409, "partition_limit"},
		{`{"name":"b","partitions":10001}`, 400, "invalid_partitions"},
		{`{"name":"b","partitions":-1}`, 400, "invalid_partitions"},
		{`{"name":"b/c","partitions":1}`, 400, "invalid_topic"},
		{`{"name":"","partitions":1}`, 400, "invalid_topic"},
		{`{"name":"b","partitions":99999999999}`, 400, "bad_request"},
		{`{"name":"a","partitions":1}`, 409, "topic_exists"},
		{`{"name":"b","partitions":1,"retention_ms":-5}`, 400, "invalid_config"},
	}
	for _, c := range cases {
		if code, m := do(t, "POST", ls.url+"/v1/topics", c.body); code != c.code || m["code"] != c.err {
			t.Errorf("create %s: %d %v, want %d %s", c.body, code, m, c.code, c.err)
		}
	}
	if n := ls.rejections(t, broker.LimitPartitions); n != 1 {
		t.Fatalf("%s rejections %v, want 1", broker.LimitPartitions, n)
	}
	if _, err := ls.b.Topic("b"); err == nil {
		t.Fatal("topic b created past the partition cap")
	}
	// The cap frees with a delete.
	if code, m := do(t, "DELETE", ls.url+"/v1/topics/a", ""); code != 204 {
		t.Fatalf("delete a: %d %v", code, m)
	}
	if code, m := do(t, "POST", ls.url+"/v1/topics", `{"name":"b","partitions":2}`); code != 201 {
		t.Fatalf("create b after freeing partitions: %d %v", code, m)
	}
	for _, c := range []struct{ method, path, body, err string }{
		{"POST", "/v1/topics/b/partitions/2/records", `{"records":[{"value":"djE="}]}`, "unknown_partition"},
		{"POST", "/v1/topics/b/partitions/-1/records", `{"records":[{"value":"djE="}]}`, "unknown_partition"},
		{"GET", "/v1/topics/b/partitions/7/records", "", "unknown_partition"},
		{"GET", "/v1/topics/nope/partitions/0/records", "", "unknown_topic"},
		{"DELETE", "/v1/topics/nope", "", "unknown_topic"},
	} {
		if code, m := do(t, c.method, ls.url+c.path, c.body); code != 404 || m["code"] != c.err {
			t.Errorf("%s %s: %d %v, want 404 %s", c.method, c.path, code, m, c.err)
		}
	}
	if code, m := do(t, "GET", ls.url+"/v1/topics/b/partitions/0/records?offset=-5", ""); code != 416 || m["code"] != "offset_out_of_range" {
		t.Errorf("read at -5: %d %v, want 416", code, m)
	}
	ls.b.Close()
	if code, m := do(t, "POST", ls.url+"/v1/topics/b/partitions/0/records", `{"records":[{"value":"djE="}]}`); code != 503 || m["code"] != "unavailable" {
		t.Errorf("produce to a closed broker: %d %v, want 503 unavailable", code, m)
	}
	if code, m := do(t, "POST", ls.url+"/v1/topics", `{"name":"c","partitions":1}`); code != 503 || m["code"] != "unavailable" {
		t.Errorf("create on a closed broker: %d %v, want 503 unavailable", code, m)
	}
}
