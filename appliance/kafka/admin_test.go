package kafka

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

func TestAdminTopicLifecycle(t *testing.T) {
	e := newEnv(t)
	adm := e.admin(t)
	ctx := ctxT(t)

	// Create, with configs.
	cfg := map[string]*string{"retention.ms": kadm.StringPtr("3600000"), "message.timestamp.type": kadm.StringPtr("LogAppendTime"), "min.insync.replicas": kadm.StringPtr("1")}
	res, err := adm.CreateTopics(ctx, 4, 1, cfg, "orders", "events")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.NumPartitions != 4 || r.ReplicationFactor != 1 || r.ID == (kadm.TopicID{}) {
			t.Fatalf("create %s: %+v", r.Topic, r)
		}
		if v := r.Configs["retention.ms"].Value; v == nil || *v != "3600000" {
			t.Fatalf("create %s: configs %+v", r.Topic, r.Configs)
		}
	}
	info, err := e.b.Topic("orders")
	if err != nil || info.Partitions != 4 || info.Config.RetentionMs != 3600000 || info.Config.TimestampType != "LogAppendTime" {
		t.Fatalf("broker sees %+v, %v", info, err)
	}

	// Errors as Kafka returns them.
	for _, c := range []struct {
		name   string
		topic  string
		parts  int32
		rf     int16
		cfg    map[string]*string
		expect error
	}{
		{"exists", "orders", 1, 1, nil, kerr.TopicAlreadyExists},
		{"bad name", "bad name", 1, 1, nil, kerr.InvalidTopicException},
		{"too long", strings.Repeat("x", 250), 1, 1, nil, kerr.InvalidTopicException},
		{"zero partitions", "zero", 0, 1, nil, kerr.InvalidPartitions},
		{"replication 3", "rf3", 1, 3, nil, kerr.InvalidReplicationFactor},
		{"unknown config", "cfg", 1, 1, map[string]*string{"foo.bar": kadm.StringPtr("1")}, kerr.InvalidConfig},
		{"bad value", "cfg", 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, kerr.InvalidConfig},
		{"bad policy", "cfg", 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("shred")}, kerr.InvalidConfig},
	} {
		r, err := adm.CreateTopic(ctx, c.parts, c.rf, c.cfg, c.topic)
		if !errors.Is(err, c.expect) {
			t.Errorf("%s: %v (%s), want %v", c.name, err, r.ErrMessage, c.expect)
		}
	}
	// A compacted topic.
	if r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "delete.retention.ms": kadm.StringPtr("60000")}, "state"); err != nil {
		t.Fatalf("compacted topic: %v %s", err, r.ErrMessage)
	}
	if info, _ := e.b.Topic("state"); !info.Config.Compacted() || info.Config.Deletes() || info.Config.DeleteRetentionMs != 60000 {
		t.Fatalf("compacted topic config %+v", info.Config)
	}
	if _, err := adm.DeleteTopics(ctx, "state"); err != nil {
		t.Fatal(err)
	}
	// Default partitions and replication factor (-1).
	if r, err := adm.CreateTopic(ctx, -1, -1, nil, "defaults"); err != nil || r.NumPartitions != 1 {
		t.Fatalf("defaults: %+v %v", r, err)
	}
	// validate_only creates nothing.
	if _, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, "dry"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Topic("dry"); err == nil {
		t.Fatal("validate_only created the topic")
	}

	// List.
	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := td.Names(); strings.Join(names, ",") != "defaults,events,orders" {
		t.Fatalf("topics %v", names)
	}
	if d := td["orders"]; len(d.Partitions) != 4 || d.Partitions[3].Leader != 0 {
		t.Fatalf("orders: %+v", d)
	}

	// Describe configs.
	rc, err := adm.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		got[c.Key] = *c.Value
	}
	if got["retention.ms"] != "3600000" || got["message.timestamp.type"] != "LogAppendTime" || got["cleanup.policy"] != "delete" || got["max.message.bytes"] == "" {
		t.Fatalf("describe: %v", got)
	}
	if rc, err := adm.DescribeTopicConfigs(ctx, "missing"); err == nil && rc[0].Err == nil {
		t.Fatal("describe of a missing topic did not fail")
	}

	// Alter: set, delete (back to default), and refuse bad values as a whole.
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("1048576")},
		{Op: kadm.DeleteConfig, Name: "message.timestamp.type"},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("delete")},
	}, "orders")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, ar)
	}
	info, _ = e.b.Topic("orders")
	if info.Config.RetentionBytes != 1048576 || info.Config.TimestampType != "CreateTime" || info.Config.RetentionMs != 3600000 {
		t.Fatalf("after alter: %+v", info.Config)
	}
	ar, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("5")},
		{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kadm.StringPtr("-3")},
	}, "orders")
	if err != nil || !errors.Is(ar[0].Err, kerr.InvalidConfig) {
		t.Fatalf("bad alter: %v %+v", err, ar)
	}
	if info, _ = e.b.Topic("orders"); info.Config.RetentionMs != 3600000 {
		t.Fatal("a refused alter changed the config")
	}
	if ar, _ := adm.ValidateAlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("5")}}, "orders"); ar[0].Err != nil {
		t.Fatalf("validate alter: %+v", ar)
	}
	if info, _ = e.b.Topic("orders"); info.Config.RetentionMs != 3600000 {
		t.Fatal("validate_only alter changed the config")
	}

	// Partitions.
	if pr, err := adm.UpdatePartitions(ctx, 6, "orders"); err != nil || pr["orders"].Err != nil {
		t.Fatalf("update partitions: %v %+v", err, pr)
	}
	if pr, _ := adm.UpdatePartitions(ctx, 2, "orders"); !errors.Is(pr["orders"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrink: %+v", pr)
	}
	if info, _ = e.b.Topic("orders"); info.Partitions != 6 {
		t.Fatalf("partitions %d", info.Partitions)
	}

	// Delete.
	dr, err := adm.DeleteTopics(ctx, "events", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if dr["events"].Err != nil || !errors.Is(dr["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete: %+v", dr)
	}
	if _, err := e.b.Topic("events"); err == nil {
		t.Fatal("events still exists")
	}
}

func TestDescribeBrokerConfigs(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t)
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: "0"}}
	resp := r.roundTrip(req, 4).(*kmsg.DescribeConfigsResponse)
	if resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("broker configs: %+v", resp.Resources[0])
	}
}

