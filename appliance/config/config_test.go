package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// writeConfig writes body to a katka.yaml in a temp dir and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "katka.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultValidates(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate:\n%v", err)
	}
}

func TestLoadEmptyPathIsDefault(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("Load(\"\") = %+v, want Default()", c)
	}
}

// TestShippedConfigIsDefault keeps configs/katka.yaml and Default() from drifting apart.
func TestShippedConfigIsDefault(t *testing.T) {
	c, err := Load("../../configs/katka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("configs/katka.yaml does not validate:\n%v", err)
	}
	if want := Default(); !reflect.DeepEqual(c, want) {
		t.Fatalf("configs/katka.yaml differs from Default():\n got %+v\nwant %+v", c, want)
	}
}

// TestShippedConfigListsEveryKey makes sure the documented file mentions every key,
// including those of list elements (in the example if not in the values).
func TestShippedConfigListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../configs/katka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range allKeys(reflect.TypeFor[Config]()) {
		if !strings.Contains(string(data), key+":") {
			t.Errorf("configs/katka.yaml does not document key %q", key)
		}
	}
}

// allKeys lists every yaml key reachable from t, including those of list elements.
func allKeys(t reflect.Type) []string {
	var keys []string
	for _, f := range yamlFields(t) {
		keys = append(keys, f.key)
		ft := t.Field(f.index).Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != durationType && ft != byteSizeType {
			keys = append(keys, allKeys(ft)...)
		}
	}
	return keys
}

