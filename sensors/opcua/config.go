package opcua

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/katka-io/katka/appliance/config"
)

// Config configures the OPC UA input (sensors.opcua).
type Config struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// Topic receives one JSON record per data change (created if missing).
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Servers lists the OPC UA servers and the nodes monitored on each.
	Servers []ServerConfig `yaml:"servers"`
	// BatchMaxRecords bounds the records written together.
	BatchMaxRecords int `yaml:"batch_max_records"`
	// BatchWait is how long a batch may wait for more notifications after its first.
	BatchWait time.Duration `yaml:"batch_wait"`
}

// ServerConfig is one OPC UA server connection with one subscription.
type ServerConfig struct {
	// Name labels the server in record keys, logs and metrics.
	Name string `yaml:"name"`
	// Endpoint is opc.tcp://host:port[/path].
	Endpoint string `yaml:"endpoint"`
	// SecurityPolicy is None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss.
	SecurityPolicy string `yaml:"security_policy"`
	// SecurityMode is None, Sign or SignAndEncrypt.
	SecurityMode string `yaml:"security_mode"`
	// Auth is anonymous, username or certificate.
	Auth string `yaml:"auth"`
	// Username and Password are the credentials of auth: username.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// CertFile and KeyFile are katka's application certificate (PEM or DER) and
	// RSA key, needed by every policy but None and by auth: certificate.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// IdentityCertFile and IdentityKeyFile are the user certificate and RSA key
	// of auth: certificate; empty means the application certificate.
	IdentityCertFile string `yaml:"identity_cert_file"`
	IdentityKeyFile  string `yaml:"identity_key_file"`
	// PublishInterval is the subscription's publishing interval.
	PublishInterval time.Duration `yaml:"publish_interval"`
	// Nodes are the monitored items.
	Nodes []NodeConfig `yaml:"nodes"`
}

// NodeConfig is one monitored item.
type NodeConfig struct {
	// NodeID is the node's id, e.g. ns=2;s=Line1.Temperature.
	NodeID string `yaml:"node_id"`
	// BrowsePath names the node by the browse names on the way to it from the
	// Objects folder, e.g. 2:Line1/2:Temperature (namespace index:name; no
	// index is namespace 0); katka resolves it on every connect. Set either
	// node_id or browse_path.
	BrowsePath string `yaml:"browse_path"`
	// Name ends the record key; empty means the node id or browse path.
	Name string `yaml:"name"`
	// SamplingInterval is how often the server samples the value; 0 is the
	// publish interval, -1 the fastest the server offers.
	SamplingInterval time.Duration `yaml:"sampling_interval"`
	// QueueSize is how many changes the server keeps between publishes.
	QueueSize int `yaml:"queue_size"`
	// Deadband is an absolute deadband: smaller changes are not reported (0: every change).
	Deadband float64 `yaml:"deadband"`
}

// key is the node's record key name: its name, else its node id or browse path.
func (n NodeConfig) key() string {
	switch {
	case n.Name != "":
		return n.Name
	case n.NodeID != "":
		return n.NodeID
	}
	return n.BrowsePath
}

// MaxBrowsePathElements bounds the elements of a browse path.
const MaxBrowsePathElements = 32

// ParseBrowsePath splits a browse path (2:Line1/2:Temperature) into its
// qualified names: "ns:name" elements separated by "/", where an element
// without a numeric namespace index before its first ":" is in namespace 0.
func ParseBrowsePath(p string) ([]*ua.QualifiedName, error) {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil, errors.New("is empty")
	}
	elems := strings.Split(p, "/")
	if len(elems) > MaxBrowsePathElements {
		return nil, fmt.Errorf("has %d elements (allowed: up to %d)", len(elems), MaxBrowsePathElements)
	}
	out := make([]*ua.QualifiedName, 0, len(elems))
	for i, e := range elems {
		qn := &ua.QualifiedName{Name: e}
		if ns, name, ok := strings.Cut(e, ":"); ok {
			if n, err := strconv.ParseUint(ns, 10, 16); err == nil {
				qn = &ua.QualifiedName{NamespaceIndex: uint16(n), Name: name}
			}
		}
		if qn.Name == "" {
			return nil, fmt.Errorf("element %d has no browse name", i+1)
		}
		out = append(out, qn)
	}
	return out, nil
}

// sample is this input's documented section of configs/katka.yaml.
//
//go:embed sample.yaml
var sample string

func init() { config.Register("opcua", DefaultConfig, sample) }

// DefaultConfig returns the built-in config: off.
func DefaultConfig() *Config {
	return &Config{
		Topic:           "sensors.opcua",
		Partitions:      3,
		BatchMaxRecords: 10000,
		BatchWait:       10 * time.Millisecond,
	}
}

// ConfigOf returns the opcua section of s, to read or change in place; a zero
// (disabled) config when s holds none.
func ConfigOf(s config.Sensors) *Config { return config.SectionOf[Config](s, "opcua") }

