package mqtt

import (
	_ "embed"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// Config configures the MQTT input (sensors.mqtt).
type Config struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// QoS is the subscription QoS: 0, 1 or 2 (1 and 2 lose nothing).
	QoS int `yaml:"qos"`
	// DeadLetterTopic receives payloads that cannot be mapped, with the reason in a header.
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// MaxMessageBytes is the largest payload written to its topic; larger ones are dead-lettered.
	MaxMessageBytes config.ByteSize `yaml:"max_message_bytes"`
	// BatchMaxMessages bounds the messages written (and then acknowledged) together.
	BatchMaxMessages int `yaml:"batch_max_messages"`
	// BatchWait is the linger (Kafka's linger.ms): how long after its first message a
	// batch may wait for more, so that compression works on many messages at once.
	BatchWait time.Duration `yaml:"batch_wait"`
	// ReconnectMin and ReconnectMax bound the exponential backoff between connection attempts.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// Brokers lists the MQTT brokers; each subscribes to every rule's filter.
	Brokers []BrokerConfig `yaml:"brokers"`
	// Rules map MQTT topic filters to katka topics.
	Rules []RuleConfig `yaml:"rules"`
}

// BrokerConfig is one MQTT broker connection.
type BrokerConfig struct {
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

// RuleConfig maps the MQTT topics matching Filter to a katka topic.
type RuleConfig struct {
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

// sample is this input's documented section of configs/katka.yaml.
//
//go:embed sample.yaml
var sample string

func init() { config.Register("mqtt", DefaultConfig, sample) }

// DefaultConfig returns the built-in config: off, QoS 1, batches of up to 1000.
func DefaultConfig() *Config {
	return &Config{
		QoS:              1,
		DeadLetterTopic:  "mqtt.dead-letter",
		MaxMessageBytes:  1 * config.MiB,
		BatchMaxMessages: 1000,
		BatchWait:        5 * time.Millisecond,
		ReconnectMin:     100 * time.Millisecond,
		ReconnectMax:     30 * time.Second,
	}
}

// ConfigOf returns the mqtt section of s, to read or change in place; a zero
// (disabled) config when s holds none.
func ConfigOf(s config.Sensors) *Config { return config.SectionOf[Config](s, "mqtt") }

// Allowed values of the enumerated settings.
var (
	mqttSchemes      = []string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}
	mqttTLSSchemes   = []string{"ssl", "tls", "mqtts", "wss"}
	mqttFormats      = []string{"raw", "json"}
	timestampFormats = []string{"rfc3339", "unix", "unix_ms", "unix_us", "unix_ns"}
)

// MaxMessageBytes is the largest sensors.mqtt.max_message_bytes (the MQTT limit).
const MaxMessageBytes = 256 * config.MiB

// ValidFilter checks an MQTT topic filter: not empty, '+' and '#' only as whole
// levels and '#' only last.
func ValidFilter(f string) error {
	if f == "" {
		return fmt.Errorf("topic filter is empty (e.g. factory/+/line/+/temp)")
	}
	if len(f) > 65535 {
		return fmt.Errorf("topic filter is %d bytes long (allowed: up to 65535)", len(f))
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: '#' must be the last level", f)
		case l != "+" && l != "#" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("topic filter %q: '+' and '#' must fill a whole level", f)
		case strings.ContainsRune(l, 0):
			return fmt.Errorf("topic filter %q contains a NUL character", f)
		}
	}
	return nil
}