// newEnvBroker is newEnv with the broker's options changed by mod.
func newEnvBroker(t testing.TB, mod func(*broker.Options)) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	lg := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: testLogLevel()}))
	o := broker.Options{DataDir: t.TempDir(), AutoCreate: true, DefaultPartitions: 1, Logger: lg, SegmentBytes: 1 << 20, Metrics: broker.NewMetrics(reg)}
	mod(&o)
	b, err := broker.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(b, Config{Addr: "127.0.0.1:0", Logger: lg})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		b.Close()
	})
	return &testEnv{b: b, srv: srv, addr: srv.Addr().String(), logs: &syncBuffer{}, reg: reg}
}

// TestAdminPartitionLimitPerBroker: topics.max_partitions caps the partitions
// of all topics; CreateTopics (validate_only too), CreatePartitions and
// Metadata auto-creation past it answer POLICY_VIOLATION and count as
// "partitions" limit rejections, a count past what one topic may have
// INVALID_PARTITIONS.
func TestAdminPartitionLimitPerBroker(t *testing.T) {
	e := newEnvBroker(t, func(o *broker.Options) { o.MaxPartitions = 8 })
	adm := e.admin(t)
	ctx := ctxT(t)
	base := e.b.PartitionCount() // __consumer_offsets
	if _, err := adm.CreateTopic(ctx, int32(4), 1, nil, "a"); err != nil {
		t.Fatal(err)
	}
	if r, err := adm.CreateTopic(ctx, int32(8-base-4+1), 1, nil, "b"); !errors.Is(err, kerr.PolicyViolation) {
		t.Fatalf("create past the cap: %v (%s)", err, r.ErrMessage)
	}
	if r, err := adm.ValidateCreateTopics(ctx, int32(8-base-4+1), 1, nil, "b"); err != nil || !errors.Is(r["b"].Err, kerr.PolicyViolation) {
		t.Fatalf("validate create past the cap: %v %+v", err, r)
	}
	if pr, _ := adm.UpdatePartitions(ctx, 8-base+1, "a"); !errors.Is(pr["a"].Err, kerr.PolicyViolation) {
		t.Fatalf("partitions past the cap: %+v", pr)
	}
	if r, err := adm.CreateTopic(ctx, broker.MaxTopicPartitions+1, 1, nil, "huge"); !errors.Is(err, kerr.InvalidPartitions) {
		t.Fatalf("more partitions than a topic may have: %v (%s)", err, r.ErrMessage)
	}
	if pr, _ := adm.UpdatePartitions(ctx, 8-base, "a"); pr["a"].Err != nil {
		t.Fatalf("partitions up to the cap: %+v", pr)
	}
	// Auto-creation by Metadata at the cap.
	r := e.raw(t)
	req := kmsg.NewPtrMetadataRequest()
	name := "auto"
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	req.AllowAutoTopicCreation = true
	if resp := r.roundTrip(req, 9).(*kmsg.MetadataResponse); resp.Topics[0].ErrorCode != errPolicyViolation {
		t.Fatalf("auto-create at the cap: error %d, want POLICY_VIOLATION (44)", resp.Topics[0].ErrorCode)
	}
	if _, err := e.b.Topic("auto"); err == nil {
		t.Fatal("auto-created past the cap")
	}
	if n := e.rejections(t, broker.LimitPartitions); n != 4 {
		t.Fatalf("partitions rejections %v, want 4", n)
	}
	if n := e.b.PartitionCount(); n != 8 {
		t.Fatalf("partitions %d, want 8", n)
	}
}

