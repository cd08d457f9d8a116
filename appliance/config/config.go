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

// Sensors configures the built-in inputs.
type Sensors struct {
	// Partitioner picks the partition of each record the inputs write: hash (murmur2
	// of the key, as a Kafka Java client; records without a key go round robin),
	// round_robin, or the name of a partitioner plugin instance.
	Partitioner string `yaml:"partitioner"`
	// Simulated generates synthetic readings, so a fresh install shows data at once.
	Simulated Simulated `yaml:"simulated"`
	// MQTT subscribes to MQTT brokers and writes each message durably before acking it.
	MQTT MQTT `yaml:"mqtt"`
	// System reports the host's CPU, memory, disk, network and temperatures.
	System System `yaml:"system"`
	// Modbus polls Modbus TCP devices.
	Modbus Modbus `yaml:"modbus"`
}

// MQTT configures the MQTT input.
type MQTT struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// QoS is the subscription QoS: 0, 1 or 2 (1 and 2 lose nothing).
	QoS int `yaml:"qos"`
	// DeadLetterTopic receives payloads that cannot be mapped, with the reason in a header.
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// MaxMessageBytes is the largest payload written to its topic; larger ones are dead-lettered.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// BatchMaxMessages bounds the messages written (and then acknowledged) together.
	BatchMaxMessages int `yaml:"batch_max_messages"`
	// BatchWait is the linger (Kafka's linger.ms): how long after its first message a
	// batch may wait for more, so that compression works on many messages at once.
	BatchWait time.Duration `yaml:"batch_wait"`
	// ReconnectMin and ReconnectMax bound the exponential backoff between connection attempts.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// Brokers lists the MQTT brokers; each subscribes to every rule's filter.
	Brokers []MQTTBroker `yaml:"brokers"`
	// Rules map MQTT topic filters to katka topics.
	Rules []MQTTRule `yaml:"rules"`
}

// MQTTBroker is one MQTT broker connection.
type MQTTBroker struct {
	// Name labels the connection in logs and metrics; empty means the URL.
	Name string `yaml:"name"`
	// URL is tcp://host:port, or ssl://, tls://, mqtts:// for TLS.
	URL string `yaml:"url"`
	// ClientID is the fixed MQTT client id that keeps the session across restarts.
	ClientID string `yaml:"client_id"`
	// Username and Password authenticate the connection when set.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// KeepAlive is the MQTT keep-alive; 0 means 30s.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// CAFile is a PEM file of CAs trusted for the broker's certificate (TLS).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key (TLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns off certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// MQTTRule maps the MQTT topics matching Filter to a katka topic.
type MQTTRule struct {
	// Filter is an MQTT topic filter with + and # wildcards.
	Filter string `yaml:"filter"`
	// Topic is the katka topic receiving the messages (created if missing).
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created; 0 means
	// topics.default_partitions.
	Partitions int32 `yaml:"partitions"`
	// KeyLevel takes the record key from this MQTT topic level (1 is the first);
	// 0 means no key and -1 the whole MQTT topic.
	KeyLevel int `yaml:"key_level"`
	// Format is raw (default) or json (invalid JSON is dead-lettered).
	Format string `yaml:"format"`
	// TimestampField names the JSON field holding the record timestamp (json only).
	TimestampField string `yaml:"timestamp_field"`
	// TimestampFormat is how TimestampField is written: rfc3339, unix, unix_ms,
	// unix_us or unix_ns; empty means rfc3339 for strings and unix_ms for numbers.
	TimestampFormat string `yaml:"timestamp_format"`
}

// System configures the host metrics input.
type System struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// Topic receives one JSON record per interval, keyed by host name.
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Interval is the time between two readings.
	Interval time.Duration `yaml:"interval"`
	// Collect lists the groups read: cpu, memory, disk, network, temperature.
	Collect []string `yaml:"collect"`
	// DiskPaths lists the mount points reported; empty means every physical disk.
	DiskPaths []string `yaml:"disk_paths"`
}

// Modbus configures the Modbus TCP polling input.
type Modbus struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// Topic receives one JSON record per register reading.
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Interval is the default time between two polls of a device.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one request to a device.
	Timeout time.Duration `yaml:"timeout"`
	// Devices lists the polled devices.
	Devices []ModbusDevice `yaml:"devices"`
}

// ModbusDevice is one Modbus TCP device.
type ModbusDevice struct {
	// Name identifies the device; it starts every record key.
	Name string `yaml:"name"`
	// URL is tcp://host:port.
	URL string `yaml:"url"`
	// UnitID is the Modbus unit (slave) id, 0..255.
	UnitID int `yaml:"unit_id"`
	// Interval overrides modbus.interval when not 0.
	Interval time.Duration `yaml:"interval"`
	// Registers lists the readings taken each poll.
	Registers []ModbusRegister `yaml:"registers"`
}

// ModbusRegister is one reading: a typed value at a register address.
type ModbusRegister struct {
	// Name identifies the reading within its device.
	Name string `yaml:"name"`
	// Table is holding or input.
	Table string `yaml:"table"`
	// Address is the first register's 0-based address.
	Address int `yaml:"address"`
	// Type is int16, uint16, int32, uint32 or float32.
	Type string `yaml:"type"`
	// ByteOrder is big (default) or little: the byte order within each register.
	ByteOrder string `yaml:"byte_order"`
	// WordOrder is high_first (default) or low_first: the register order of 32-bit values.
	WordOrder string `yaml:"word_order"`
	// Scale multiplies the raw value; 0 means 1.
	Scale float64 `yaml:"scale"`
	// Offset is added after scaling.
	Offset float64 `yaml:"offset"`
	// Unit is carried in each reading.
	Unit string `yaml:"unit"`
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
