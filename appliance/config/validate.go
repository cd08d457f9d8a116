package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits enforced by Validate.
const (
	MinSegmentBytes = 64 * KiB // MinSegmentBytes is the smallest storage.segment_bytes.
	MaxSegmentBytes = 1 * GiB  // MaxSegmentBytes is the largest storage.segment_bytes.
	MaxSegmentCache = 64       // MaxSegmentCache is the largest storage.segment_cache.
	MaxSyncfsMin    = 1000000  // MaxSyncfsMin is the largest storage.syncfs_min.
	MaxPartitions   = 10000    // MaxPartitions is the largest partition count of one topic.
	MaxTopicNameLen = 249      // MaxTopicNameLen is Kafka's limit on a topic name's length.
	// MaxReplicationFactor is the largest topics.default_replication_factor:
	// a cell is two to five gateways, and a few more as non-voters.
	MaxReplicationFactor = 16
)

// Allowed values of the enumerated settings, in the order messages list them.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
	fsyncModes = []string{"always", "interval"}
)

// Validate checks every value of c. It returns nil, or one line per problem (joined with
// errors.Join), each naming the field path and what is allowed, e.g.
//
//	storage.fsync: "sometimes" is not allowed (allowed: always, interval)
func (c *Config) Validate() error {
	var v validator

	if strings.TrimSpace(c.DataDir) == "" {
		v.add("data_dir", "must not be empty (e.g. ./data)")
	}

	v.oneOf("log.level", c.Log.Level, logLevels)
	v.oneOf("log.format", c.Log.Format, logFormats)

	v.listenAddr("kafka.addr", c.Kafka.Addr)
	v.advertisedAddr("kafka.advertised_addr", c.Kafka.AdvertisedAddr)
	v.listenAddr("http.addr", c.HTTP.Addr)

	s := c.Storage
	v.oneOf("storage.fsync", s.Fsync, fsyncModes)
	if s.Fsync == "interval" && s.FsyncInterval <= 0 {
		v.add("storage.fsync_interval", "%s must be positive when storage.fsync is interval (e.g. 1s)", s.FsyncInterval)
	}
	if s.SyncfsMin < 0 || s.SyncfsMin > MaxSyncfsMin {
		v.add("storage.syncfs_min", "%d is out of range (allowed: 0 for never, or 1..%d)", s.SyncfsMin, MaxSyncfsMin)
	}
	if s.SegmentBytes < MinSegmentBytes || s.SegmentBytes > MaxSegmentBytes {
		v.add("storage.segment_bytes", "%s is out of range (allowed: %s..%s)", s.SegmentBytes, MinSegmentBytes, MaxSegmentBytes)
	}
	if s.SegmentCache < 1 || s.SegmentCache > MaxSegmentCache {
		v.add("storage.segment_cache", "%d is out of range (allowed: 1..%d)", s.SegmentCache, MaxSegmentCache)
	}
	v.positive("storage.retention_check_interval", s.RetentionCheckInterval)
	if s.Quota < 0 {
		v.add("storage.quota", "%s is not allowed (allowed: 0 for no quota, or a positive size)", s.Quota)
	}
	if s.MinFree < 0 {
		v.add("storage.min_free", "%s is not allowed (allowed: 0 for no watermark, or a positive size)", s.MinFree)
	}

	t := c.Topics
	v.partitions("topics.default_partitions", t.DefaultPartitions)
	switch rf := t.DefaultReplicationFactor; {
	case rf < 1 || rf > MaxReplicationFactor:
		v.add("topics.default_replication_factor", "%d is out of range (allowed: 1..%d)", rf, MaxReplicationFactor)
	case rf > 1 && !c.Cell.Enabled():
		v.add("topics.default_replication_factor", "%d needs a cell (allowed without a cell: 1)", rf)
	}
	if t.RetentionBytes != -1 && t.RetentionBytes < 1 {
		v.add("topics.retention_bytes", "%s is not allowed (allowed: -1 for unlimited, or a positive size)", t.RetentionBytes)
	}
	v.oneOf("topics.on_full", t.OnFull, onFullPolicies)
	firstUse := make(map[string]string)
	for i, spec := range t.Create {
		p := fmt.Sprintf("topics.create[%d]", i)
		if err := ValidTopicName(spec.Name); err != nil {
			v.add(p+".name", "%v", err)
		} else if first, dup := firstUse[spec.Name]; dup {
			v.add(p+".name", "%q is already listed at %s (topic names must be unique)", spec.Name, first)
		} else {
			firstUse[spec.Name] = p
		}
		v.partitions(p+".partitions", spec.Partitions)
		if spec.RetentionBytes < -1 {
			v.add(p+".retention_bytes", "%s is not allowed (allowed: 0 to use topics.retention_bytes, -1 for unlimited, or a positive size)", spec.RetentionBytes)
		}
		if spec.OnFull != "" {
			v.oneOf(p+".on_full", spec.OnFull, onFullPolicies)
		}
		if spec.CleanupPolicy != "" {
			v.oneOf(p+".cleanup_policy", spec.CleanupPolicy, cleanupPolicies)
		}
		if spec.CompressionType != "" {
			v.oneOf(p+".compression_type", spec.CompressionType, compressionTypes)
		}
	}

	v.sensors(c)
	v.sync("sync", c.Sync)
	v.firmware("firmware", c.Firmware)
	v.plugins("plugins", c.Plugins)
	v.cell("cell", c.Cell, c.Kafka)
	v.limits(c)
	v.memory(c)
	v.security(c)
	v.acl(c.Auth)
	v.httpAuth(c.HTTP)

	return errors.Join(v.errs...)
}

