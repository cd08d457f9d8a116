package config

import "time"

// KafkaLimits bounds what Kafka clients can make katka hold: connections, request
// bytes, fetch sizes and producer ids. The names follow Kafka's broker configs
// (max.connections, socket.request.max.bytes, ...); see configs/katka.yaml.
type KafkaLimits struct {
	// MaxConnections caps open Kafka connections in all (Kafka's max.connections).
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps open Kafka connections from one client address
	// (Kafka's max.connections.per.ip).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxRequestBytes is the largest request frame; a larger one closes the
	// connection (Kafka's socket.request.max.bytes).
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// QueuedMaxRequestBytes bounds the bytes of requests being read, decoded or
	// handled at once; a request that does not fit waits (queued.max.request.bytes).
	QueuedMaxRequestBytes ByteSize `yaml:"queued_max_request_bytes"`
	// FetchMaxBytes caps one fetch response whatever the client asks (fetch.max.bytes).
	FetchMaxBytes ByteSize `yaml:"fetch_max_bytes"`
	// FetchPartitionMaxBytes caps the bytes of one partition in a fetch response;
	// the first batch is returned whole even when larger, as in Kafka.
	FetchPartitionMaxBytes ByteSize `yaml:"fetch_partition_max_bytes"`
	// ProducerIDExpiration forgets an idle producer id's state after this long
	// (Kafka's producer.id.expiration.ms).
	ProducerIDExpiration time.Duration `yaml:"producer_id_expiration"`
	// MaxProducerIDs bounds the producer ids whose state is kept; the longest idle
	// is forgotten first.
	MaxProducerIDs int `yaml:"max_producer_ids"`
}

// Groups configures the consumer group coordinator.
type Groups struct {
	// InitialRebalanceDelay is how long the first rebalance of an empty group waits
	// for more members (Kafka's group.initial.rebalance.delay.ms).
	InitialRebalanceDelay time.Duration `yaml:"initial_rebalance_delay"`
	// OffsetsRetention deletes the committed offsets of a group that has been empty
	// this long (Kafka's offsets.retention.minutes).
	OffsetsRetention time.Duration `yaml:"offsets_retention"`
	// MaxGroups caps the consumer groups the coordinator holds.
	MaxGroups int `yaml:"max_groups"`
	// MaxMembers caps the members of one group (Kafka's group.max.size).
	MaxMembers int `yaml:"max_members"`
}

// HTTPLimits bounds what HTTP clients can make katka hold.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's header.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response (long polls included).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxBodyBytes is the largest request body; a larger one is refused with 413.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// MaxInFlightBodyBytes is the memory pool for request bodies of all
	// connections together (like Kafka's queued.max.request.bytes): a body
	// reserves its size before it is read and waits, up to ReadTimeout, while
	// the pool is full. At least MaxBodyBytes, so one body alone always fits.
	MaxInFlightBodyBytes ByteSize `yaml:"max_in_flight_body_bytes"`
	// MaxConnections caps open HTTP connections; more wait to be accepted.
	MaxConnections int `yaml:"max_connections"`
	// FetchMaxBytes caps the record bytes of one records read, whatever max_bytes asks.
	FetchMaxBytes ByteSize `yaml:"fetch_max_bytes"`
	// MaxConsumerInstances caps the REST proxy's v2 consumer instances open at
	// once; one more is refused with 429.
	MaxConsumerInstances int `yaml:"max_consumer_instances"`
	// ConsumerInstanceTimeout deletes a v2 consumer instance not used this long
	// (Confluent's consumer.instance.timeout.ms).
	ConsumerInstanceTimeout time.Duration `yaml:"consumer_instance_timeout"`
}

// Partition limits of the whole broker, checked by Validate.
const (
	// DefaultMaxBrokerPartitions is topics.max_partitions' default.
	DefaultMaxBrokerPartitions = 4096
)

func defaultKafkaLimits() KafkaLimits {
	return KafkaLimits{
		MaxConnections:         1000,
		MaxConnectionsPerIP:    200,
		MaxRequestBytes:        100 * MiB,
		QueuedMaxRequestBytes:  64 * MiB,
		FetchMaxBytes:          55 * MiB,
		FetchPartitionMaxBytes: 10 * MiB,
		ProducerIDExpiration:   24 * time.Hour,
		MaxProducerIDs:         10000,
	}
}