// Allowed values of the enumerated settings.
var (
	policies = []string{"None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}
	modes    = []string{"None", "Sign", "SignAndEncrypt"}
	auths    = []string{"anonymous", "username", "certificate"}
)

// Limits of the config.
const (
	MaxBatchRecords = 100000 // MaxBatchRecords is the largest batch_max_records.
	MaxQueueSize    = 10000  // MaxQueueSize is the largest nodes[].queue_size.
	MaxNodes        = 100000 // MaxNodes is the most monitored items of one server.
)

// Validate checks the input's values, one line per problem under path.
func (c *Config) Validate(v *config.Validator, path string, _ *config.Config) {
	v.Topic(path+".topic", c.Topic)
	v.Partitions(path+".partitions", c.Partitions)
	if c.Enabled && len(c.Servers) == 0 {
		v.Add(path+".servers", "is empty but the input is enabled (add a server or set enabled: false)")
	}
	names := map[string]string{}
	for i, s := range c.Servers {
		p := fmt.Sprintf("%s.servers[%d]", path, i)
		if s.Name == "" {
			v.Add(p+".name", "must not be empty (it starts every record key)")
		} else if first, dup := names[s.Name]; dup {
			v.Add(p+".name", "%q is already used at %s (server names must be unique)", s.Name, first)
		} else {
			names[s.Name] = p
		}
		if u, err := url.Parse(s.Endpoint); err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
			v.Add(p+".endpoint", "%q is not allowed (allowed: opc.tcp://host:port, e.g. opc.tcp://10.0.0.7:4840)", s.Endpoint)
		}
		v.OneOf(p+".security_policy", s.SecurityPolicy, policies)
		v.OneOf(p+".security_mode", s.SecurityMode, modes)
		if (s.SecurityPolicy == "None") != (s.SecurityMode == "None") && s.SecurityPolicy != "" && s.SecurityMode != "" {
			v.Add(p+".security_mode", "%s does not go with security_policy %s (None goes with None; the others need Sign or SignAndEncrypt)", s.SecurityMode, s.SecurityPolicy)
		}
		v.OneOf(p+".auth", s.Auth, auths)
		if s.Auth == "username" && s.Username == "" {
			v.Add(p+".username", "must be set with auth: username")
		}
		if (s.SecurityPolicy != "None" || s.Auth == "certificate") && (s.CertFile == "" || s.KeyFile == "") {
			v.Add(p+".cert_file", "cert_file and key_file are needed with security_policy %s and auth %s", s.SecurityPolicy, s.Auth)
		}
		if (s.IdentityCertFile == "") != (s.IdentityKeyFile == "") {
			v.Add(p+".identity_cert_file", "identity_cert_file and identity_key_file go together (or leave both empty to use cert_file)")
		}
		v.Positive(p+".publish_interval", s.PublishInterval)
		if len(s.Nodes) == 0 {
			v.Add(p+".nodes", "is empty (list at least one node)")
		}
		if len(s.Nodes) > MaxNodes {
			v.Add(p+".nodes", "has %d entries (allowed: up to %d)", len(s.Nodes), MaxNodes)
		}
		keys := map[string]string{}
		for j, n := range s.Nodes {
			np := fmt.Sprintf("%s.nodes[%d]", p, j)
			switch {
			case n.NodeID != "" && n.BrowsePath != "":
				v.Add(np+".browse_path", "is set with node_id (set one of them)")
			case n.BrowsePath != "":
				if _, err := ParseBrowsePath(n.BrowsePath); err != nil {
					v.Add(np+".browse_path", "%q: %v (e.g. 2:Line1/2:Temperature)", n.BrowsePath, err)
				}
			default:
				if _, err := ua.ParseNodeID(n.NodeID); err != nil || n.NodeID == "" {
					v.Add(np+".node_id", "%q is not a node id (e.g. ns=2;s=Line1.Temperature or ns=3;i=1001; or set browse_path)", n.NodeID)
				}
			}
			key := n.key()
			if first, dup := keys[key]; dup {
				v.Add(np+".name", "%q is already used at %s (record keys must be unique per server)", key, first)
			} else {
				keys[key] = np
			}
			if n.SamplingInterval < -time.Millisecond || (n.SamplingInterval < 0 && n.SamplingInterval != -time.Millisecond) {
				v.Add(np+".sampling_interval", "%s is not allowed (allowed: -1ms for the fastest, 0 for publish_interval, or a positive duration)", n.SamplingInterval)
			}
			if n.QueueSize < 0 || n.QueueSize > MaxQueueSize {
				v.Add(np+".queue_size", "%d is out of range (allowed: 0..%d)", n.QueueSize, MaxQueueSize)
			}
			if !(n.Deadband >= 0) || math.IsInf(n.Deadband, 0) {
				v.Add(np+".deadband", "%v is not allowed (allowed: a number >= 0)", n.Deadband)
			}
		}
	}
	if c.BatchMaxRecords < 1 || c.BatchMaxRecords > MaxBatchRecords {
		v.Add(path+".batch_max_records", "%d is out of range (allowed: 1..%d)", c.BatchMaxRecords, MaxBatchRecords)
	}
	if c.BatchWait < 0 || c.BatchWait > time.Second {
		v.Add(path+".batch_wait", "%s is out of range (allowed: 0s..1s)", c.BatchWait)
	}
}
