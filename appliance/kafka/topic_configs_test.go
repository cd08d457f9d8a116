package kafka

import (
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// describeTopic returns a topic's configs by name, as kadm reads them
// (DescribeConfigs with synonyms).
func describeTopic(t *testing.T, adm *kadm.Client, topic string) map[string]kadm.Config {
	t.Helper()
	rc, err := adm.DescribeTopicConfigs(ctxT(t), topic)
	if err != nil || rc[0].Err != nil {
		t.Fatalf("describe %s: %v %+v", topic, err, rc)
	}
	out := map[string]kadm.Config{}
	for _, c := range rc[0].Configs {
		out[c.Key] = c
	}
	return out
}

// TestTopicConfigsCreateDescribe: CreateTopics accepts Kafka's topic configs
// that librdkafka's tests send (segment.bytes, compression.type=lz4,
// message.format.version), refuses unknown names and bad values with
// INVALID_CONFIG and a message naming the problem, and DescribeConfigs lists
// every Kafka topic config with DYNAMIC_TOPIC_CONFIG for those set and
// DEFAULT_CONFIG, with the broker synonym, for the others.
func TestTopicConfigsCreateDescribe(t *testing.T) {
	e := newEnv(t)
	adm := e.admin(t)
	ctx := ctxT(t)
	cfg := map[string]*string{
		"segment.bytes":          kadm.StringPtr("20000"),
		"compression.type":       kadm.StringPtr("lz4"),
		"max.message.bytes":      kadm.StringPtr("10000"),
		"message.format.version": kadm.StringPtr("0.10.0.0"),
		"min.insync.replicas":    kadm.StringPtr("1"),
		"segment.ms":             kadm.StringPtr("100"),
	}
	r, err := adm.CreateTopic(ctx, 1, 1, cfg, "c1")
	if err != nil || r.Err != nil {
		t.Fatalf("create: %v %+v", err, r)
	}
	if c := r.Configs["segment.bytes"]; c.Value == nil || *c.Value != "20000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("create response segment.bytes %+v", c)
	}
	if c := r.Configs["retention.bytes"]; c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("create response retention.bytes %+v", c)
	}
	info, _ := e.b.Topic("c1")
	if info.Config.CompressionType != "lz4" || info.Config.SegmentBytes != 20000 || info.Config.MaxMessageBytes != 10000 {
		t.Fatalf("broker config %+v", info.Config)
	}

	got := describeTopic(t, adm, "c1")
	if len(got) != len(broker.TopicConfigDefs()) {
		t.Fatalf("described %d configs, Kafka has %d", len(got), len(broker.TopicConfigDefs()))
	}
	for _, d := range broker.TopicConfigDefs() {
		if _, ok := got[d.Name]; !ok {
			t.Errorf("%s not described", d.Name)
		}
	}
	if c := got["segment.ms"]; val(c) != "100" || c.Source != kmsg.ConfigSourceDynamicTopicConfig || len(c.Synonyms) != 2 || c.Synonyms[1].Key != "log.roll.ms" {
		t.Fatalf("segment.ms %+v", c)
	}
	if c := got["retention.ms"]; val(c) != "-1" || c.Source != kmsg.ConfigSourceDefaultConfig || len(c.Synonyms) != 1 || c.Synonyms[0].Key != "log.retention.ms" {
		t.Fatalf("retention.ms %+v", c)
	}
	if c := got["flush.messages"]; val(c) != "9223372036854775807" {
		t.Fatalf("flush.messages %+v", c)
	}

	for _, c := range []struct {
		cfg  map[string]*string
		msg  string
		code error
	}{
		{map[string]*string{"foo.bar": kadm.StringPtr("1")}, "Unknown topic config name: foo.bar", kerr.InvalidConfig},
		{map[string]*string{"segment.bytes": kadm.StringPtr("13")}, "Invalid value 13 for configuration segment.bytes: Value must be at least 14", kerr.InvalidConfig},
		{map[string]*string{"compression.type": kadm.StringPtr("brotli")}, "configuration compression.type: String must be one of", kerr.InvalidConfig},
		{map[string]*string{"min.cleanable.dirty.ratio": kadm.StringPtr("2")}, "between 0 and 1", kerr.InvalidConfig},
		{map[string]*string{"remote.storage.enable": kadm.StringPtr("true")}, "Tiered Storage functionality is disabled", kerr.InvalidConfig},
		{map[string]*string{"min.compaction.lag.ms": kadm.StringPtr("10"), "max.compaction.lag.ms": kadm.StringPtr("5")}, "conflict topic config setting", kerr.InvalidConfig},
		{map[string]*string{"retention.ms": nil}, "Null value not supported", kerr.InvalidConfig},
	} {
		r, err := adm.CreateTopic(ctx, 1, 1, c.cfg, "bad")
		if !errors.Is(err, c.code) || !strings.Contains(r.ErrMessage, c.msg) {
			t.Errorf("create with %v: %v %q, want %v %q", c.cfg, err, r.ErrMessage, c.code, c.msg)
		}
	}
	if _, err := e.b.Topic("bad"); err == nil {
		t.Fatal("a refused create made the topic")
	}

	// validate_only answers the configs the topic would have and creates nothing.
	vr, err := adm.ValidateCreateTopics(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "v1")
	if err != nil || vr["v1"].Err != nil || *vr["v1"].Configs["cleanup.policy"].Value != "compact" {
		t.Fatalf("validate create: %v %+v", err, vr)
	}
	if _, err := e.b.Topic("v1"); err == nil {
		t.Fatal("validate_only created the topic")
	}
}