var (
	onFullPolicies  = []string{"reject", "drop_oldest"}
	cleanupPolicies = []string{"delete", "compact", "compact,delete"}
	// compressionTypes are Kafka's compression.type values.
	compressionTypes = []string{"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"}
)

// ValidTopicName reports whether name is a topic name Kafka accepts: 1 to 249
// characters from [a-zA-Z0-9._-], and neither "." nor "..".
func ValidTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty (allowed: 1..249 characters from a-z, A-Z, 0-9, '.', '_', '-')")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > MaxTopicNameLen:
		return fmt.Errorf("topic name is %d characters long (allowed: 1..%d)", len(name), MaxTopicNameLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("topic name %q contains %q (allowed: a-z, A-Z, 0-9, '.', '_', '-')", name, r)
		}
	}
	return nil
}

// validator collects one-line problems.
type validator struct {
	errs []error
}

// add records a problem with the value at path.
func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// oneOf checks that val is one of allowed.
func (v *validator) oneOf(path, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.add(path, "%q is not allowed (allowed: %s)", val, strings.Join(allowed, ", "))
	}
}

// positive checks that a duration is above zero.
func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.add(path, "%s must be positive (e.g. 1s)", d)
	}
}

// partitions checks a partition count.
func (v *validator) partitions(path string, n int32) {
	if n < 1 || n > MaxPartitions {
		v.add(path, "%d is out of range (allowed: 1..%d)", n, MaxPartitions)
	}
}

// listenAddr checks a listen address: empty (disabled) or host:port, the host may be
// empty for all interfaces and port 0 picks a free port.
func (v *validator) listenAddr(path, addr string) {
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, "%q is not a host:port address (e.g. 127.0.0.1:9092, or empty to disable)", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.add(path, "%q has port %q (allowed: 0..65535)", addr, port)
	}
}

// advertisedAddr checks the address clients are told to use: empty (use the listen
// address) or host:port with a host and a non-zero port.
func (v *validator) advertisedAddr(path, addr string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		v.add(path, "%q is not a host:port address clients can dial (e.g. broker1.local:9092, or empty to use kafka.addr)", addr)
		return
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		v.add(path, "%q has port %q (allowed: 1..65535)", addr, port)
	}
}