// Validate checks the input's values, one line per problem under path.
func (m *Config) Validate(v *config.Validator, path string, _ *config.Config) {
	if m.QoS < 0 || m.QoS > 2 {
		v.Add(path+".qos", "%d is not allowed (allowed: 0, 1, 2; 1 and 2 lose nothing)", m.QoS)
	}
	v.Topic(path+".dead_letter_topic", m.DeadLetterTopic)
	if m.MaxMessageBytes < 1 || m.MaxMessageBytes > MaxMessageBytes {
		v.Add(path+".max_message_bytes", "%s is out of range (allowed: 1B..%s)", m.MaxMessageBytes, config.ByteSize(MaxMessageBytes))
	}
	if m.BatchMaxMessages < 1 || m.BatchMaxMessages > 65535 {
		v.Add(path+".batch_max_messages", "%d is out of range (allowed: 1..65535)", m.BatchMaxMessages)
	}
	if m.BatchWait < 0 || m.BatchWait > time.Second {
		v.Add(path+".batch_wait", "%s is out of range (allowed: 0s..1s)", m.BatchWait)
	}
	v.Positive(path+".reconnect_min", m.ReconnectMin)
	if m.ReconnectMax < m.ReconnectMin {
		v.Add(path+".reconnect_max", "%s is below reconnect_min %s (allowed: >= reconnect_min)", m.ReconnectMax, m.ReconnectMin)
	}
	if m.Enabled && len(m.Brokers) == 0 {
		v.Add(path+".brokers", "is empty but the input is enabled (add a broker or set enabled: false)")
	}
	if m.Enabled && len(m.Rules) == 0 {
		v.Add(path+".rules", "is empty but the input is enabled (add a rule or set enabled: false)")
	}
	names := make(map[string]string)
	ids := make(map[string]string)
	for i, b := range m.Brokers {
		p := fmt.Sprintf("%s.brokers[%d]", path, i)
		name := b.Name
		if name == "" {
			name = b.URL
		}
		if first, dup := names[name]; dup && name != "" {
			v.Add(p+".name", "%q is already used at %s (broker names must be unique)", name, first)
		} else {
			names[name] = p
		}
		u, err := url.Parse(b.URL)
		switch {
		case b.URL == "":
			v.Add(p+".url", "must not be empty (e.g. tcp://127.0.0.1:1883 or ssl://broker:8883)")
		case err != nil || u.Host == "":
			v.Add(p+".url", "%q is not a URL with a host (e.g. tcp://127.0.0.1:1883)", b.URL)
		case !slices.Contains(mqttSchemes, u.Scheme):
			v.Add(p+".url", "scheme %q is not allowed (allowed: %s)", u.Scheme, strings.Join(mqttSchemes, ", "))
		case !slices.Contains(mqttTLSSchemes, u.Scheme) && (b.CAFile != "" || b.CertFile != "" || b.KeyFile != "" || b.ServerName != "" || b.InsecureSkipVerify):
			v.Add(p+".url", "%q is not TLS but TLS settings are given, which would be ignored (use %s)", b.URL, strings.Join(mqttTLSSchemes, ", "))
		}
		if b.ClientID == "" {
			v.Add(p+".client_id", "must not be empty: a fixed client id keeps the session and its queued messages across restarts")
		} else if first, dup := ids[b.URL+"\x00"+b.ClientID]; dup {
			v.Add(p+".client_id", "%q is already used for the same url at %s (two connections would take each other's session)", b.ClientID, first)
		} else {
			ids[b.URL+"\x00"+b.ClientID] = p
		}
		if b.KeepAlive < 0 {
			v.Add(p+".keep_alive", "%s is negative (allowed: 0 for 30s, or a positive duration)", b.KeepAlive)
		}
		if (b.CertFile == "") != (b.KeyFile == "") {
			v.Add(p+".key_file", "cert_file and key_file must be given together")
		}
		if b.Password != "" && b.Username == "" {
			v.Add(p+".username", "must be set when password is")
		}
	}
	for i, r := range m.Rules {
		p := fmt.Sprintf("%s.rules[%d]", path, i)
		if err := ValidFilter(r.Filter); err != nil {
			v.Add(p+".filter", "%v", err)
		}
		v.Topic(p+".topic", r.Topic)
		v.OptionalPartitions(p+".partitions", r.Partitions)
		if n := len(strings.Split(r.Filter, "/")); r.KeyLevel < -1 || (r.KeyLevel > n && !strings.HasSuffix(r.Filter, "#")) {
			v.Add(p+".key_level", "%d is out of range (allowed: -1 for the whole MQTT topic, 0 for no key, 1..%d for a level of %q)", r.KeyLevel, n, r.Filter)
		}
		v.OptionalOneOf(p+".format", r.Format, mqttFormats)
		if r.TimestampField != "" && r.Format != "json" {
			v.Add(p+".timestamp_field", "needs format: json")
		}
		v.OptionalOneOf(p+".timestamp_format", r.TimestampFormat, timestampFormats)
	}
}
