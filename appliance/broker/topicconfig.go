package broker

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/katka-io/katka/appliance/storage"
)

// ErrInvalidConfig is a topic config Kafka would refuse: an unknown name, a
// value outside the config's type or range. Kafka answers INVALID_CONFIG.
var ErrInvalidConfig = errors.New("invalid config")

// ConfigType is a config's type as Kafka's DescribeConfigs reports it; the
// numbers are Kafka's (kmsg.ConfigType).
type ConfigType int8

// The Kafka config types katka's topic configs use.
const (
	ConfigBoolean ConfigType = 1
	ConfigString  ConfigType = 2
	ConfigInt     ConfigType = 3
	ConfigLong    ConfigType = 5
	ConfigDouble  ConfigType = 6
	ConfigList    ConfigType = 7
)

// MinTopicSegmentBytes is the smallest segment a topic's segment.bytes gives
// its partitions: Kafka 3.x accepts segment.bytes from 14 bytes, which as
// files would be one record each, so katka stores the value and rolls at
// this size at the least.
const MinTopicSegmentBytes = 64 << 10

// TopicConfigDef is one Kafka topic config: its name, type, Kafka's default and
// the check of a value against the type and range Kafka's LogConfig gives it.
type TopicConfigDef struct {
	Name string
	Type ConfigType
	// Doc is the one-line description DescribeConfigs returns on request.
	Doc string
	// Applied is true where katka acts on the config; the others are stored
	// and described so tools that set them keep working.
	Applied bool
	// BrokerSynonym is the broker-level config Kafka takes the default from
	// (log.retention.ms for retention.ms); "" when there is none.
	BrokerSynonym string
	// KafkaDefault is Kafka's default, used where katka has no own default.
	KafkaDefault string
	// check returns the canonical form of a valid value, or why it is not.
	check func(v string) (string, error)
}

// Check validates one value of the config, returning its canonical form; the
// error wraps ErrInvalidConfig and names the config, the value and the rule.
func (d *TopicConfigDef) Check(value string) (string, error) {
	v, err := d.check(strings.TrimSpace(value))
	if err != nil {
		return "", fmt.Errorf("%w: Invalid value %s for configuration %s: %v", ErrInvalidConfig, value, d.Name, err)
	}
	return v, nil
}

const maxLong = "9223372036854775807"

func longAtLeast(min int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", errors.New("Not a number of type LONG")
		}
		if n < min {
			return "", fmt.Errorf("Value must be at least %d", min)
		}
		return strconv.FormatInt(n, 10), nil
	}
}

func intBetween(min, max int64, extra ...int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return "", errors.New("Not a number of type INT")
		}
		for _, x := range extra {
			if n == x {
				return strconv.FormatInt(n, 10), nil
			}
		}
		if n < min {
			return "", fmt.Errorf("Value must be at least %d", min)
		}
		if n > max {
			return "", fmt.Errorf("Value must be no more than %d", max)
		}
		return strconv.FormatInt(n, 10), nil
	}
}

func intAtLeast(min int64) func(string) (string, error) {
	return intBetween(min, math.MaxInt32)
}

func boolean(v string) (string, error) {
	switch strings.ToLower(v) {
	case "true":
		return "true", nil
	case "false":
		return "false", nil
	}
	return "", errors.New("Expected value to be either true or false")
}

func oneOf(allowed ...string) func(string) (string, error) {
	return func(v string) (string, error) {
		for _, a := range allowed {
			if v == a {
				return v, nil
			}
		}
		return "", fmt.Errorf("String must be one of: %s", strings.Join(allowed, ", "))
	}
}

// cleanupPolicy accepts a list of delete and compact, as Kafka's ValidList does.
func cleanupPolicy(v string) (string, error) {
	var del, compact bool
	for _, p := range strings.Split(v, ",") {
		switch strings.TrimSpace(p) {
		case "delete":
			del = true
		case "compact":
			compact = true
		default:
			return "", errors.New("Invalid value for list: allowed values are [compact, delete]")
		}
	}
	switch {
	case del && compact:
		return "compact,delete", nil
	case compact:
		return "compact", nil
	}
	return "delete", nil
}

