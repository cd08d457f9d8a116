package kafka

import (
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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
