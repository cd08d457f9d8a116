package kafka

import (
	"errors"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// Topic configs are Kafka's (broker.TopicConfigDefs: every topic config of
// Kafka 3.x and 4.x), checked against Kafka's types and ranges, and kept as
// the topic's overrides in its metadata. This file holds what CreateTopics,
// DescribeConfigs, AlterConfigs and IncrementalAlterConfigs share.

// configError turns a failed config check into INVALID_CONFIG with the
// broker's message ("Invalid value x for configuration y: ...").
func configError(err error) error {
	if errors.Is(err, broker.ErrInvalidConfig) {
		return codeErrorf(errInvalidConfig, "%s", strings.TrimPrefix(err.Error(), broker.ErrInvalidConfig.Error()+": "))
	}
	return err
}

// configPair is one name=value of a request; a nil value is Kafka's null.
type configPair struct {
	name  string
	value *string
}

// buildOverrides checks pairs that together are the whole set of a topic's
// overrides (CreateTopics, AlterConfigs). A name given twice is
// INVALID_REQUEST, as Kafka 3.2+ answers; a null value answers nullCode; an
// unknown name or bad value INVALID_CONFIG.
func buildOverrides(pairs []configPair, nullCode int16) (map[string]string, error) {
	set := make(map[string]string, len(pairs))
	for _, p := range pairs {
		if _, dup := set[p.name]; dup {
			return nil, codeErrorf(errInvalidRequest, "Error due to duplicate config keys: %s", p.name)
		}
		if _, ok := broker.LookupTopicConfig(p.name); !ok {
			return nil, codeErrorf(errInvalidConfig, "Unknown topic config name: %s", p.name)
		}
		if p.value == nil {
			return nil, codeErrorf(nullCode, "Null value not supported for topic configs: %s", p.name)
		}
		v, err := broker.CheckTopicConfig(p.name, *p.value)
		if err != nil {
			return nil, configError(err)
		}
		set[p.name] = v
	}
	if err := broker.CheckTopicOverrides(set); err != nil {
		return nil, configError(err)
	}
	return set, nil
}

// describeTopicConfig renders one topic config for DescribeConfigs.
func describeTopicConfig(v broker.TopicConfigValue, internal bool, version int16, synonyms, docs bool) kmsg.DescribeConfigsResponseResourceConfig {
	rc := kmsg.NewDescribeConfigsResponseResourceConfig()
	val := v.Value
	rc.Name, rc.Value = v.Def.Name, &val
	// Internal topics' configs are katka's: clients may read, not alter them.
	rc.ReadOnly = internal
	rc.IsDefault = !v.Set
	rc.Source = kmsg.ConfigSourceDefaultConfig
	if v.Set {
		rc.Source = kmsg.ConfigSourceDynamicTopicConfig
	}
	if synonyms {
		if v.Set {
			rc.ConfigSynonyms = append(rc.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: v.Def.Name, Value: &val, Source: kmsg.ConfigSourceDynamicTopicConfig})
		}
		if v.Def.BrokerSynonym != "" {
			def := v.Default
			rc.ConfigSynonyms = append(rc.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: v.Def.BrokerSynonym, Value: &def, Source: kmsg.ConfigSourceDefaultConfig})
		}
	}
	if version == 0 {
		rc.Source = -1
	}
	rc.ConfigType = kmsg.ConfigType(v.Def.Type)
	if docs {
		doc := v.Def.Doc
		if !v.Def.Applied {
			doc += " Stored and described; katka does not act on it."
		}
		rc.Documentation = &doc
	}
	return rc
}

// brokerConfig is one of katka's broker-level settings under the name Kafka
// gives it. All are read-only: they come from katka.yaml.
type brokerConfig struct {
	name, value string
	typ         kmsg.ConfigType
	doc         string
}

// brokerConfigs lists katka's broker settings as Kafka broker configs.
func (s *Server) brokerConfigs() []brokerConfig {
	d := s.b.DefaultTopicConfig()
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	return []brokerConfig{
		{"auto.create.topics.enable", strconv.FormatBool(s.b.AutoCreate()), kmsg.ConfigTypeBoolean, "topics.auto_create in katka.yaml."},
		{"broker.id", strconv.Itoa(int(nodeID)), kmsg.ConfigTypeInt, "katka is one node."},
		{"compression.type", d.CompressionType, kmsg.ConfigTypeString, "The default compression.type of topics."},
		{"default.replication.factor", "1", kmsg.ConfigTypeInt, "One node: one replica."},
		{"delete.topic.enable", "true", kmsg.ConfigTypeBoolean, "Topics can be deleted."},
		{"log.cleaner.delete.retention.ms", i64(d.DeleteRetentionMs), kmsg.ConfigTypeLong, "The default delete.retention.ms of topics."},
		{"log.cleanup.policy", d.CleanupPolicy, kmsg.ConfigTypeList, "The default cleanup.policy of topics."},
		{"log.dirs", s.b.DataDir(), kmsg.ConfigTypeString, "data_dir in katka.yaml."},
		{"log.message.timestamp.type", d.TimestampType, kmsg.ConfigTypeString, "The default message.timestamp.type of topics."},
		{"log.retention.bytes", i64(d.RetentionBytes), kmsg.ConfigTypeLong, "topics.retention_bytes in katka.yaml."},
		{"log.retention.ms", i64(d.RetentionMs), kmsg.ConfigTypeLong, "topics.retention in katka.yaml; -1 keeps records forever."},
		{"log.segment.bytes", i64(d.SegmentBytes), kmsg.ConfigTypeInt, "The storage segment size (the tail segment is held in memory)."},
		{"message.max.bytes", i64(d.MaxMessageBytes), kmsg.ConfigTypeInt, "The default max.message.bytes of topics."},
		{"min.insync.replicas", "1", kmsg.ConfigTypeInt, "One node: a write is in sync once it is on disk."},
		{"node.id", strconv.Itoa(int(nodeID)), kmsg.ConfigTypeInt, "katka is one node."},
		{"num.partitions", strconv.Itoa(int(s.b.DefaultPartitions())), kmsg.ConfigTypeInt, "The partition count of auto-created topics."},
		{"offsets.topic.replication.factor", "1", kmsg.ConfigTypeShort, "One node: one replica."},
		{"transaction.state.log.replication.factor", "1", kmsg.ConfigTypeShort, "One node: one replica."},
	}
}

// checkBrokerResource checks a broker resource's name as Kafka does: empty
// (the cluster default) or this node's id.
func checkBrokerResource(name string) error {
	if name != "" && name != strconv.Itoa(int(nodeID)) {
		return codeErrorf(errInvalidRequest, "Unexpected broker id, expected %d or empty string, but received %s", nodeID, name)
	}
	return nil
}

// alterBrokerConfigs answers a change of broker configs as Kafka answers one
// of a config that is not dynamically updatable: katka's broker settings
// come from katka.yaml and change with a restart.
func alterBrokerConfigs(name string, names []string) error {
	if err := checkBrokerResource(name); err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	return codeErrorf(errInvalidRequest, "Invalid config value for resource ConfigResource(type=BROKER, name='%s'): Cannot update these configs dynamically: Set(%s) (katka's broker settings live in katka.yaml)", name, strings.Join(names, ", "))
}