// TestAlterConfigsReplaces: the legacy AlterConfigs (API 33, kadm's
// AlterTopicConfigsState) makes the configs given the topic's whole set:
// the others revert to their defaults. validate_only changes nothing; a
// missing topic answers UNKNOWN_TOPIC_OR_PARTITION whatever its configs; an
// internal topic INVALID_TOPIC_EXCEPTION.
func TestAlterConfigsReplaces(t *testing.T) {
	e := newEnv(t)
	adm := e.admin(t)
	ctx := ctxT(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1048576"), "compression.type": kadm.StringPtr("lz4")}, "a1"); err != nil {
		t.Fatal(err)
	}
	ar, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("3600000")}, {Name: "message.format.version", Value: kadm.StringPtr("0.10.0.0")}}, "a1")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, ar)
	}
	got := describeTopic(t, adm, "a1")
	if c := got["retention.ms"]; val(c) != "3600000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms %+v", c)
	}
	if c := got["compression.type"]; val(c) != "producer" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("compression.type not reverted: %+v", c)
	}
	if info, _ := e.b.Topic("a1"); info.Config.RetentionMs != 3600000 || info.Config.CompressionType != "producer" {
		t.Fatalf("broker config %+v", info.Config)
	}

	// librdkafka's test_AlterConfigs_simple sends back every described config
	// with one changed: each described value must pass its own check.
	var all []kadm.AlterConfig
	for name, c := range got {
		v := val(c)
		if name == "segment.ms" {
			v = "5000"
		}
		all = append(all, kadm.AlterConfig{Name: name, Value: &v})
	}
	if ar, err := adm.AlterTopicConfigsState(ctx, all, "a1"); err != nil || ar[0].Err != nil {
		t.Fatalf("alter with every described config: %v %+v", err, ar)
	}
	if c := describeTopic(t, adm, "a1")["segment.ms"]; val(c) != "5000" {
		t.Fatalf("segment.ms %+v", c)
	}

	// validate_only, bad values, a missing and an internal topic.
	if ar, _ := adm.ValidateAlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("5")}}, "a1"); ar[0].Err != nil {
		t.Fatalf("validate alter: %+v", ar)
	}
	if ar, _ := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("-2")}}, "a1"); !errors.Is(ar[0].Err, kerr.InvalidConfig) || !strings.Contains(ar[0].ErrMessage, "Value must be at least -1") {
		t.Fatalf("bad alter: %+v", ar)
	}
	if ar, _ := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "no.such.config", Value: kadm.StringPtr("1")}}, "a1"); !errors.Is(ar[0].Err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %+v", ar)
	}
	if info, _ := e.b.Topic("a1"); info.Config.RetentionMs != 3600000 || info.Config.Overrides["segment.ms"] != "5000" {
		t.Fatalf("a refused or validate-only alter changed the config: %+v", info.Config)
	}
	if ar, _ := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "offset.metadata.max.bytes", Value: kadm.StringPtr("12345")}}, "missing"); !errors.Is(ar[0].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("missing topic: %+v", ar)
	}
	if ar, _ := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("1")}}, "__consumer_offsets"); !errors.Is(ar[0].Err, kerr.InvalidTopicException) {
		t.Fatalf("internal topic: %+v", ar)
	}

	// Duplicate names and null values are INVALID_REQUEST, as in Kafka.
	r := e.raw(t)
	for _, cfgs := range [][]kmsg.AlterConfigsRequestResourceConfig{
		{{Name: "retention.ms", Value: kadm.StringPtr("1")}, {Name: "retention.ms", Value: kadm.StringPtr("2")}},
		{{Name: "retention.ms"}},
	} {
		req := kmsg.NewPtrAlterConfigsRequest()
		req.Resources = []kmsg.AlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "a1", Configs: cfgs}}
		if res := r.roundTrip(req, 2).(*kmsg.AlterConfigsResponse).Resources[0]; res.ErrorCode != errInvalidRequest {
			t.Fatalf("alter %+v: %+v", cfgs, res)
		}
	}
}

