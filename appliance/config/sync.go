package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sync configures the link to a central Kafka cluster: the uplink mirrors local
// topics there and the downlink mirrors central topics into local ones.
type Sync struct {
	// Enabled turns the link on.
	Enabled bool `yaml:"enabled"`
	// Site identifies this edge site: it names the transactional id, the
	// checkpoints, the origin headers and (with naming: prefixed) central topics.
	Site string `yaml:"site"`
	// Brokers are the central cluster's bootstrap addresses (host:port).
	Brokers []string `yaml:"brokers"`
	// TLS secures the connection to the central cluster.
	TLS SyncTLS `yaml:"tls"`
	// SASL authenticates to the central cluster.
	SASL SyncSASL `yaml:"sasl"`
	// Compression is the codec of mirrored batches: zstd, lz4, snappy, gzip or none.
	Compression string `yaml:"compression"`
	// Delivery is auto (exactly_once when the central cluster has transactions,
	// else at_least_once), exactly_once or at_least_once.
	Delivery string `yaml:"delivery"`
	// TransactionalID is the uplink's Kafka transactional id; "" means katka-sync-<site>.
	TransactionalID string `yaml:"transactional_id"`
	// CheckpointTopic is the central topic holding the uplink's progress.
	CheckpointTopic string `yaml:"checkpoint_topic"`
	// Naming is how central topics are named: prefixed (<site>.<topic>) or same.
	Naming string `yaml:"naming"`
	// CreateTopics creates missing central topics (and the checkpoint topic).
	CreateTopics bool `yaml:"create_topics"`
	// ReplicationFactor of created central topics; -1 is the cluster default.
	ReplicationFactor int `yaml:"replication_factor"`
	// StartFrom is where a partition never mirrored before starts: earliest or latest.
	StartFrom string `yaml:"start_from"`
	// BatchBytes bounds the record bytes of one uplink transaction.
	BatchBytes ByteSize `yaml:"batch_bytes"`
	// MaxBytesPerSec caps the uplink's record bytes per second; 0 is no cap.
	MaxBytesPerSec ByteSize `yaml:"max_bytes_per_sec"`
	// DownlinkMaxBytesPerSec caps the record bytes per second the downlink
	// fetches from the central cluster; 0 is no cap.
	DownlinkMaxBytesPerSec ByteSize `yaml:"downlink_max_bytes_per_sec"`
	// BackoffMin and BackoffMax bound the exponential backoff between reconnects.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// StatusFile is where the link status is written as JSON for `katka sync
	// status`; "" means <data_dir>/sync-status.json.
	StatusFile string `yaml:"status_file"`
	// Uplink lists the local topics mirrored to the central cluster.
	Uplink []SyncUplink `yaml:"uplink"`
	// Downlink lists the central topics mirrored into local topics.
	Downlink []SyncDownlink `yaml:"downlink"`
}

