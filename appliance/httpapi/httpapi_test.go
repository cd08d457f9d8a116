package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s := &Server{b: b}
	ts := httptest.NewServer(s.Handler(reg))
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestTopicsProduceFetch(t *testing.T) {
	ts := newTestServer(t)
	if code, _ := do(t, "POST", ts.URL+"/v1/topics", `{"name":"t","partitions":2}`); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code, m := do(t, "POST", ts.URL+"/v1/topics", `{"name":"t","partitions":2}`); code != 409 || m["code"] != "topic_exists" {
		t.Fatalf("duplicate create: %d %v", code, m)
	}
	if code, m := do(t, "POST", ts.URL+"/v1/topics", `{"name":"bad name","partitions":1}`); code != 400 || m["code"] != "invalid_topic" {
		t.Fatalf("bad name: %d %v", code, m)
	}
	code, m := do(t, "POST", ts.URL+"/v1/topics/t/partitions/1/records?acks=all",
		`{"records":[{"key":"azE=","value":"djE=","headers":[{"key":"h","value":null}]},{"key":null,"value":"djI=","timestamp_ms":1700000000000}]}`)
	if code != 200 || m["base_offset"].(float64) != 0 || m["count"].(float64) != 2 {
		t.Fatalf("produce: %d %v", code, m)
	}
	resp, err := http.Get(ts.URL + "/v1/topics/t/partitions/1/records?offset=0")
	if err != nil {
		t.Fatal(err)
	}
	var fr fetchResp
	json.NewDecoder(resp.Body).Decode(&fr)
	resp.Body.Close()
	if len(fr.Records) != 2 || fr.HighWatermark != 2 || string(fr.Records[0].Key) != "k1" || string(fr.Records[0].Value) != "v1" ||
		fr.Records[1].Key != nil || fr.Records[1].TimestampMs != 1700000000000 || len(fr.Records[0].Headers) != 1 || fr.Records[0].Headers[0].Value != nil {
		t.Fatalf("fetch: %+v", fr)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v1/topics/t/partitions/1/records?offset=3", "", 416, "offset_out_of_range"},
		{"GET", "/v1/topics/nope/partitions/0/records", "", 404, "unknown_topic"},
		{"GET", "/v1/topics/t/partitions/7/records", "", 404, "unknown_partition"},
		{"GET", "/v1/topics/t/partitions/x/records", "", 400, "bad_request"},
		{"POST", "/v1/topics/t/partitions/0/records?acks=2", `{"records":[{}]}`, 400, "bad_request"},
		{"POST", "/v1/topics/t/partitions/0/records", `{"records":[{"value":"not base64!"}]}`, 400, "bad_request"},
		{"POST", "/v1/topics/t/partitions/0/records", `{"recs":[]}`, 400, "bad_request"},
		{"DELETE", "/v1/topics/nope", "", 404, "unknown_topic"},
	} {
		if code, m := do(t, c.method, ts.URL+c.path, c.body); code != c.status || m["code"] != c.code {
			t.Errorf("%s %s: %d %v, want %d %s", c.method, c.path, code, m, c.status, c.code)
		}
	}
	metrics, _ := http.Get(ts.URL + "/metrics")
	var buf bytes.Buffer
	buf.ReadFrom(metrics.Body)
	metrics.Body.Close()
	if !strings.Contains(buf.String(), `katka_records_in_total{topic="t"} 2`) {
		t.Fatalf("metrics lack records in:\n%s", buf.String())
	}
	if code, _ := do(t, "DELETE", ts.URL+"/v1/topics/t", ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
}

func TestStatusProviders(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := &Server{b: b}
	ts := httptest.NewServer(s.Handler(reg))
	defer ts.Close()
	if code, m := do(t, "GET", ts.URL+"/v1/status/sync", ""); code != 404 || m["code"] != "not_running" {
		t.Fatalf("before: %d %v", code, m)
	}
	s.AddStatus("sync", func() any { return map[string]any{"mode": "exactly_once"} })
	if code, m := do(t, "GET", ts.URL+"/v1/status/sync", ""); code != 200 || m["mode"] != "exactly_once" {
		t.Fatalf("after: %d %v", code, m)
	}
}

// TestHealthzStartingUntilReady: a server listened with Options.Starting
// answers /healthz with 503 "starting" (katka serve's HTTP listener is up
// before its Kafka listeners) and 200 "ok" once SetReady is called.
func TestHealthzStartingUntilReady(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := Listen(Options{Addr: "127.0.0.1:0", Broker: b, Gatherer: reg, Starting: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	if code, body := get(); code != http.StatusServiceUnavailable || body != "starting" {
		t.Fatalf("/healthz while starting: %d %q, want 503 starting", code, body)
	}
	s.SetReady()
	if code, body := get(); code != http.StatusOK || body != "ok" {
		t.Fatalf("/healthz once ready: %d %q, want 200 ok", code, body)
	}
}