// TestIncrementalAlterTopicConfigs: IncrementalAlterConfigs keeps the configs
// it does not name, sets and deletes any Kafka topic config, and appends and
// subtracts on list configs only.
func TestIncrementalAlterTopicConfigs(t *testing.T) {
	e := newEnv(t)
	adm := e.admin(t)
	ctx := ctxT(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.ms": kadm.StringPtr("1000")}, "i1"); err != nil {
		t.Fatal(err)
	}
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "preallocate", Value: kadm.StringPtr("true")},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")},
		{Op: kadm.DeleteConfig, Name: "no.such.config"},
	}, "i1")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, ar)
	}
	got := describeTopic(t, adm, "i1")
	if val(got["segment.ms"]) != "1000" || val(got["preallocate"]) != "true" || val(got["cleanup.policy"]) != "compact,delete" {
		t.Fatalf("after alter %v %v %v", got["segment.ms"], got["preallocate"], got["cleanup.policy"])
	}
	if info, _ := e.b.Topic("i1"); !info.Config.Compacted() || !info.Config.Deletes() {
		t.Fatalf("cleanup.policy not applied: %+v", info.Config)
	}
	if ar, _ := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "segment.ms", Value: kadm.StringPtr("1")}}, "i1"); !errors.Is(ar[0].Err, kerr.InvalidConfig) {
		t.Fatalf("append to a non-list: %+v", ar)
	}
	if ar, _ := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "segment.ms"}}, "i1"); ar[0].Err != nil {
		t.Fatalf("delete: %+v", ar)
	}
	if c := describeTopic(t, adm, "i1")["segment.ms"]; val(c) != "604800000" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("segment.ms after delete %+v", c)
	}
}

// TestBrokerConfigs: katka's broker settings are described under Kafka's
// names, read-only; a change through either alter API answers
// INVALID_REQUEST as Kafka does for a config that is not dynamic.
func TestBrokerConfigs(t *testing.T) {
	e := newEnv(t)
	adm := e.admin(t)
	ctx := ctxT(t)
	rc, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil || rc[0].Err != nil {
		t.Fatalf("describe: %v %+v", err, rc)
	}
	got := map[string]kadm.Config{}
	for _, c := range rc[0].Configs {
		got[c.Key] = c
	}
	if c := got["log.segment.bytes"]; val(c) != "1048576" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Fatalf("log.segment.bytes %+v", c)
	}
	if val(got["log.retention.ms"]) != "-1" || val(got["broker.id"]) != "0" || val(got["log.dirs"]) == "" {
		t.Fatalf("broker configs %v", got)
	}
	ar, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "log.retention.ms", Value: kadm.StringPtr("1000")}}, 0)
	if err != nil || !errors.Is(ar[0].Err, kerr.InvalidRequest) || !strings.Contains(ar[0].ErrMessage, "Cannot update these configs dynamically") {
		t.Fatalf("incremental alter of a broker config: %v %+v", err, ar)
	}
	ar, err = adm.AlterBrokerConfigsState(ctx, []kadm.AlterConfig{{Name: "log.retention.ms", Value: kadm.StringPtr("1000")}}, 0)
	if err != nil || !errors.Is(ar[0].Err, kerr.InvalidRequest) {
		t.Fatalf("alter of a broker config: %v %+v", err, ar)
	}
	r := e.raw(t)
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: "7"}}
	if res := r.roundTrip(req, 4).(*kmsg.DescribeConfigsResponse).Resources[0]; res.ErrorCode != errInvalidRequest {
		t.Fatalf("describe of broker 7: %+v", res)
	}
}

func val(c kadm.Config) string { return c.MaybeValue() }