func defaultGroups() Groups {
	return Groups{
		InitialRebalanceDelay: 3 * time.Second,
		OffsetsRetention:      7 * 24 * time.Hour,
		MaxGroups:             10000,
		MaxMembers:            1000,
	}
}

func defaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout:    10 * time.Second,
		ReadTimeout:          60 * time.Second,
		WriteTimeout:         60 * time.Second,
		IdleTimeout:          120 * time.Second,
		MaxBodyBytes:         16 * MiB,
		MaxInFlightBodyBytes: 32 * MiB,
		MaxConnections:       256,
		FetchMaxBytes:        16 * MiB,

		MaxConsumerInstances:    100,
		ConsumerInstanceTimeout: 5 * time.Minute,
	}
}

// limits checks the limits sections.
func (v *validator) limits(c *Config) {
	k := c.Kafka.Limits
	v.atLeast("kafka.limits.max_connections", k.MaxConnections, 1)
	v.atLeast("kafka.limits.max_connections_per_ip", k.MaxConnectionsPerIP, 1)
	v.sizeRange("kafka.limits.max_request_bytes", k.MaxRequestBytes, 1*KiB, 1*GiB)
	v.sizeRange("kafka.limits.queued_max_request_bytes", k.QueuedMaxRequestBytes, 1*KiB, 16*GiB)
	v.sizeRange("kafka.limits.fetch_max_bytes", k.FetchMaxBytes, 1*KiB, 1*GiB)
	v.sizeRange("kafka.limits.fetch_partition_max_bytes", k.FetchPartitionMaxBytes, 1*KiB, 1*GiB)
	v.positive("kafka.limits.producer_id_expiration", k.ProducerIDExpiration)
	v.atLeast("kafka.limits.max_producer_ids", k.MaxProducerIDs, 1)

	g := c.Groups
	if g.InitialRebalanceDelay < 0 {
		v.add("groups.initial_rebalance_delay", "%s is not allowed (allowed: 0s or more)", g.InitialRebalanceDelay)
	}
	v.positive("groups.offsets_retention", g.OffsetsRetention)
	v.atLeast("groups.max_groups", g.MaxGroups, 1)
	v.atLeast("groups.max_members", g.MaxMembers, 1)

	h := c.HTTP.Limits
	v.positive("http.limits.read_header_timeout", h.ReadHeaderTimeout)
	v.positive("http.limits.read_timeout", h.ReadTimeout)
	v.positive("http.limits.write_timeout", h.WriteTimeout)
	v.positive("http.limits.idle_timeout", h.IdleTimeout)
	v.sizeRange("http.limits.max_body_bytes", h.MaxBodyBytes, 1*KiB, 1*GiB)
	v.sizeRange("http.limits.max_in_flight_body_bytes", h.MaxInFlightBodyBytes, 1*KiB, 16*GiB)
	if h.MaxInFlightBodyBytes < h.MaxBodyBytes {
		v.add("http.limits.max_in_flight_body_bytes", "%s is less than http.limits.max_body_bytes %s (one body must always fit)", h.MaxInFlightBodyBytes, h.MaxBodyBytes)
	}
	v.atLeast("http.limits.max_connections", h.MaxConnections, 1)
	v.sizeRange("http.limits.fetch_max_bytes", h.FetchMaxBytes, 1*KiB, 1*GiB)
	v.atLeast("http.limits.max_consumer_instances", h.MaxConsumerInstances, 1)
	v.positive("http.limits.consumer_instance_timeout", h.ConsumerInstanceTimeout)

	t := c.Topics
	if t.MaxPartitions < 1 {
		v.add("topics.max_partitions", "%d is out of range (allowed: 1 or more)", t.MaxPartitions)
	}
}

// atLeast checks an integer lower bound.
func (v *validator) atLeast(path string, n, lo int) {
	if n < lo {
		v.add(path, "%d is out of range (allowed: %d or more)", n, lo)
	}
}

// sizeRange checks a size against lo..hi.
func (v *validator) sizeRange(path string, s, lo, hi ByteSize) {
	if s < lo || s > hi {
		v.add(path, "%s is out of range (allowed: %s..%s)", s, lo, hi)
	}
}