func dirtyRatio(v string) (string, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) {
		return "", errors.New("Not a number of type DOUBLE")
	}
	if f < 0 || f > 1 {
		return "", errors.New("Value must be between 0 and 1")
	}
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}

var throttledReplica = regexp.MustCompile(`^[0-9]+:[0-9]+$`)

// throttledReplicas is Kafka's ThrottledReplicaListValidator: "*" or a list of
// partition:broker pairs (or empty).
func throttledReplicas(v string) (string, error) {
	if v == "" || v == "*" {
		return v, nil
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if !throttledReplica.MatchString(p) {
			return "", errors.New("must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...")
		}
		out = append(out, p)
	}
	return strings.Join(out, ","), nil
}

var messageFormat = regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+){0,2}(-IV[0-9]+)?$`)

// messageFormatVersion accepts the versions Kafka 3.x's ApiVersionValidator
// does (0.8.0 to 3.x, with an optional -IVn); Kafka 3 ignores the value for
// its own message format, as katka does.
func messageFormatVersion(v string) (string, error) {
	if !messageFormat.MatchString(v) {
		return "", errors.New("String must be a Kafka version such as 0.10.0, 2.8 or 3.0-IV1")
	}
	return v, nil
}

// remoteStorage refuses remote.storage.enable=true: katka has no tiered
// storage, and Kafka refuses it with the same message when its own is off.
func remoteStorage(v string) (string, error) {
	b, err := boolean(v)
	if err == nil && b == "true" {
		return "", errors.New("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.")
	}
	return b, err
}

func anyLong(v string) (string, error) { return longAtLeast(math.MinInt64)(v) }

// topicConfigDefs are every topic config of Kafka 3.x and 4.x, sorted by name.
var topicConfigDefs = []TopicConfigDef{
	{Name: "cleanup.policy", Type: ConfigList, Applied: true, BrokerSynonym: "log.cleanup.policy", KafkaDefault: "delete", check: cleanupPolicy,
		Doc: "What to do with old segments: delete (retention), compact (keep the latest record per key), or both."},
	{Name: "compression.gzip.level", Type: ConfigInt, BrokerSynonym: "compression.gzip.level", KafkaDefault: "-1", check: intBetween(1, 9, -1),
		Doc: "The gzip level used when compression.type is gzip."},
	{Name: "compression.lz4.level", Type: ConfigInt, BrokerSynonym: "compression.lz4.level", KafkaDefault: "9", check: intBetween(1, 17),
		Doc: "The lz4 level used when compression.type is lz4."},
	{Name: "compression.type", Type: ConfigString, BrokerSynonym: "compression.type", KafkaDefault: "producer", check: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
		Doc: "The compression of the topic's stored batches: producer keeps what the producer sent."},
	{Name: "compression.zstd.level", Type: ConfigInt, BrokerSynonym: "compression.zstd.level", KafkaDefault: "3", check: intBetween(-131072, 22),
		Doc: "The zstd level used when compression.type is zstd."},
	{Name: "delete.retention.ms", Type: ConfigLong, Applied: true, BrokerSynonym: "log.cleaner.delete.retention.ms", KafkaDefault: "86400000", check: longAtLeast(0),
		Doc: "How long a compacted topic keeps tombstones (null values), in milliseconds."},
	{Name: "file.delete.delay.ms", Type: ConfigLong, BrokerSynonym: "log.segment.delete.delay.ms", KafkaDefault: "60000", check: longAtLeast(0),
		Doc: "How long Kafka waits before deleting a file from the filesystem (katka deletes at once)."},
	{Name: "flush.messages", Type: ConfigLong, BrokerSynonym: "log.flush.interval.messages", KafkaDefault: maxLong, check: longAtLeast(1),
		Doc: "Messages between forced fsyncs (katka's fsync policy is broker.fsync)."},
	{Name: "flush.ms", Type: ConfigLong, BrokerSynonym: "log.flush.interval.ms", KafkaDefault: maxLong, check: longAtLeast(0),
		Doc: "Milliseconds between forced fsyncs (katka's fsync policy is broker.fsync)."},
	{Name: "follower.replication.throttled.replicas", Type: ConfigList, KafkaDefault: "", check: throttledReplicas,
		Doc: "Replicas whose log replication is throttled on the follower side (one node: none)."},
	{Name: "index.interval.bytes", Type: ConfigInt, BrokerSynonym: "log.index.interval.bytes", KafkaDefault: "4096", check: intAtLeast(0),
		Doc: "How often Kafka adds an entry to its offset index."},
	{Name: "leader.replication.throttled.replicas", Type: ConfigList, KafkaDefault: "", check: throttledReplicas,
		Doc: "Replicas whose log replication is throttled on the leader side (one node: none)."},
	{Name: "local.retention.bytes", Type: ConfigLong, BrokerSynonym: "log.local.retention.bytes", KafkaDefault: "-2", check: longAtLeast(-2),
		Doc: "Local retention with tiered storage; -2 means retention.bytes."},
	{Name: "local.retention.ms", Type: ConfigLong, BrokerSynonym: "log.local.retention.ms", KafkaDefault: "-2", check: longAtLeast(-2),
		Doc: "Local retention with tiered storage; -2 means retention.ms."},
	{Name: "max.compaction.lag.ms", Type: ConfigLong, BrokerSynonym: "log.cleaner.max.compaction.lag.ms", KafkaDefault: maxLong, check: longAtLeast(1),
		Doc: "The longest a record stays uncompacted."},
	{Name: "max.message.bytes", Type: ConfigInt, Applied: true, BrokerSynonym: "message.max.bytes", KafkaDefault: "1048588", check: intAtLeast(0),
		Doc: "The largest record batch size allowed, in bytes."},
	{Name: "message.downconversion.enable", Type: ConfigBoolean, BrokerSynonym: "log.message.downconversion.enable", KafkaDefault: "true", check: boolean,
		Doc: "Kafka 3.x: whether old-format consumers get down-converted batches."},
	{Name: "message.format.version", Type: ConfigString, BrokerSynonym: "log.message.format.version", KafkaDefault: "3.0-IV1", check: messageFormatVersion,
		Doc: "Kafka 3.x: the message format version; ignored, as by Kafka 3 (batches are v2)."},
	{Name: "message.timestamp.after.max.ms", Type: ConfigLong, BrokerSynonym: "log.message.timestamp.after.max.ms", KafkaDefault: maxLong, check: longAtLeast(0),
		Doc: "How far a record's timestamp may be ahead of the broker's clock."},
	{Name: "message.timestamp.before.max.ms", Type: ConfigLong, BrokerSynonym: "log.message.timestamp.before.max.ms", KafkaDefault: maxLong, check: longAtLeast(0),
		Doc: "How far a record's timestamp may be behind the broker's clock."},
	{Name: "message.timestamp.difference.max.ms", Type: ConfigLong, BrokerSynonym: "log.message.timestamp.difference.max.ms", KafkaDefault: maxLong, check: longAtLeast(0),
		Doc: "Kafka 3.x: the largest difference between a record's timestamp and the broker's clock."},
	{Name: "message.timestamp.type", Type: ConfigString, Applied: true, BrokerSynonym: "log.message.timestamp.type", KafkaDefault: "CreateTime", check: oneOf("CreateTime", "LogAppendTime"),
		Doc: "CreateTime keeps the producer's timestamps; LogAppendTime replaces them with the broker's time of append."},
	{Name: "min.cleanable.dirty.ratio", Type: ConfigDouble, Applied: true, BrokerSynonym: "log.cleaner.min.cleanable.ratio", KafkaDefault: "0.5", check: dirtyRatio,
		Doc: "The share of a compacted partition's sealed log that must be new (written since its last compaction) before it is compacted again."},
	{Name: "min.compaction.lag.ms", Type: ConfigLong, BrokerSynonym: "log.cleaner.min.compaction.lag.ms", KafkaDefault: "0", check: longAtLeast(0),
		Doc: "The shortest a record stays uncompacted."},
	{Name: "min.insync.replicas", Type: ConfigInt, BrokerSynonym: "min.insync.replicas", KafkaDefault: "1", check: intAtLeast(1),
		Doc: "Replicas that must have a write for acks=all (one node: the write is on disk)."},
	{Name: "preallocate", Type: ConfigBoolean, BrokerSynonym: "log.preallocate", KafkaDefault: "false", check: boolean,
		Doc: "Whether Kafka preallocates segment files."},
	{Name: "remote.log.copy.disable", Type: ConfigBoolean, KafkaDefault: "false", check: boolean,
		Doc: "Tiered storage: stop copying segments to remote storage."},
	{Name: "remote.log.delete.on.disable", Type: ConfigBoolean, KafkaDefault: "false", check: boolean,
		Doc: "Tiered storage: delete remote data when it is disabled."},
	{Name: "remote.storage.enable", Type: ConfigBoolean, KafkaDefault: "false", check: remoteStorage,
		Doc: "Tiered storage for the topic (katka has none: only false is accepted)."},
	{Name: "retention.bytes", Type: ConfigLong, Applied: true, BrokerSynonym: "log.retention.bytes", KafkaDefault: "-1", check: anyLong,
		Doc: "The size a partition may grow to before its oldest segments are deleted; a negative value is unlimited."},
	{Name: "retention.ms", Type: ConfigLong, Applied: true, BrokerSynonym: "log.retention.ms", KafkaDefault: "604800000", check: longAtLeast(-1),
		Doc: "How long records are kept before their segment is deleted, in milliseconds; -1 keeps them forever."},
	{Name: "segment.bytes", Type: ConfigInt, Applied: true, BrokerSynonym: "log.segment.bytes", KafkaDefault: "1073741824", check: intAtLeast(14),
		Doc: "The segment size; katka applies it when the partition opens, between 64 KiB and the broker's storage segment size."},
	{Name: "segment.index.bytes", Type: ConfigInt, BrokerSynonym: "log.index.size.max.bytes", KafkaDefault: "10485760", check: intAtLeast(4),
		Doc: "The size of Kafka's offset index per segment."},
	{Name: "segment.jitter.ms", Type: ConfigLong, BrokerSynonym: "log.roll.jitter.ms", KafkaDefault: "0", check: longAtLeast(0),
		Doc: "Random jitter subtracted from segment.ms."},
	{Name: "segment.ms", Type: ConfigLong, BrokerSynonym: "log.roll.ms", KafkaDefault: "604800000", check: longAtLeast(1),
		Doc: "The time after which Kafka rolls a segment (katka rolls by size)."},
	{Name: "unclean.leader.election.enable", Type: ConfigBoolean, BrokerSynonym: "unclean.leader.election.enable", KafkaDefault: "false", check: boolean,
		Doc: "Whether an out-of-sync replica may become leader (one node: never matters)."},
}

// TopicConfigDefs lists every Kafka topic config katka accepts, sorted by name.
func TopicConfigDefs() []TopicConfigDef { return topicConfigDefs }

// LookupTopicConfig finds a Kafka topic config by name.
func LookupTopicConfig(name string) (*TopicConfigDef, bool) {
	i := sort.Search(len(topicConfigDefs), func(i int) bool { return topicConfigDefs[i].Name >= name })
	if i < len(topicConfigDefs) && topicConfigDefs[i].Name == name {
		return &topicConfigDefs[i], true
	}
	return nil, false
}

// CheckTopicConfig validates one name=value as Kafka does and returns the
// canonical value; an unknown name is "Unknown topic config name".
func CheckTopicConfig(name, value string) (string, error) {
	d, ok := LookupTopicConfig(name)
	if !ok {
		return "", fmt.Errorf("%w: Unknown topic config name: %s", ErrInvalidConfig, name)
	}
	return d.Check(value)
}

// CheckTopicOverrides checks the rules between configs that Kafka's
// LogConfig.validateValues checks: min.compaction.lag.ms may not pass
// max.compaction.lag.ms. Each value must already have passed its own check.
func CheckTopicOverrides(set map[string]string) error {
	lo, hi := int64(0), int64(math.MaxInt64)
	if v, ok := set["min.compaction.lag.ms"]; ok {
		lo, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := set["max.compaction.lag.ms"]; ok {
		hi, _ = strconv.ParseInt(v, 10, 64)
	}
	if lo > hi {
		return fmt.Errorf("%w: conflict topic config setting min.compaction.lag.ms (%d) > max.compaction.lag.ms (%d)", ErrInvalidConfig, lo, hi)
	}
	return nil
}

// applyOverrides sets the typed fields katka acts on from the Kafka configs
// set on the topic; values have passed CheckTopicConfig.
func applyOverrides(c *TopicConfig) {
	for name, v := range c.Overrides {
		n, _ := strconv.ParseInt(v, 10, 64)
		switch name {
		case "retention.ms":
			if n == 0 {
				n = 1 // Kafka's 0: every sealed segment is past retention; 1 ms is the same for whole segments
			}
			c.RetentionMs = n
		case "retention.bytes":
			c.RetentionBytes = n
		case "max.message.bytes":
			c.MaxMessageBytes = n
		case "message.timestamp.type":
			c.TimestampType = v
		case "cleanup.policy":
			c.CleanupPolicy = v
		case "delete.retention.ms":
			c.DeleteRetentionMs = n
		case "compression.type":
			c.CompressionType = v
		case "segment.bytes":
			c.SegmentBytes = n
		}
	}
}

// typedOverrides lists, as Kafka configs, the typed fields a caller set
// (non-zero) that its Overrides do not name: a topic made by katka itself or
// from katka.yaml then describes them as set on the topic.
func typedOverrides(c TopicConfig) map[string]string {
	out := make(map[string]string, len(c.Overrides)+4)
	for k, v := range c.Overrides {
		out[k] = v
	}
	put := func(name, v string, set bool) {
		if _, ok := out[name]; !ok && set {
			out[name] = v
		}
	}
	put("retention.ms", strconv.FormatInt(c.RetentionMs, 10), c.RetentionMs != 0)
	put("retention.bytes", strconv.FormatInt(c.RetentionBytes, 10), c.RetentionBytes != 0)
	put("max.message.bytes", strconv.FormatInt(c.MaxMessageBytes, 10), c.MaxMessageBytes != 0)
	put("message.timestamp.type", c.TimestampType, c.TimestampType != "")
	put("cleanup.policy", c.CleanupPolicy, c.CleanupPolicy != "")
	put("delete.retention.ms", strconv.FormatInt(c.DeleteRetentionMs, 10), c.DeleteRetentionMs != 0)
	put("compression.type", c.CompressionType, c.CompressionType != "")
	put("segment.bytes", strconv.FormatInt(c.SegmentBytes, 10), c.SegmentBytes != 0)
	if len(out) == 0 {
		return nil
	}
	return out
}

// TopicConfigValue is one Kafka topic config of a topic as DescribeConfigs
// reports it.
type TopicConfigValue struct {
	Def *TopicConfigDef
	// Value is the value in effect: the override if Set, else Default.
	Value string
	// Set is true when the config is set on the topic (Kafka's
	// DYNAMIC_TOPIC_CONFIG); otherwise the default applies (DEFAULT_CONFIG).
	Set bool
	// Default is the value the topic has when the config is not set: katka's
	// broker default where katka has one, else Kafka's.
	Default string
}

// TopicConfigValues lists every Kafka topic config of cfg, sorted by name,
// with the value in effect and whether it is set on the topic. It needs no
// topic, so CreateTopics' validate_only can describe what it would create.
func (b *Broker) TopicConfigValues(cfg TopicConfig) []TopicConfigValue {
	out := make([]TopicConfigValue, 0, len(topicConfigDefs))
	for i := range topicConfigDefs {
		d := &topicConfigDefs[i]
		def := b.topicConfigDefault(d)
		v, set := cfg.Overrides[d.Name]
		if !set {
			v = def
		}
		out = append(out, TopicConfigValue{Def: d, Value: v, Set: set, Default: def})
	}
	return out
}

// topicConfigDefault is katka's value of a config no topic override sets.
func (b *Broker) topicConfigDefault(d *TopicConfigDef) string {
	df := b.opts.Defaults
	switch d.Name {
	case "retention.ms":
		return strconv.FormatInt(df.RetentionMs, 10)
	case "retention.bytes":
		return strconv.FormatInt(df.RetentionBytes, 10)
	case "max.message.bytes":
		return strconv.FormatInt(df.MaxMessageBytes, 10)
	case "message.timestamp.type":
		return df.TimestampType
	case "cleanup.policy":
		return df.CleanupPolicy
	case "delete.retention.ms":
		return strconv.FormatInt(df.DeleteRetentionMs, 10)
	case "compression.type":
		return df.CompressionType
	case "segment.bytes":
		return strconv.FormatInt(df.SegmentBytes, 10)
	}
	return d.KafkaDefault
}

// DefaultTopicConfig is the config a topic gets for every field it does not
// set: katka.yaml's topics.* defaults over Kafka's.
func (b *Broker) DefaultTopicConfig() TopicConfig { return b.opts.Defaults }

// DataDir is the broker's data directory (Kafka's log.dirs).
func (b *Broker) DataDir() string { return b.opts.DataDir }

// segmentBytes is the segment size a partition of a topic with cfg is opened
// with: the topic's segment.bytes between MinTopicSegmentBytes and the
// broker's segment size (the tail segment lives in memory, so the broker's
// size is the memory bound per partition).
func (b *Broker) segmentBytes(cfg TopicConfig) int {
	max := int64(b.opts.SegmentBytes)
	if max <= 0 {
		max = storage.DefaultSegmentBytes
	}
	v := cfg.SegmentBytes
	if v <= 0 || v > max {
		return int(max)
	}
	if floor := min(MinTopicSegmentBytes, max); v < floor {
		v = floor // never above the broker's own size
	}
	return int(v)
}

// SetTopicOverrides replaces the Kafka configs set on a topic (Kafka's
// dynamic topic configs): configs it does not name revert to their defaults,
// as after Kafka's AlterConfigs. Values must have passed CheckTopicConfig.
// The metadata is durable before it returns; a new segment.bytes applies when
// the partitions next open.
func (b *Broker) SetTopicOverrides(name string, set map[string]string) error {
	if err := CheckTopicOverrides(set); err != nil {
		return fmt.Errorf("alter topic %s: %w", name, err)
	}
	t, err := b.reserve(name, func(t *topic) (int, error) {
		if t == nil {
			return 0, fmt.Errorf("alter topic %s: %w", name, ErrUnknownTopic)
		}
		return 0, nil
	})
	if err != nil {
		return err
	}
	info := t.info
	info.Config = b.resolve(TopicConfig{OnFull: t.info.Config.OnFull, Overrides: cloneMap(set)})
	if err := writeMeta(t.dir, info); err != nil {
		b.finish(name, 0, nil)
		return fmt.Errorf("alter topic %s: %w", name, err)
	}
	b.finish(name, 0, func() { b.topics[name] = &topic{info: info, dir: t.dir, parts: t.parts} })
	return nil
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
