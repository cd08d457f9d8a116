package kafka

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// topicConfigDef maps one Kafka topic config name onto broker.TopicConfig.
type topicConfigDef struct {
	name string
	typ  kmsg.ConfigType
	doc  string
	// get renders the value; set parses and stores one (nil: read-only, and
	// only the fixed value is accepted); clear reverts to the broker default.
	get   func(broker.TopicConfig) string
	set   func(*broker.TopicConfig, string) error
	clear func(*broker.TopicConfig)
}

// topicConfigs are the topic configs katka understands, in the order they are
// described. The fixed ones are accepted with their only value so that tools
// which always send them keep working.
var topicConfigs = []topicConfigDef{
	{
		name: "cleanup.policy", typ: kmsg.ConfigTypeList,
		doc: "What to do with old segments: delete (retention), compact (keep the latest record per key), or both.",
		get: func(c broker.TopicConfig) string { return c.CleanupPolicy },
		set: func(c *broker.TopicConfig, v string) error {
			var del, compact bool
			for _, p := range strings.Split(v, ",") {
				switch strings.TrimSpace(p) {
				case "delete":
					del = true
				case "compact":
					compact = true
				default:
					return fmt.Errorf("cleanup.policy %q is not allowed (allowed: delete, compact, or compact,delete)", v)
				}
			}
			switch {
			case del && compact:
				c.CleanupPolicy = "compact,delete"
			case compact:
				c.CleanupPolicy = "compact"
			default:
				c.CleanupPolicy = "delete"
			}
			return nil
		},
		clear: func(c *broker.TopicConfig) { c.CleanupPolicy = "" },
	},
	{
		name: "delete.retention.ms", typ: kmsg.ConfigTypeLong,
		doc: "How long a compacted topic keeps tombstones (null values), in milliseconds.",
		get: func(c broker.TopicConfig) string { return strconv.FormatInt(c.DeleteRetentionMs, 10) },
		set: func(c *broker.TopicConfig, v string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 1 {
				return fmt.Errorf("delete.retention.ms %q must be a positive integer", v)
			}
			c.DeleteRetentionMs = n
			return nil
		},
		clear: func(c *broker.TopicConfig) { c.DeleteRetentionMs = 0 },
	},
	{
		name: "max.message.bytes", typ: kmsg.ConfigTypeInt,
		doc: "The largest record batch size allowed, in bytes.",
		get: func(c broker.TopicConfig) string { return strconv.FormatInt(c.MaxMessageBytes, 10) },
		set: func(c *broker.TopicConfig, v string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err != nil || n < 1 {
				return fmt.Errorf("max.message.bytes %q must be an integer from 1 to 2147483647", v)
			}
			c.MaxMessageBytes = n
			return nil
		},
		clear: func(c *broker.TopicConfig) { c.MaxMessageBytes = 0 },
	},
	{
		name: "message.timestamp.type", typ: kmsg.ConfigTypeString,
		doc: "CreateTime keeps the producer's timestamps; LogAppendTime replaces them with the broker's time of append.",
		get: func(c broker.TopicConfig) string { return c.TimestampType },
		set: func(c *broker.TopicConfig, v string) error {
			switch v = strings.TrimSpace(v); v {
			case "CreateTime", "LogAppendTime":
				c.TimestampType = v
				return nil
			}
			return fmt.Errorf("message.timestamp.type %q is not allowed (allowed: CreateTime, LogAppendTime)", v)
		},
		clear: func(c *broker.TopicConfig) { c.TimestampType = "" },
	},
	{
		name: "retention.bytes", typ: kmsg.ConfigTypeLong,
		doc: "The size a partition may grow to before its oldest segments are deleted; -1 is unlimited.",
		get: func(c broker.TopicConfig) string { return strconv.FormatInt(c.RetentionBytes, 10) },
		set: func(c *broker.TopicConfig, v string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < -1 || n == 0 {
				return fmt.Errorf("retention.bytes %q must be -1 or a positive integer", v)
			}
			c.RetentionBytes = n
			return nil
		},
		clear: func(c *broker.TopicConfig) { c.RetentionBytes = 0 },
	},
	{
		name: "retention.ms", typ: kmsg.ConfigTypeLong,
		doc: "How long records are kept before their segment is deleted, in milliseconds; -1 keeps them forever.",
		get: func(c broker.TopicConfig) string { return strconv.FormatInt(c.RetentionMs, 10) },
		set: func(c *broker.TopicConfig, v string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < -1 || n == 0 {
				return fmt.Errorf("retention.ms %q must be -1 or a positive integer", v)
			}
			c.RetentionMs = n
			return nil
		},
		clear: func(c *broker.TopicConfig) { c.RetentionMs = 0 },
	},
	fixedConfig("compression.type", kmsg.ConfigTypeString, "producer", "Batches are stored as the producer compressed them (fixed)."),
	fixedConfig("min.insync.replicas", kmsg.ConfigTypeInt, "1", "One node: every write is in sync once it is on disk (fixed)."),
}

func fixedConfig(name string, typ kmsg.ConfigType, value, doc string) topicConfigDef {
	return topicConfigDef{
		name: name, typ: typ, doc: doc,
		get: func(broker.TopicConfig) string { return value },
	}
}

func findTopicConfig(name string) *topicConfigDef {
	for i := range topicConfigs {
		if topicConfigs[i].name == name {
			return &topicConfigs[i]
		}
	}
	return nil
}

// setTopicConfig applies one name=value to c; errors carry INVALID_CONFIG.
func setTopicConfig(c *broker.TopicConfig, name string, value *string) error {
	d := findTopicConfig(name)
	if d == nil {
		return codeErrorf(errInvalidConfig, "unknown or unsupported topic config %q (supported: %s)", name, supportedConfigNames())
	}
	if value == nil {
		return codeErrorf(errInvalidConfig, "null value for topic config %q", name)
	}
	if d.set == nil {
		if *value != d.get(*c) {
			return codeErrorf(errInvalidConfig, "topic config %s is fixed at %s", name, d.get(*c))
		}
		return nil
	}
	if err := d.set(c, *value); err != nil {
		return codeErrorf(errInvalidConfig, "%v", err)
	}
	return nil
}

func supportedConfigNames() string {
	var names []string
	for _, d := range topicConfigs {
		names = append(names, d.name)
	}
	return strings.Join(names, ", ")
}
