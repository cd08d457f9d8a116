package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/group"
)

// viewServer is a Server on a fresh broker with a group coordinator, behind
// httptest; tokens, when given, turn authentication on.
type viewServer struct {
	s   *Server
	b   *broker.Broker
	gc  *group.Coordinator
	url string
}

func newViewServer(t *testing.T, tokens ...config.HTTPToken) *viewServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(reg), QuotaBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	toks, err := parseTokens(tokens)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{b: b, tokens: toks, log: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(s.Handler(reg))
	t.Cleanup(ts.Close)
	gc, err := group.Open(b, group.Options{Config: group.Config{InitialRebalanceDelay: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	s.SetGroups(oneCoordinator(gc))
	return &viewServer{s: s, b: b, gc: gc, url: ts.URL}
}

// getJSON calls the API and decodes the answer into out (when not nil),
// failing on another status than want or on keys that are not snake_case.
func (v *viewServer) call(t *testing.T, method, path, token, body string, want int, out any) string {
	t.Helper()
	req, _ := http.NewRequest(method, v.url+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var anyV any
		if err := json.Unmarshal(raw, &anyV); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, path, raw)
		}
		if bad := badKeys(anyV, ""); len(bad) > 0 {
			t.Errorf("%s %s: keys not snake_case: %v", method, path, bad)
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, raw)
			}
		}
	}
	return string(raw)
}

func (v *viewServer) produce(t *testing.T, topic string, part int32, recs ...broker.Record) {
	t.Helper()
	if _, err := v.b.Produce(context.Background(), topic, part, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
}

// commit stores a group's offset as a simple consumer (generation -1).
func (v *viewServer) commit(t *testing.T, grp, topic string, part int32, off int64) {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 8, grp, -1
	p := kmsg.NewOffsetCommitRequestTopicPartition()
	p.Partition, p.Offset = part, off
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{p}}}
	resp, err := v.gc.Commit(req, nil, "test")
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit %s %s/%d: %v %+v", grp, topic, part, err, resp)
	}
}