// TestAdminInternalTopicsRefused: Kafka clients cannot create, delete, grow
// or alter internal topics ("__" or "." names); Metadata lists every internal
// topic with IsInternal; in-process writers keep theirs.
func TestAdminInternalTopicsRefused(t *testing.T) {
	e := newEnv(t)
	adm := e.admin(t)
	ctx := ctxT(t)
	if _, err := e.b.CreateTopic("__katka_plugins", 1, broker.TopicConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	before, _ := e.b.Topic("__consumer_offsets")
	refusals := 0
	for _, c := range []struct {
		topic  string
		expect error
	}{
		{"__consumer_offsets", kerr.TopicAlreadyExists},
		{"__x", kerr.InvalidTopicException},
		{".deleted-x-1", kerr.InvalidTopicException},
		{".hidden", kerr.InvalidTopicException},
	} {
		r, err := adm.CreateTopic(ctx, 1, 1, nil, c.topic)
		if !errors.Is(err, c.expect) {
			t.Errorf("create %s: %v (%s), want %v", c.topic, err, r.ErrMessage, c.expect)
		}
		refusals++
	}
	for _, name := range []string{"__x", ".deleted-x-1", ".hidden"} {
		if _, err := e.b.Topic(name); err == nil {
			t.Errorf("%s was created", name)
		}
	}
	dr, err := adm.DeleteTopics(ctx, "__consumer_offsets", "__katka_plugins")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"__consumer_offsets", "__katka_plugins"} {
		if !errors.Is(dr[name].Err, kerr.InvalidTopicException) {
			t.Errorf("delete %s: %+v", name, dr[name])
		}
		refusals++
	}
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1")}}, "__consumer_offsets")
	if err != nil || len(ar) != 1 || !errors.Is(ar[0].Err, kerr.InvalidTopicException) {
		t.Fatalf("alter __consumer_offsets: %v %+v", err, ar)
	}
	refusals++
	if pr, _ := adm.UpdatePartitions(ctx, 4, "__consumer_offsets"); !errors.Is(pr["__consumer_offsets"].Err, kerr.InvalidTopicException) {
		t.Fatalf("grow __consumer_offsets: %+v", pr)
	}
	refusals++
	after, err := e.b.Topic("__consumer_offsets")
	if err != nil || after.ID != before.ID || after.Partitions != before.Partitions || !reflect.DeepEqual(after.Config, before.Config) {
		t.Fatalf("__consumer_offsets changed: %+v -> %+v (%v)", before, after, err)
	}
	if _, err := e.b.Topic("__katka_plugins"); err != nil {
		t.Fatal("__katka_plugins deleted")
	}
	// Metadata: auto-creation of an internal name refused, every internal topic marked.
	r := e.raw(t)
	req := kmsg.NewPtrMetadataRequest()
	name := "__auto"
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	req.AllowAutoTopicCreation = true
	if resp := r.roundTrip(req, 9).(*kmsg.MetadataResponse); resp.Topics[0].ErrorCode != errInvalidTopic {
		t.Fatalf("auto-create __auto: error %d, want INVALID_TOPIC_EXCEPTION (17)", resp.Topics[0].ErrorCode)
	}
	refusals++
	if _, err := e.b.Topic("__auto"); err == nil {
		t.Fatal("__auto auto-created")
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "plain"); err != nil {
		t.Fatal(err)
	}
	all := kmsg.NewPtrMetadataRequest()
	internal := map[string]bool{}
	for _, mt := range r.roundTrip(all, 9).(*kmsg.MetadataResponse).Topics {
		internal[*mt.Topic] = mt.IsInternal
	}
	if !internal["__consumer_offsets"] || !internal["__katka_plugins"] || internal["plain"] || len(internal) != 3 {
		t.Fatalf("internal marks %v", internal)
	}
	// Configs of internal topics are read-only to clients.
	dreq := kmsg.NewPtrDescribeConfigsRequest()
	dreq.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "__consumer_offsets"}}
	dres := r.roundTrip(dreq, 4).(*kmsg.DescribeConfigsResponse).Resources[0]
	if dres.ErrorCode != 0 || len(dres.Configs) == 0 {
		t.Fatalf("describe __consumer_offsets: %+v", dres)
	}
	for _, c := range dres.Configs {
		if !c.ReadOnly {
			t.Errorf("config %s of __consumer_offsets not read-only", c.Name)
		}
	}
	if n := e.rejections(t, broker.LimitInternalTopic); n != float64(refusals) {
		t.Fatalf("internal_topic rejections %v, want %d", n, refusals)
	}
}