func TestLoadEdgeCases(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(c Config) bool
	}{
		{"empty file", "", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"comments only", "# nothing\n", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"null section keeps defaults", "storage:\n", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"null string empties it", "kafka:\n  addr:\n", func(c Config) bool { return c.Kafka.Addr == "" }},
		{"byte size as integer", "storage:\n  segment_bytes: 131072\n", func(c Config) bool { return c.Storage.SegmentBytes == 128*KiB }},
		{"hex integer", "storage:\n  segment_cache: 0x10\n", func(c Config) bool { return c.Storage.SegmentCache == 16 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected result: %+v", c)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // the whole message after "config <path>: "
	}{
		{
			"unknown top-level key",
			"data_dir: x\ndatadir: y\n",
			"line 2: datadir: unknown key (allowed: data_dir, log, kafka, http, storage, topics, sensors, plugins, sync, groups, firmware, cell, auth, memory_limit)",
		},
		{
			"unknown nested key",
			"log:\n  level: info\nstorage:\n  fsync: always\n  fsyncc: interval\n",
			"line 5: storage.fsyncc: unknown key (allowed: fsync, fsync_interval, syncfs_min, segment_bytes, segment_cache, retention_check_interval, quota, min_free)",
		},
		{
			"unknown key in a list element",
			"topics:\n  create:\n    - name: a\n      partitions: 1\n    - name: b\n      partition: 2\n",
			"line 6: topics.create[1].partition: unknown key (allowed: name, partitions, retention, retention_bytes, on_full, cleanup_policy, compression_type)",
		},
		{
			"unknown key deep in a list",
			"sensors:\n  simulated:\n    sensors:\n      - id: a\n        knd: sine\n",
			"line 5: sensors.simulated.sensors[0].knd: unknown key (allowed: id, kind, min, max, period, noise, unit)",
		},
		{
			"unknown key in merged mapping",
			"storage:\n  <<: {fsink: always}\n",
			"line 2: storage.fsink: unknown key (allowed: fsync, fsync_interval, syncfs_min, segment_bytes, segment_cache, retention_check_interval, quota, min_free)",
		},
		{
			"bad size",
			"storage:\n\n  segment_bytes: big\n",
			`line 3: storage.segment_bytes: "big" is not a size (e.g. 4MiB; units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
		},
		{
			"bad duration",
			"storage:\n  fsync_interval: 5\n",
			`line 2: storage.fsync_interval: "5" is not a duration (e.g. 30s, 5m, 168h)`,
		},
		{
			"bad integer in list",
			"topics:\n  create:\n    - {name: a, partitions: 1}\n    - {name: b, partitions: 1}\n    - {name: c, partitions: many}\n",
			`line 5: topics.create[2].partitions: "many" is not an integer`,
		},
		{
			"int32 overflow",
			"topics:\n  default_partitions: 3000000000\n",
			"line 2: topics.default_partitions: 3000000000 is out of range for a 32-bit integer",
		},
		{
			"bad bool",
			"topics:\n  auto_create: maybe\n",
			`line 2: topics.auto_create: "maybe" is not a boolean (allowed: true, false)`,
		},
		{
			"bad float",
			"sensors:\n  simulated:\n    sensors:\n      - {id: a, min: low}\n",
			`line 4: sensors.simulated.sensors[0].min: "low" is not a number`,
		},
		{
			"list where mapping expected",
			"storage:\n  - fsync\n",
			"line 2: storage: expected a mapping with keys (fsync, fsync_interval, syncfs_min, segment_bytes, segment_cache, retention_check_interval, quota, min_free), got a list",
		},
		{
			"mapping where list expected",
			"topics:\n  create:\n    name: a\n",
			"line 3: topics.create: expected a list, got a mapping",
		},
		{
			"mapping where value expected",
			"log:\n  level:\n    debug: true\n",
			"line 3: log.level: expected a string, got a mapping",
		},
		{
			"top level not a mapping",
			"- a\n- b\n",
			"line 1: (top level): expected a mapping with keys (data_dir, log, kafka, http, storage, topics, sensors, plugins, sync, groups, firmware, cell, auth, memory_limit), got a list",
		},
		{
			"duplicate key",
			"log:\n  level: info\n  level: debug\n",
			"line 3: log.level: duplicate key (first at line 2)",
		},
		{
			"two documents",
			"log: {level: info}\n---\nlog: {level: debug}\n",
			"line 2: only one YAML document is allowed",
		},
		{
			"syntax error",
			"log:\n  level: [info\n",
			"line 1: did not find expected ',' or ']'", // yaml.v3 reports the line the list opened on
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.body)
			_, err := Load(p)
			if err == nil {
				t.Fatal("Load accepted a bad file")
			}
			want := "config " + p + ": " + tt.want
			if err.Error() != want {
				t.Fatalf("error\n got %q\nwant %q", err.Error(), want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("got %v, want a not-exist error naming the file", err)
	}
}

func TestLoadAliasBomb(t *testing.T) {
	// Each element merges the previous one ten times: 10^7 mappings if expanded.
	body := "sensors:\n  simulated:\n    sensors:\n      - &m0 {id: a}\n"
	for i := 1; i <= 7; i++ {
		prev := fmt.Sprintf("*m%d, ", i-1)
		body += fmt.Sprintf("      - &m%d {<<: [%s]}\n", i, strings.TrimSuffix(strings.Repeat(prev, 10), ", "))
	}
	_, err := Load(writeConfig(t, body))
	if err == nil || !strings.Contains(err.Error(), "too many aliases") {
		t.Fatalf("got %v, want the alias bomb refused", err)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // the whole one-line message
	}{
		{"empty data_dir", func(c *Config) { c.DataDir = " " }, "data_dir: must not be empty (e.g. ./data)"},
		{"self_update without the store", func(c *Config) { c.Firmware.SelfUpdate.Enabled = true }, "firmware.self_update.enabled: needs firmware.enabled: the artefacts come from the firmware store"},
		{"self_update name", func(c *Config) { c.Firmware.SelfUpdate.Name = "katka/x" }, `firmware.self_update.name: "katka/x" is not an artefact name prefix (allowed: 1-60 of a-z A-Z 0-9 . _ -)`},
		{"self_update health_window short", func(c *Config) { c.Firmware.SelfUpdate.HealthWindow = 500 * time.Millisecond }, "firmware.self_update.health_window: 500ms is out of range (allowed: 1s..1h)"},
		{"self_update health_window long", func(c *Config) { c.Firmware.SelfUpdate.HealthWindow = 2 * time.Hour }, "firmware.self_update.health_window: 2h0m0s is out of range (allowed: 1s..1h)"},
		{"self_update max_attempts", func(c *Config) { c.Firmware.SelfUpdate.MaxAttempts = 11 }, "firmware.self_update.max_attempts: 11 is out of range (allowed: 1..10)"},
		{"memory_limit small", func(c *Config) { c.MemoryLimit = 16 * MiB }, "memory_limit: 16MiB is out of range (allowed: -1 for none, 0 to derive it, or 32MiB..1TiB)"},
		{"memory_limit negative", func(c *Config) { c.MemoryLimit = -2 }, "memory_limit: -2 is out of range (allowed: -1 for none, 0 to derive it, or 32MiB..1TiB)"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level: "verbose" is not allowed (allowed: debug, info, warn, error)`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: "xml" is not allowed (allowed: text, json)`},
		{"kafka addr no port", func(c *Config) { c.Kafka.Addr = "localhost" }, `kafka.addr: "localhost" is not a host:port address (e.g. 127.0.0.1:9092, or empty to disable)`},
		{"kafka addr bad port", func(c *Config) { c.Kafka.Addr = "localhost:99999" }, `kafka.addr: "localhost:99999" has port "99999" (allowed: 0..65535)`},
		{"advertised no host", func(c *Config) { c.Kafka.AdvertisedAddr = ":9092" }, `kafka.advertised_addr: ":9092" is not a host:port address clients can dial (e.g. broker1.local:9092, or empty to use kafka.addr)`},
		{"advertised port 0", func(c *Config) { c.Kafka.AdvertisedAddr = "h:0" }, `kafka.advertised_addr: "h:0" has port "0" (allowed: 1..65535)`},
		{"http addr", func(c *Config) { c.HTTP.Addr = "8092" }, `http.addr: "8092" is not a host:port address (e.g. 127.0.0.1:9092, or empty to disable)`},
		{"kafka addr beyond loopback", func(c *Config) { c.Kafka.Addr = "0.0.0.0:9092" }, `kafka.addr: "0.0.0.0:9092" is a plaintext listener beyond loopback without authentication; set kafka.allow_unauthenticated: true to allow it, or serve clients on a kafka.listeners entry with security sasl_ssl (and kafka.addr on 127.0.0.1 or "")`},
		{"http addr beyond loopback", func(c *Config) { c.HTTP.Addr = ":8092" }, `http.addr: ":8092" listens beyond loopback without authentication; set http.allow_unauthenticated: true to allow it`},
		{"plaintext listener beyond loopback", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "EXT", Addr: "10.0.0.5:9093", Security: "plaintext"}}
		}, `kafka.listeners[0].allow_unauthenticated: listener "EXT" on "10.0.0.5:9093" has no authentication beyond loopback; set kafka.listeners[0].allow_unauthenticated: true to allow it, or security: sasl_ssl`},
		{"ssl listener without required client certs", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "EXT", Addr: ":9093", Security: "ssl", TLS: ListenerTLS{CertFile: "c", KeyFile: "k"}}}
		}, `kafka.listeners[0].allow_unauthenticated: listener "EXT" on ":9093" has no authentication beyond loopback; set kafka.listeners[0].allow_unauthenticated: true to allow it, or security: sasl_ssl`},
		{"listener security", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "EXT", Addr: "127.0.0.1:9093", Security: "tls"}}
		}, `kafka.listeners[0].security: "tls" is not allowed (allowed: plaintext, ssl, sasl_plaintext, sasl_ssl)`},
		{"listener name clash", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "PLAINTEXT", Addr: "127.0.0.1:9093", Security: "sasl_plaintext"}}
		}, `kafka.listeners[0].name: "PLAINTEXT" is already used by kafka.addr (listener names must be unique)`},
		{"listener tls files", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "S", Addr: "127.0.0.1:9093", Security: "sasl_ssl", TLS: ListenerTLS{CertFile: "c"}}}
		}, `kafka.listeners[0].tls.key_file: must be set for security sasl_ssl (a PEM private key)`},
		{"listener client auth ca", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "S", Addr: "127.0.0.1:9093", Security: "ssl", TLS: ListenerTLS{CertFile: "c", KeyFile: "k", ClientAuth: "required"}}}
		}, `kafka.listeners[0].tls.ca_file: must be set when tls.client_auth is required (the CA of client certificates)`},
		{"listener mechanism", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "S", Addr: "127.0.0.1:9093", Security: "sasl_plaintext", Mechanisms: []string{"GSSAPI"}}}
		}, `kafka.listeners[0].mechanisms[0]: "GSSAPI" is not allowed (allowed: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)`},
		{"super user", func(c *Config) { c.Auth.SuperUsers = []string{"admin"} }, `auth.super_users[0]: "admin" is not a principal (e.g. User:admin)`},
		{"scram iterations", func(c *Config) { c.Auth.ScramIterations = 1000 }, `auth.scram_iterations: 1000 is out of range (allowed: 4096..16384)`},
		{"fsync", func(c *Config) { c.Storage.Fsync = "sometimes" }, `storage.fsync: "sometimes" is not allowed (allowed: always, interval)`},
		{"fsync interval", func(c *Config) { c.Storage.Fsync = "interval"; c.Storage.FsyncInterval = 0 }, "storage.fsync_interval: 0s must be positive when storage.fsync is interval (e.g. 1s)"},
		{"segment too small", func(c *Config) { c.Storage.SegmentBytes = 1000 }, "storage.segment_bytes: 1KB is out of range (allowed: 64KiB..1GiB)"},
		{"segment too large", func(c *Config) { c.Storage.SegmentBytes = 2 * GiB }, "storage.segment_bytes: 2GiB is out of range (allowed: 64KiB..1GiB)"},
		{"segment cache 0", func(c *Config) { c.Storage.SegmentCache = 0 }, "storage.segment_cache: 0 is out of range (allowed: 1..64)"},
		{"segment cache 65", func(c *Config) { c.Storage.SegmentCache = 65 }, "storage.segment_cache: 65 is out of range (allowed: 1..64)"},
		{"syncfs min negative", func(c *Config) { c.Storage.SyncfsMin = -1 }, "storage.syncfs_min: -1 is out of range (allowed: 0 for never, or 1..1000000)"},
		{"syncfs min too large", func(c *Config) { c.Storage.SyncfsMin = 1000001 }, "storage.syncfs_min: 1000001 is out of range (allowed: 0 for never, or 1..1000000)"},
		{"retention check", func(c *Config) { c.Storage.RetentionCheckInterval = -time.Second }, "storage.retention_check_interval: -1s must be positive (e.g. 1s)"},
		{"default partitions 0", func(c *Config) { c.Topics.DefaultPartitions = 0 }, "topics.default_partitions: 0 is out of range (allowed: 1..10000)"},
		{"default partitions big", func(c *Config) { c.Topics.DefaultPartitions = 10001 }, "topics.default_partitions: 10001 is out of range (allowed: 1..10000)"},
		{"default replication factor 0", func(c *Config) { c.Topics.DefaultReplicationFactor = 0 }, "topics.default_replication_factor: 0 is out of range (allowed: 1..16)"},
		{"default replication factor big", func(c *Config) { c.Topics.DefaultReplicationFactor = 17 }, "topics.default_replication_factor: 17 is out of range (allowed: 1..16)"},
		{"default replication factor without cell", func(c *Config) { c.Topics.DefaultReplicationFactor = 3 }, "topics.default_replication_factor: 3 needs a cell (allowed without a cell: 1)"},
		{"retention bytes 0", func(c *Config) { c.Topics.RetentionBytes = 0 }, "topics.retention_bytes: 0 is not allowed (allowed: -1 for unlimited, or a positive size)"},
		{"topic name chars", func(c *Config) { c.Topics.Create = []TopicSpec{{Name: "a b", Partitions: 1}} }, `topics.create[0].name: topic name "a b" contains ' ' (allowed: a-z, A-Z, 0-9, '.', '_', '-')`},
		{"topic name dot", func(c *Config) { c.Topics.Create = []TopicSpec{{Name: "..", Partitions: 1}} }, `topics.create[0].name: topic name ".." is not allowed`},
		{"topic name empty", func(c *Config) { c.Topics.Create = []TopicSpec{{Partitions: 1}} }, "topics.create[0].name: topic name is empty (allowed: 1..249 characters from a-z, A-Z, 0-9, '.', '_', '-')"},
		{"topic name long", func(c *Config) { c.Topics.Create = []TopicSpec{{Name: strings.Repeat("a", 250), Partitions: 1}} }, "topics.create[0].name: topic name is 250 characters long (allowed: 1..249)"},
		{"topic partitions", func(c *Config) {
			c.Topics.Create = []TopicSpec{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 0}}
		}, "topics.create[1].partitions: 0 is out of range (allowed: 1..10000)"},
		{"topic retention bytes", func(c *Config) { c.Topics.Create = []TopicSpec{{Name: "a", Partitions: 1, RetentionBytes: -2}} }, "topics.create[0].retention_bytes: -2 is not allowed (allowed: 0 to use topics.retention_bytes, -1 for unlimited, or a positive size)"},
		{"duplicate topic", func(c *Config) {
			c.Topics.Create = []TopicSpec{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}, {Name: "a", Partitions: 2}}
		}, `topics.create[2].name: "a" is already listed at topics.create[0] (topic names must be unique)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n got %q\nwant %q", err.Error(), tt.want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"listeners disabled", func(c *Config) { c.Kafka.Addr, c.HTTP.Addr = "", "" }},
		{"all interfaces, random port", func(c *Config) {
			c.Kafka.Addr, c.HTTP.Addr = ":0", "[::]:8092"
			c.Kafka.AllowUnauthenticated, c.HTTP.AllowUnauthenticated = true, true
		}},
		{"advertised", func(c *Config) { c.Kafka.AdvertisedAddr = "edge-7.local:9092" }},
		{"memory_limit off", func(c *Config) { c.MemoryLimit = -1 }},
		{"memory_limit set", func(c *Config) { c.MemoryLimit = 512 * MiB }},
		{"sasl_ssl listener beyond loopback", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "SASL_SSL", Addr: "0.0.0.0:9093", AdvertisedAddr: "gw-7.plant:9093", Security: "sasl_ssl", TLS: ListenerTLS{CertFile: "c", KeyFile: "k"}}}
		}},
		{"mtls listener beyond loopback", func(c *Config) {
			c.Kafka.Listeners = []KafkaListener{{Name: "SSL", Addr: ":9094", Security: "ssl", TLS: ListenerTLS{CertFile: "c", KeyFile: "k", CAFile: "ca", ClientAuth: "required", Principal: "dn"}}}
		}},
		{"fsync interval ignores interval when always", func(c *Config) { c.Storage.FsyncInterval = 0 }},
		{"segment bounds", func(c *Config) { c.Storage.SegmentBytes = MinSegmentBytes }},
		{"segment max", func(c *Config) { c.Storage.SegmentBytes = MaxSegmentBytes }},
		{"topic spec inherits", func(c *Config) {
			c.Topics.Create = []TopicSpec{{Name: "a.b_c-D9", Partitions: 10000, RetentionBytes: 0}, {Name: strings.Repeat("x", 249), Partitions: 1, RetentionBytes: -1}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
	}{
		{"0", 0},
		{"4096", 4096},
		{"-1", -1},
		{"1B", 1},
		{"512KiB", 512 * 1024},
		{"4MiB", 4 << 20},
		{"1GiB", 1 << 30},
		{"2TiB", 2 << 40},
		{"10MB", 10_000_000},
		{"1KB", 1000},
		{"3GB", 3_000_000_000},
		{"1TB", 1_000_000_000_000},
		{"4mib", 4 << 20},
		{"4 MiB", 4 << 20},
		{" 64KiB ", 64 << 10},
		{"1.5KiB", 1536},
		{"0.5GiB", 512 << 20},
		{"8EiB", 0}, // error: unknown unit
		{"big", 0},
		{"", 0},
		{"MiB", 0},
		{"4 M", 0},
		{"1.0001KB", 0}, // not whole bytes
		{"9000000TiB", 0},
		{"99999999999999999999", 0},
		{"1e3", 0},
		{"NaNKiB", 0},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		wantErr := tt.want == 0 && tt.in != "0"
		if wantErr {
			if err == nil {
				t.Errorf("ParseByteSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0"},
		{-1, "-1"},
		{1, "1"},
		{1234, "1234"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{4 * MiB, "4MiB"},
		{10 * MB, "10MB"},
		{1536, "1536"}, // 1.5KiB: no unit divides it
		{GiB, "1GiB"},
		{3 * TiB, "3TiB"},
		{-2 * KiB, "-2KiB"},
		{math.MinInt64, "-9223372036854775808"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if back, err := ParseByteSize(tt.in.String()); err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d (round trip)", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

func TestByteSizeYAML(t *testing.T) {
	var v struct {
		A, B ByteSize
	}
	if err := yaml.Unmarshal([]byte("a: 4MiB\nb: 100\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 4*MiB || v.B != 100 {
		t.Fatalf("got %+v", v)
	}
	if err := yaml.Unmarshal([]byte("a: lots\n"), &v); err == nil || !strings.Contains(err.Error(), `"lots" is not a size`) {
		t.Fatalf("got %v, want a size error", err)
	}
	out, err := yaml.Marshal(struct{ A ByteSize }{4 * MiB})
	if err != nil || string(out) != "a: 4MiB\n" {
		t.Fatalf("Marshal = %q, %v", out, err)
	}
}

// TestShippedConfigsValidate loads and validates every example in configs/, so
// a new rule (such as refusing unauthenticated listeners beyond loopback)
// cannot leave a shipped example that katka refuses to start on.
func TestShippedConfigsValidate(t *testing.T) {
	paths, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(paths) < 2 {
		t.Fatalf("configs/*.yaml: %v (%d files)", err, len(paths))
	}
	for _, p := range paths {
		c, err := Load(p)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
		}
	}
}

// TestEffectiveMemoryLimit: memory_limit 0 derives the limit from the client
// budgets (160 MiB with the defaults), a set value or -1 is taken as is.
func TestEffectiveMemoryLimit(t *testing.T) {
	c := Default()
	if got := c.EffectiveMemoryLimit(); got != int64(160*MiB) {
		t.Fatalf("default: %d, want 160 MiB", got)
	}
	c.Kafka.Limits.QueuedMaxRequestBytes = 16 * MiB
	if got := c.EffectiveMemoryLimit(); got != int64(112*MiB) {
		t.Fatalf("16 MiB pool: %d, want 112 MiB", got)
	}
	c.MemoryLimit = 1 * GiB
	if got := c.EffectiveMemoryLimit(); got != int64(GiB) {
		t.Fatalf("set: %d, want 1 GiB", got)
	}
	c.MemoryLimit = -1
	if got := c.EffectiveMemoryLimit(); got != -1 {
		t.Fatalf("off: %d, want -1", got)
	}
}
