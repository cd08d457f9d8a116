// Package config holds katka's YAML configuration: the defaults, loading a file,
// and validation that names the offending field path before any data is touched.
package config

import "time"

// Config is the whole katka configuration as read from YAML.
type Config struct {
	// DataDir is where topics, partitions and broker metadata live.
	DataDir string `yaml:"data_dir"`
	// Log controls katka's own log output.
	Log Log `yaml:"log"`
	// Kafka is the Kafka wire-protocol listener.
	Kafka Kafka `yaml:"kafka"`
	// HTTP is the health, metrics and admin listener.
	HTTP HTTP `yaml:"http"`
	// Storage tunes the partition logs.
	Storage Storage `yaml:"storage"`
	// Topics holds topic defaults and topics created at start.
	Topics Topics `yaml:"topics"`
	// Sensors configures the built-in inputs.
	Sensors Sensors `yaml:"sensors"`
	// Plugins configures out-of-process plugins (plugins.go).
	Plugins Plugins `yaml:"plugins"`
	// Sync mirrors topics to and from a central Kafka cluster (sync.go).
	Sync Sync `yaml:"sync"`
	// Groups configures the consumer group coordinator (limits.go).
	Groups Groups `yaml:"groups"`
	// Firmware is the edge firmware store (firmware.go).
	Firmware Firmware `yaml:"firmware"`
	// Cell makes this katka one node of a cell of neighbouring gateways (cell.go).
	Cell Cell `yaml:"cell"`
	// Auth configures super users and the bootstrap admin (auth.go), and
	// authorization: ACL enforcement and bootstrap ACLs (acl.go).
	Auth Auth `yaml:"auth"`
	// MemoryLimit is the Go runtime's soft memory limit: 0 derives it from
	// the client budgets, -1 means none (memory.go).
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// Log selects katka's log level and format.
type Log struct {
	// Level is one of debug, info, warn, error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Kafka configures the Kafka protocol listener.
type Kafka struct {
	// Addr is the listen address, host:port; empty disables the listener.
	Addr string `yaml:"addr"`
	// AdvertisedAddr is the host:port clients are told to connect to; empty means Addr.
	AdvertisedAddr string `yaml:"advertised_addr"`
	// AllowUnauthenticated lets Addr, a plaintext listener, bind beyond loopback.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// Listeners are further listeners with TLS and SASL (auth.go).
	Listeners []KafkaListener `yaml:"listeners"`
	// Limits bounds what Kafka clients can make katka hold (limits.go).
	Limits KafkaLimits `yaml:"limits"`
}

// HTTP configures the HTTP listener (/healthz, /metrics, /v1 admin API).
type HTTP struct {
	// Addr is the listen address, host:port; empty disables the listener.
	Addr string `yaml:"addr"`
	// AllowUnauthenticated lets Addr bind beyond loopback without authentication.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// Limits bounds what HTTP clients can make katka hold (limits.go).
	Limits HTTPLimits `yaml:"limits"`
	// TLS serves HTTPS from PEM files, optionally with client certificates (http_auth.go).
	TLS HTTPTLS `yaml:"tls"`
	// Tokens are the bearer tokens accepted; none configured leaves the API open.
	Tokens []HTTPToken `yaml:"tokens"`
	// MetricsAuth makes /metrics need a credential too (by default it is open).
	MetricsAuth bool `yaml:"metrics_auth"`
}

// Storage tunes durability and the on-disk layout of partition logs.
type Storage struct {
	// Fsync is "always" (acknowledge after fsync, group commit) or "interval".
	Fsync string `yaml:"fsync"`
	// FsyncInterval is how often data is flushed when Fsync is "interval".
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// SyncfsMin is the fewest partitions flushing at once for which katka
	// flushes the data directory's filesystem with one syncfs instead of one
	// fdatasync per partition file; 0 never uses syncfs.
	SyncfsMin int `yaml:"syncfs_min"`
	// SegmentBytes is the size at which a partition's log rolls to a new segment file.
	SegmentBytes ByteSize `yaml:"segment_bytes"`
	// SegmentCache is how many sealed segments per partition are cached in memory.
	SegmentCache int `yaml:"segment_cache"`
	// RetentionCheckInterval is how often retention runs in the background.
	RetentionCheckInterval time.Duration `yaml:"retention_check_interval"`
	// Quota caps the bytes of all partition logs in the data directory; 0 is none.
	Quota ByteSize `yaml:"quota"`
	// MinFree is the free-space watermark of the data directory's disk: below it
	// the disk counts as full. 0 is none.
	MinFree ByteSize `yaml:"min_free"`
}

// Topics holds the defaults for new topics and the topics created at start.
type Topics struct {
	// AutoCreate creates a topic on first produce or metadata request.
	AutoCreate bool `yaml:"auto_create"`
	// DefaultPartitions is the partition count of auto-created topics.
	DefaultPartitions int32 `yaml:"default_partitions"`
	// DefaultReplicationFactor is the replication factor of topics created in
	// a cell without one (Kafka CreateTopics with -1, auto-create): 1..
	// MaxReplicationFactor, at most 1 without a cell.
	DefaultReplicationFactor int16 `yaml:"default_replication_factor"`
	// Retention is the default retention.ms; 0 or negative keeps data forever.
	Retention time.Duration `yaml:"retention"`
	// RetentionBytes is the default retention.bytes per partition; -1 is unlimited.
	RetentionBytes ByteSize `yaml:"retention_bytes"`
	// OnFull is what producing to a topic does when the disk is full: reject or drop_oldest.
	OnFull string `yaml:"on_full"`
	// MaxPartitions caps the partitions of all topics together; a create that would
	// pass it is refused (Kafka's POLICY_VIOLATION).
	MaxPartitions int `yaml:"max_partitions"`
	// Create lists topics ensured to exist at start.
	Create []TopicSpec `yaml:"create"`
}

// TopicSpec describes one topic created at start if it does not exist.
type TopicSpec struct {
	// Name is the topic name (Kafka rules: [a-zA-Z0-9._-], at most 249).
	Name string `yaml:"name"`
	// Partitions is the partition count (at least 1).
	Partitions int32 `yaml:"partitions"`
	// Retention overrides topics.retention for this topic when non-zero.
	Retention time.Duration `yaml:"retention"`
	// RetentionBytes overrides topics.retention_bytes for this topic when non-zero.
	RetentionBytes ByteSize `yaml:"retention_bytes"`
	// OnFull overrides topics.on_full for this topic when set.
	OnFull string `yaml:"on_full"`
	// CleanupPolicy is delete (default), compact, or "compact,delete".
	CleanupPolicy string `yaml:"cleanup_policy"`
	// CompressionType is the topic's compression.type: producer (default:
	// batches stored as sent; katka's own writes uncompressed), uncompressed,
	// gzip, snappy, lz4 or zstd (every batch stored with that codec).
	CompressionType string `yaml:"compression_type"`
}

// Sensors configures the inputs: the partitioner they share, and one section
// per registered input kind (sensors.<name>), each decoded into and validated by
// the input's own config type (see InputConfig and AddInput).
type Sensors struct {
	// Partitioner picks the partition of each record the inputs write: hash (murmur2
	// of the key, as a Kafka Java client; records without a key go round robin),
	// round_robin, or the name of a partitioner plugin instance.
	Partitioner string `yaml:"partitioner"`
	// Inputs holds the config of every registered input kind by name.
	Inputs map[string]InputConfig `yaml:"-"`
}
