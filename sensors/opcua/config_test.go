package opcua

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// TestValidate checks that each bad value gives one line naming its field path.
func TestValidate(t *testing.T) {
	node := func(c *Config) *NodeConfig { return &c.Servers[0].Nodes[0] }
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"both ids", func(c *Config) { node(c).BrowsePath = "2:Line1/2:T" }, "sensors.opcua.servers[0].nodes[0].browse_path: is set with node_id (set one of them)"},
		{"no id", func(c *Config) { node(c).NodeID = "" }, `sensors.opcua.servers[0].nodes[0].node_id: "" is not a node id (e.g. ns=2;s=Line1.Temperature or ns=3;i=1001; or set browse_path)`},
		{"empty path element", func(c *Config) { *node(c) = NodeConfig{BrowsePath: "2:Line1//2:T"} },
			`sensors.opcua.servers[0].nodes[0].browse_path: "2:Line1//2:T": element 2 has no browse name (e.g. 2:Line1/2:Temperature)`},
		{"no browse name", func(c *Config) { *node(c) = NodeConfig{BrowsePath: "2:"} },
			`sensors.opcua.servers[0].nodes[0].browse_path: "2:": element 1 has no browse name (e.g. 2:Line1/2:Temperature)`},
		{"path too long", func(c *Config) { *node(c) = NodeConfig{BrowsePath: strings.Repeat("a/", MaxBrowsePathElements) + "a"} },
			fmt.Sprintf(`sensors.opcua.servers[0].nodes[0].browse_path: %q: has 33 elements (allowed: up to 32) (e.g. 2:Line1/2:Temperature)`, strings.Repeat("a/", MaxBrowsePathElements)+"a")},
		{"same key", func(c *Config) {
			c.Servers[0].Nodes = []NodeConfig{{BrowsePath: "2:A", Name: "x"}, {NodeID: "ns=2;s=B", Name: "x"}}
		}, `sensors.opcua.servers[0].nodes[1].name: "x" is already used at sensors.opcua.servers[0].nodes[0] (record keys must be unique per server)`},
		{"identity half", func(c *Config) { c.Servers[0].IdentityCertFile = "user.crt" },
			"sensors.opcua.servers[0].identity_cert_file: identity_cert_file and identity_key_file go together (or leave both empty to use cert_file)"},
		{"queue", func(c *Config) { node(c).QueueSize = MaxQueueSize + 1 }, "sensors.opcua.servers[0].nodes[0].queue_size: 10001 is out of range (allowed: 0..10000)"},
		{"nodes", func(c *Config) {
			c.Servers[0].Nodes = make([]NodeConfig, MaxNodes+1)
			for i := range c.Servers[0].Nodes {
				c.Servers[0].Nodes[i].NodeID = fmt.Sprintf("ns=2;i=%d", i)
			}
		}, "sensors.opcua.servers[0].nodes: has 100001 entries (allowed: up to 100000)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			full := config.Default()
			c := ConfigOf(full.Sensors)
			c.Enabled = true
			c.Servers = []ServerConfig{{Name: "plc", Endpoint: "opc.tcp://127.0.0.1:4840", SecurityPolicy: "None", SecurityMode: "None", Auth: "anonymous",
				PublishInterval: 100 * time.Millisecond, Nodes: []NodeConfig{{NodeID: "ns=2;s=T"}}}}
			if err := full.Validate(); err != nil {
				t.Fatalf("base config: %v", err)
			}
			tt.mutate(c)
			if err := full.Validate(); err == nil || err.Error() != tt.want {
				t.Fatalf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestParseBrowsePath checks the namespace indexes and names of browse paths.
func TestParseBrowsePath(t *testing.T) {
	for in, want := range map[string]string{
		"2:Line1/2:Temperature": "2:Line1 2:Temperature",
		"/Server/ServerStatus":  "0:Server 0:ServerStatus",
		"3:a:b/x:y":             "3:a:b 0:x:y",
	} {
		qns, err := ParseBrowsePath(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var got []string
		for _, q := range qns {
			got = append(got, fmt.Sprintf("%d:%s", q.NamespaceIndex, q.Name))
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("%q: got %v, want %s", in, got, want)
		}
	}
}