// SyncTLS configures TLS to the central cluster.
type SyncTLS struct {
	// Enabled turns TLS on; the other TLS settings are an error without it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of CAs trusted for the brokers' certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns off certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SyncSASL configures SASL authentication to the central cluster.
type SyncSASL struct {
	// Mechanism is none, plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	// Username and Password are the credentials, both required unless
	// Mechanism is none (and an error with none).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// SyncUplink selects local topics to mirror: one exact name or a regular expression.
type SyncUplink struct {
	// Topic is one local topic name.
	Topic string `yaml:"topic"`
	// Regex selects every local topic whose whole name matches (Go syntax).
	Regex string `yaml:"regex"`
	// Priority orders topics during catch-up: higher goes first.
	Priority int `yaml:"priority"`
}

// SyncDownlink maps one central topic to a local topic.
type SyncDownlink struct {
	// CentralTopic is the topic read from the central cluster.
	CentralTopic string `yaml:"central_topic"`
	// LocalTopic receives the records; "" means the same name. It is created
	// with the central partition count if missing.
	LocalTopic string `yaml:"local_topic"`
	// Priority orders central topics when several have a backlog: a topic is
	// fetched only while no topic of a higher priority has one.
	Priority int `yaml:"priority"`
}

// Allowed values of the sync settings.
var (
	syncCompressions = []string{"zstd", "lz4", "snappy", "gzip", "none"}
	syncDeliveries   = []string{"auto", "exactly_once", "at_least_once"}
	syncNamings      = []string{"prefixed", "same"}
	syncMechanisms   = []string{"none", "plain", "scram-sha-256", "scram-sha-512"}
	syncStartFrom    = []string{"earliest", "latest"}
)

// defaultSync is the sync section of Default(): off, with the settings a link uses.
func defaultSync() Sync {
	return Sync{
		Enabled:           false,
		Compression:       "zstd",
		Delivery:          "auto",
		CheckpointTopic:   "katka.sync.checkpoints",
		Naming:            "prefixed",
		CreateTopics:      true,
		ReplicationFactor: -1,
		StartFrom:         "earliest",
		BatchBytes:        4 * MiB,
		BackoffMin:        200 * time.Millisecond,
		BackoffMax:        30 * time.Second,
		SASL:              SyncSASL{Mechanism: "none"},
	}
}

// sync checks the sync section; the link's own settings are checked even when it
// is disabled, the lists only need content when it is enabled.
func (v *validator) sync(path string, s Sync) {
	v.oneOf(path+".compression", s.Compression, syncCompressions)
	v.oneOf(path+".delivery", s.Delivery, syncDeliveries)
	v.oneOf(path+".naming", s.Naming, syncNamings)
	v.oneOf(path+".start_from", s.StartFrom, syncStartFrom)
	v.oneOf(path+".sasl.mechanism", s.SASL.Mechanism, syncMechanisms)
	if err := ValidTopicName(s.CheckpointTopic); err != nil {
		v.add(path+".checkpoint_topic", "%v", err)
	}
	if s.ReplicationFactor != -1 && (s.ReplicationFactor < 1 || s.ReplicationFactor > 32767) {
		v.add(path+".replication_factor", "%d is out of range (allowed: -1 for the cluster default, or 1..32767)", s.ReplicationFactor)
	}
	if s.BatchBytes < 64*KiB || s.BatchBytes > 256*MiB {
		v.add(path+".batch_bytes", "%s is out of range (allowed: 64KiB..256MiB)", s.BatchBytes)
	}
	v.bandwidthCap(path+".max_bytes_per_sec", s.MaxBytesPerSec)
	v.bandwidthCap(path+".downlink_max_bytes_per_sec", s.DownlinkMaxBytesPerSec)
	v.positive(path+".backoff_min", s.BackoffMin)
	if s.BackoffMax < s.BackoffMin {
		v.add(path+".backoff_max", "%s is below backoff_min %s (allowed: >= backoff_min)", s.BackoffMax, s.BackoffMin)
	}
	if s.Site != "" {
		if err := ValidTopicName(s.Site); err != nil {
			v.add(path+".site", "%q is not allowed: a site id follows the topic name rules (%v)", s.Site, err)
		}
	} else if s.Enabled {
		v.add(path+".site", "must not be empty when sync is enabled (e.g. plant-7)")
	}
	if s.Enabled && len(s.Brokers) == 0 {
		v.add(path+".brokers", "is empty but sync is enabled (e.g. [kafka-1.central:9092])")
	}
	for i, b := range s.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			v.add(fmt.Sprintf("%s.brokers[%d]", path, i), "%q is not a host:port address (e.g. kafka-1.central:9092)", b)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.add(fmt.Sprintf("%s.brokers[%d]", path, i), "%q has port %q (allowed: 1..65535)", b, port)
		}
	}
	if s.SASL.Mechanism != "none" && s.SASL.Mechanism != "" {
		if s.SASL.Username == "" {
			v.add(path+".sasl.username", "must not be empty with mechanism %s", s.SASL.Mechanism)
		}
		if s.SASL.Password == "" {
			v.add(path+".sasl.password", "must not be empty with mechanism %s", s.SASL.Mechanism)
		}
	} else if s.SASL.Username != "" || s.SASL.Password != "" {
		v.add(path+".sasl.mechanism", "is %q but username/password are set: they would not be sent (allowed: plain, scram-sha-256, scram-sha-512; or remove the credentials)", s.SASL.Mechanism)
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		v.add(path+".tls.key_file", "cert_file and key_file must be given together")
	}
	if !s.TLS.Enabled {
		var set []string
		for _, o := range []struct {
			key string
			on  bool
		}{{"ca_file", s.TLS.CAFile != ""}, {"cert_file", s.TLS.CertFile != ""}, {"key_file", s.TLS.KeyFile != ""},
			{"server_name", s.TLS.ServerName != ""}, {"insecure_skip_verify", s.TLS.InsecureSkipVerify}} {
			if o.on {
				set = append(set, o.key)
			}
		}
		switch len(set) {
		case 0:
		case 1:
			v.add(path+".tls.enabled", "is false but %s is set: the link would ignore it and connect in plain text (set tls.enabled: true, or remove it)", set[0])
		default:
			v.add(path+".tls.enabled", "is false but %s are set: the link would ignore them and connect in plain text (set tls.enabled: true, or remove them)", strings.Join(set, ", "))
		}
	}
	if s.Enabled && len(s.Uplink) == 0 && len(s.Downlink) == 0 {
		v.add(path+".uplink", "uplink and downlink are both empty but sync is enabled (list a topic to mirror)")
	}
	for i, u := range s.Uplink {
		p := fmt.Sprintf("%s.uplink[%d]", path, i)
		switch {
		case u.Topic == "" && u.Regex == "":
			v.add(p, "needs topic or regex (e.g. topic: alarms, or regex: 'sensors\\..*')")
		case u.Topic != "" && u.Regex != "":
			v.add(p, "has both topic and regex (allowed: one of them)")
		case u.Topic != "":
			if err := ValidTopicName(u.Topic); err != nil {
				v.add(p+".topic", "%v", err)
			}
		default:
			if _, err := regexp.Compile(u.Regex); err != nil {
				v.add(p+".regex", "%q does not compile: %v", u.Regex, err)
			}
		}
	}
	for i, d := range s.Downlink {
		p := fmt.Sprintf("%s.downlink[%d]", path, i)
		if err := ValidTopicName(d.CentralTopic); err != nil {
			v.add(p+".central_topic", "%v", err)
		}
		if d.LocalTopic != "" {
			if err := ValidTopicName(d.LocalTopic); err != nil {
				v.add(p+".local_topic", "%v", err)
			}
		}
	}
}

// bandwidthCap checks a link's bytes-per-second cap.
func (v *validator) bandwidthCap(path string, c ByteSize) {
	if c < 0 || (c > 0 && c < 1*KiB) {
		v.add(path, "%s is not allowed (allowed: 0 for no cap, or at least 1KiB)", c)
	}
}