// TestMessageBrowser: the newest records by default, from the start, an
// offset or a time, one partition or all, a text filter over key, value and
// headers, JSON and binary values, and the limit of 500 records a request.
func TestMessageBrowser(t *testing.T) {
	v := newViewServer(t)
	if _, err := v.b.CreateTopic("orders", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.UnixMilli(1_700_000_000_000)
	for i := range 10 {
		v.produce(t, "orders", int32(i%2), broker.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"n":%d}`, i),
			Headers: []broker.Header{{Key: "src", Value: fmt.Appendf(nil, "line-%d", i)}}, Timestamp: t0.Add(time.Duration(i) * time.Second)})
	}
	v.produce(t, "orders", 0, broker.Record{Value: []byte{0xff, 0x00, 0xfe}, Timestamp: t0.Add(time.Minute)})

	var res browseResp
	v.call(t, "GET", "/v1/topics/orders/messages?limit=3", "", "", 200, &res)
	if len(res.Messages) != 3 || res.Messages[2].Value == nil || *res.Messages[2].Value != "/wD+" || !res.Messages[2].ValueBase64 || *res.Messages[1].Key != "k9" || !res.Messages[1].ValueJSON {
		t.Fatalf("latest 3: %+v", res.Messages)
	}
	v.call(t, "GET", "/v1/topics/orders/messages?from=earliest&limit=4&partition=1", "", "", 200, &res)
	if len(res.Messages) != 4 || *res.Messages[0].Key != "k1" || *res.Messages[3].Key != "k7" || len(res.Partitions) != 1 || res.Partitions[0].Next != 4 {
		t.Fatalf("earliest of partition 1: %+v %+v", res.Messages, res.Partitions)
	}
	v.call(t, "GET", "/v1/topics/orders/messages?from=offset&offset=4&partition=0", "", "", 200, &res)
	if len(res.Messages) != 2 || *res.Messages[0].Key != "k8" || res.Messages[0].Offset != 4 {
		t.Fatalf("partition 0 from offset 4: %+v", res.Messages)
	}
	v.call(t, "GET", fmt.Sprintf("/v1/topics/orders/messages?from=time&timestamp_ms=%d", t0.Add(7*time.Second).UnixMilli()), "", "", 200, &res)
	if len(res.Messages) != 4 || *res.Messages[0].Key != "k7" {
		t.Fatalf("from the 7th second: %+v", res.Messages)
	}
	v.call(t, "GET", "/v1/topics/orders/messages?filter=LINE-3", "", "", 200, &res)
	if len(res.Messages) != 1 || *res.Messages[0].Key != "k3" || res.Messages[0].Headers[0].Value != "line-3" || res.Scanned != 11 {
		t.Fatalf("filter on a header: %+v scanned %d", res.Messages, res.Scanned)
	}
	v.call(t, "GET", "/v1/topics/orders/messages?from=earliest&filter=%22n%22:5", "", "", 200, &res)
	if len(res.Messages) != 1 || *res.Messages[0].Key != "k5" {
		t.Fatalf("filter on the value: %+v", res.Messages)
	}
	v.call(t, "GET", "/v1/topics/orders/messages?from=sometime", "", "", 400, nil)
	v.call(t, "GET", "/v1/topics/orders/messages?partition=7", "", "", 404, nil)
	v.call(t, "GET", "/v1/topics/nope/messages", "", "", 404, nil)

	// The limit: at most maxBrowseLimit records, however many are asked for.
	big := make([]broker.Record, 600)
	for i := range big {
		big[i] = broker.Record{Value: []byte("x")}
	}
	v.produce(t, "orders", 1, big...)
	v.call(t, "GET", "/v1/topics/orders/messages?from=earliest&partition=1&limit=100000", "", "", 200, &res)
	if len(res.Messages) != maxBrowseLimit {
		t.Fatalf("limit=100000 returned %d records, want %d", len(res.Messages), maxBrowseLimit)
	}
}

// TestMessageBrowserScanLimit: a filter reads at most fetch_max_bytes (16
// MiB by default) per request, over all partitions, and the answer says
// where to go on.
func TestMessageBrowserScanLimit(t *testing.T) {
	v := newViewServer(t)
	if _, err := v.b.CreateTopic("big", 2, broker.TopicConfig{MaxMessageBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	mib := []byte(strings.Repeat("x", 1<<20))
	for i := range 24 { // 12 MiB in each partition, 24 MiB in all
		v.produce(t, "big", int32(i%2), broker.Record{Value: mib})
	}
	v.produce(t, "big", 1, broker.Record{Value: []byte("needle")})
	var res browseResp
	v.call(t, "GET", "/v1/topics/big/messages?from=earliest&filter=needle", "", "", 200, &res)
	if len(res.Messages) != 0 || res.Scanned != 16 || res.Partitions[0].Next != 12 || res.Partitions[1].Next != 4 {
		t.Fatalf("a filter over 24 MiB: %d found, %d read, partitions %+v; want 16 records (16 MiB) read", len(res.Messages), res.Scanned, res.Partitions)
	}
	v.call(t, "GET", "/v1/topics/big/messages?from=offset&offset=4&partition=1&filter=needle", "", "", 200, &res)
	if len(res.Messages) != 1 || res.Messages[0].Offset != 12 {
		t.Fatalf("going on from where the scan stopped: %+v", res.Messages)
	}
}

// TestGroupsLagAndReset: lag per partition is the end offset minus the
// committed one; a reset moves an empty group and is refused (409) while the
// group has members.
func TestGroupsLagAndReset(t *testing.T) {
	v := newViewServer(t)
	if _, err := v.b.CreateTopic("orders", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		v.produce(t, "orders", 0, broker.Record{Value: []byte("a")})
	}
	v.produce(t, "orders", 1, broker.Record{Value: []byte("b")}, broker.Record{Value: []byte("c")})
	v.commit(t, "billing", "orders", 0, 2)
	v.commit(t, "billing", "orders", 1, 2)

	var groups []groupJSON
	v.call(t, "GET", "/v1/groups", "", "", 200, &groups)
	if len(groups) != 1 || groups[0].Group != "billing" || groups[0].Lag != 3 || len(groups[0].Offsets) != 2 || groups[0].Offsets[0].Lag != 3 || groups[0].Offsets[1].Lag != 0 {
		t.Fatalf("groups: %+v", groups)
	}
	var reset resetOffsetsResp
	v.call(t, "POST", "/v1/groups/billing/offsets", "", `{"topic":"orders","to":"earliest"}`, 200, &reset)
	v.call(t, "GET", "/v1/groups", "", "", 200, &groups)
	if groups[0].Lag != 7 {
		t.Fatalf("lag after a reset to earliest: %+v", groups[0])
	}
	v.call(t, "POST", "/v1/groups/billing/offsets", "", `{"topic":"orders","partitions":[0],"to":"offset","offset":4}`, 200, &reset)
	v.call(t, "GET", "/v1/groups", "", "", 200, &groups)
	if groups[0].Offsets[0].Committed != 4 || groups[0].Lag != 3 {
		t.Fatalf("after a reset of partition 0 to 4: %+v", groups[0])
	}
	v.call(t, "POST", "/v1/groups/billing/offsets", "", `{"topic":"orders","to":"sideways"}`, 400, nil)
	v.call(t, "POST", "/v1/groups/billing/offsets", "", `{"topic":"orders","partitions":[9],"to":"latest"}`, 404, nil)

	// A member joins: the group is no longer empty, a reset is refused.
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = 5, "billing", 30000, 30000, "consumer"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jr, err := v.gc.Join(ctx, join, "app", "127.0.0.1")
	if err == nil && jr.ErrorCode == 79 { // MEMBER_ID_REQUIRED: join again with the id
		join.MemberID = jr.MemberID
		jr, err = v.gc.Join(ctx, join, "app", "127.0.0.1")
	}
	if err != nil {
		t.Fatal(err)
	}
	if jr.ErrorCode != 0 {
		t.Fatalf("join: error %d", jr.ErrorCode)
	}
	body := v.call(t, "POST", "/v1/groups/billing/offsets", "", `{"topic":"orders","to":"latest"}`, 409, nil)
	if !strings.Contains(body, "group_not_empty") {
		t.Fatalf("reset of an active group: %s", body)
	}
	v.call(t, "GET", "/v1/groups", "", "", 200, &groups)
	if groups[0].Offsets[0].Committed != 4 || len(groups[0].Members) != 1 || groups[0].Members[0].ClientID != "app" {
		t.Fatalf("refused reset changed the group, or the member is missing: %+v", groups[0])
	}

	// Without the Kafka listener there is no coordinator: 503.
	v.s.SetGroups(nil)
	v.call(t, "GET", "/v1/groups", "", "", 503, nil)
}

// TestTopicConfigsAndPartitions: configs are described with their defaults,
// set and reset one at a time (checked as Kafka checks them); partitions
// only grow; internal topics are refused.
func TestTopicConfigsAndPartitions(t *testing.T) {
	v := newViewServer(t)
	if _, err := v.b.CreateTopic("orders", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	find := func(cfgs []configJSON, name string) configJSON {
		for _, c := range cfgs {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("config %s missing", name)
		return configJSON{}
	}
	var cfgs []configJSON
	v.call(t, "PATCH", "/v1/topics/orders/configs", "", `{"set":{"retention.ms":"3600000","cleanup.policy":"compact"}}`, 200, &cfgs)
	if c := find(cfgs, "retention.ms"); !c.Set || c.Value != "3600000" || !c.Applied {
		t.Fatalf("retention.ms after set: %+v", c)
	}
	v.call(t, "PATCH", "/v1/topics/orders/configs", "", `{"delete":["retention.ms"]}`, 200, &cfgs)
	if c := find(cfgs, "retention.ms"); c.Set || c.Value != c.Default {
		t.Fatalf("retention.ms after delete: %+v", c)
	}
	if c := find(cfgs, "cleanup.policy"); !c.Set || c.Value != "compact" {
		t.Fatalf("cleanup.policy kept: %+v", c)
	}
	if info, _ := v.b.Topic("orders"); !info.Config.Compacted() {
		t.Fatal("the broker's topic is not compacted")
	}
	v.call(t, "PATCH", "/v1/topics/orders/configs", "", `{"set":{"retention.ms":"-7"}}`, 400, nil)
	v.call(t, "PATCH", "/v1/topics/orders/configs", "", `{"set":{"no.such.config":"1"}}`, 400, nil)
	v.call(t, "PATCH", "/v1/topics/__consumer_offsets/configs", "", `{"set":{"retention.ms":"1"}}`, 403, nil)
	v.call(t, "GET", "/v1/topics/nope/configs", "", "", 404, nil)

	var tj topicJSON
	v.call(t, "POST", "/v1/topics/orders/partitions", "", `{"count":3}`, 200, &tj)
	if len(tj.Partitions) != 3 {
		t.Fatalf("partitions after adding: %d", len(tj.Partitions))
	}
	v.call(t, "POST", "/v1/topics/orders/partitions", "", `{"count":2}`, 400, nil)
}

// TestOverviewAndMetrics: counts, disk use against the quota, the rate
// history and metrics as JSON.
func TestOverviewAndMetrics(t *testing.T) {
	v := newViewServer(t)
	reg := prometheus.NewRegistry()
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_records_in_total", Help: "h"}, []string{"topic"})
	reg.MustRegister(in)
	if _, err := v.b.CreateTopic("orders", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	v.produce(t, "orders", 0, broker.Record{Value: []byte("hello")})
	v.s.AddStatus("sync", func() any { return map[string]string{"site": "x"} })
	v.s.sample(reg)
	in.WithLabelValues("orders").Add(100)
	v.s.views.last.at = v.s.views.last.at.Add(-time.Second) // as if a second had passed
	v.s.sample(reg)

	var ov overviewJSON
	v.call(t, "GET", "/v1/overview", "", "", 200, &ov)
	if ov.Topics != 2 || ov.Partitions != 3 || // orders and __consumer_offsets
		ov.Records != 1 || ov.Disk.QuotaBytes != 1<<30 || ov.Disk.UsedBytes <= 0 || ov.Disk.TotalBytes == 0 ||
		len(ov.Statuses) != 1 || ov.Statuses[0] != "sync" || ov.Groups != 0 || !ov.GroupsAvailable {
		t.Fatalf("overview: %+v", ov)
	}
	if len(ov.Rates) != 1 || ov.Rates[0].RecordsInPerSec < 50 {
		t.Fatalf("rates: %+v", ov.Rates)
	}
	var ms []metricJSON
	v.call(t, "GET", "/v1/metrics?prefix=katka_records_in", "", "", 200, &ms)
	if len(ms) != 1 || ms[0].Samples[0].Labels["topic"] != "orders" || ms[0].Type != "counter" {
		t.Fatalf("metrics: %+v", ms)
	}
}

// TestConsolePages: the page and its assets are served without a
// credential (they hold no data, with a strict CSP), the API behind them
// still needs one, and a read token cannot write through the console's
// endpoints.
func TestConsolePages(t *testing.T) {
	open := newViewServer(t)
	var openAuth struct {
		TokenRequired bool `json:"token_required"`
	}
	if open.call(t, "GET", "/console/auth.json", "", "", 200, &openAuth); openAuth.TokenRequired {
		t.Error("/console/auth.json: token_required true without tokens")
	}
	v := newViewServer(t, config.HTTPToken{Name: "viewer", SHA256: sum("read-secret"), Role: RoleRead},
		config.HTTPToken{Name: "ops", SHA256: sum("admin-secret"), Role: RoleAdmin})
	for path, ctype := range map[string]string{"/": "text/html", "/console/app.js": "text/javascript", "/console/chart.js": "text/javascript", "/console/style.css": "text/css"} {
		resp, err := http.Get(v.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: %d %q csp %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
		}
	}
	v.call(t, "GET", "/console/nope.js", "", "", 404, nil)
	var auth struct {
		TokenRequired bool `json:"token_required"`
	}
	if v.call(t, "GET", "/console/auth.json", "", "", 200, &auth); !auth.TokenRequired {
		t.Error("/console/auth.json: token_required false with tokens configured")
	}
	v.call(t, "POST", "/", "", `{}`, 401, nil) // only GETs of the pages are open
	v.call(t, "GET", "/v1/overview", "", "", 401, nil)
	v.call(t, "GET", "/v1/overview", "read-secret", "", 200, nil)
	if _, err := v.b.CreateTopic("orders", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	v.call(t, "PATCH", "/v1/topics/orders/configs", "read-secret", `{"set":{"retention.ms":"1000"}}`, 403, nil)
	v.call(t, "POST", "/v1/groups/g/offsets", "read-secret", `{"topic":"orders","to":"earliest"}`, 403, nil)
	v.call(t, "PATCH", "/v1/topics/orders/configs", "admin-secret", `{"set":{"retention.ms":"1000"}}`, 200, nil)
	v.call(t, "POST", "/v1/groups/g/offsets", "admin-secret", `{"topic":"orders","to":"earliest"}`, 200, nil)
}

// TestViewsApplyACLs: with auth.authorization on, the overview counts and the
// message browser, configs and groups show only what the caller's ACLs
// allow.
func TestViewsApplyACLs(t *testing.T) {
	v := newViewServer(t, config.HTTPToken{Name: "viewer", SHA256: sum("read-secret"), Role: RoleRead})
	a, err := auth.NewAuthorizer(auth.AuthorizerConfig{Enabled: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, acl := range []auth.ACL{
		{Principal: "User:viewer", Host: "*", ResourceType: auth.ResourceTopic, Name: "sensors.", Pattern: auth.PatternPrefixed, Operation: auth.OpRead, Permission: auth.PermissionAllow},
		{Principal: "User:viewer", Host: "*", ResourceType: auth.ResourceGroup, Name: "dash", Pattern: auth.PatternLiteral, Operation: auth.OpDescribe, Permission: auth.PermissionAllow},
	} {
		if err := a.Add(acl); err != nil {
			t.Fatal(err)
		}
	}
	v.s.sec.Authorizer = a
	for _, name := range []string{"sensors.temp", "plant.power"} {
		if _, err := v.b.CreateTopic(name, 1, broker.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
		v.produce(t, name, 0, broker.Record{Value: []byte("21.5")})
		v.commit(t, "dash", name, 0, 0)
		v.commit(t, "other", name, 0, 0)
	}
	var ov overviewJSON
	v.call(t, "GET", "/v1/overview", "read-secret", "", 200, &ov)
	if ov.Topics != 1 || ov.Records != 1 {
		t.Fatalf("overview for User:viewer: %d topics, %d records; want sensors.temp only", ov.Topics, ov.Records)
	}
	v.call(t, "GET", "/v1/topics/sensors.temp/messages", "read-secret", "", 200, nil)
	v.call(t, "GET", "/v1/topics/plant.power/messages", "read-secret", "", 403, nil)
	v.call(t, "GET", "/v1/topics/plant.power/configs", "read-secret", "", 403, nil)
	var groups []groupJSON
	v.call(t, "GET", "/v1/groups", "read-secret", "", 200, &groups)
	if len(groups) != 1 || groups[0].Group != "dash" || len(groups[0].Offsets) != 1 || groups[0].Offsets[0].Topic != "sensors.temp" {
		t.Fatalf("groups for User:viewer: %+v; want dash with sensors.temp only", groups)
	}
}
