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
}

// HTTP configures the HTTP listener (/healthz, /metrics, /v1 admin API).
type HTTP struct {
	// Addr is the listen address, host:port; empty disables the listener.
	Addr string `yaml:"addr"`
}

// Storage tunes durability and the on-disk layout of partition logs.
type Storage struct {
	// Fsync is "always" (acknowledge after fsync, group commit) or "interval".
	Fsync string `yaml:"fsync"`
	// FsyncInterval is how often data is flushed when Fsync is "interval".
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// SegmentBytes is the size at which a partition's log rolls to a new segment file.
	SegmentBytes ByteSize `yaml:"segment_bytes"`
	// SegmentCache is how many sealed segments per partition are cached in memory.
	SegmentCache int `yaml:"segment_cache"`
	// RetentionCheckInterval is how often retention runs in the background.
	RetentionCheckInterval time.Duration `yaml:"retention_check_interval"`
}

// Topics holds the defaults for new topics and the topics created at start.
type Topics struct {
	// AutoCreate creates a topic on first produce or metadata request.
	AutoCreate bool `yaml:"auto_create"`
	// DefaultPartitions is the partition count of auto-created topics.
	DefaultPartitions int32 `yaml:"default_partitions"`
	// Retention is the default retention.ms; 0 or negative keeps data forever.
	Retention time.Duration `yaml:"retention"`
	// RetentionBytes is the default retention.bytes per partition; -1 is unlimited.
	RetentionBytes ByteSize `yaml:"retention_bytes"`
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
}

// Sensors configures the built-in inputs.
type Sensors struct {
	// Simulated generates synthetic readings, so a fresh install shows data at once.
	Simulated Simulated `yaml:"simulated"`
}

// Simulated configures the simulated sensor source.
type Simulated struct {
	// Enabled turns the source on.
	Enabled bool `yaml:"enabled"`
	// Topic receives the readings (created if missing).
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Interval is the time between readings of one sensor.
	Interval time.Duration `yaml:"interval"`
	// Sensors lists the simulated sensors.
	Sensors []SimSensor `yaml:"sensors"`
}

// SimSensor is one simulated signal.
type SimSensor struct {
	// ID is the sensor id, used as the record key.
	ID string `yaml:"id"`
	// Kind is one of sine, random_walk, step, counter.
	Kind string `yaml:"kind"`
	// Min and Max bound the signal.
	Min float64 `yaml:"min"`
	Max float64 `yaml:"max"`
	// Period is the period of sine and step signals.
	Period time.Duration `yaml:"period"`
	// Noise is the standard deviation of gaussian noise added to each reading.
	Noise float64 `yaml:"noise"`
	// Unit is carried in each reading, e.g. "C" or "bar".
	Unit string `yaml:"unit"`
}
