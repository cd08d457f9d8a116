package config_test

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/config"
	_ "github.com/katka-io/katka/sensors/all" // every input registers its config section
	"github.com/katka-io/katka/sensors/mqtt"
	"github.com/katka-io/katka/sensors/simulated"
)

// The tests here are the config tests that reach into input sections; they
// moved from config_test.go when the inputs took over their config types. The
// expected lines are unchanged. Importing sensors/all here also registers the
// inputs for the package's own tests (one test binary), so that configs/katka.yaml loads.

// writeConfig writes body to a katka.yaml in a temp dir and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "katka.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sim is c's simulated section, changed in place.
func sim(c *config.Config) *simulated.Config { return simulated.ConfigOf(c.Sensors) }

func TestDefaultIsFresh(t *testing.T) {
	a := config.Default()
	sim(&a).Sensors[0].ID = "changed"
	if b := config.Default(); sim(&b).Sensors[0].ID != "temp-1" {
		t.Fatal("Default() shares its sensor slice between calls")
	}
}

func TestLoadOverlaysDefaults(t *testing.T) {
	p := writeConfig(t, `
data_dir: /var/lib/katka
storage:
  fsync: interval
  segment_bytes: 16MiB
topics:
  retention_bytes: 10GB
  create:
    - name: telemetry
      partitions: 6
      retention: 72h
    - name: alarms
      partitions: 1
      retention_bytes: 1GiB
sensors:
  simulated:
    enabled: false
`)
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.DataDir = "/var/lib/katka"
	want.Storage.Fsync = "interval"
	want.Storage.SegmentBytes = 16 * config.MiB
	want.Topics.RetentionBytes = 10 * config.GB
	want.Topics.Create = []config.TopicSpec{
		{Name: "telemetry", Partitions: 6, Retention: 72 * time.Hour},
		{Name: "alarms", Partitions: 1, RetentionBytes: config.GiB},
	}
	sim(&want).Enabled = false
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestLoadInputEdgeCases(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(c config.Config) bool
	}{
		{"null list empties it", "sensors:\n  simulated:\n    sensors: ~\n", func(c config.Config) bool {
			return sim(&c).Sensors == nil
		}},
		{"list replaces default list", "sensors:\n  simulated:\n    sensors:\n      - id: s\n        kind: step\n", func(c config.Config) bool {
			return reflect.DeepEqual(sim(&c).Sensors, []simulated.SensorConfig{{ID: "s", Kind: "step"}})
		}},
		{"float from integer", "sensors:\n  simulated:\n    sensors:\n      - {id: a, kind: sine, min: -3, max: 1e2, period: 1m}\n", func(c config.Config) bool {
			s := sim(&c).Sensors[0]
			return s.Min == -3 && s.Max == 100 && s.Period == time.Minute
		}},
		{"anchors and merge keys", `
sensors:
  simulated:
    sensors:
      - &base {id: a, kind: sine, min: 1, max: 2, period: 10s, unit: C}
      - <<: *base
        id: b
`, func(c config.Config) bool {
			s := sim(&c).Sensors
			return len(s) == 2 && s[1].ID == "b" && s[1].Unit == "C" && s[1].Period == 10*time.Second
		}},
		{"null input section keeps defaults", "sensors:\n  mqtt:\n", func(c config.Config) bool { return reflect.DeepEqual(c, config.Default()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(writeConfig(t, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected result: %+v", c)
			}
		})
	}
}

// TestLoadInputErrors checks that errors inside an input's own section, and
// an unknown input, name the line and the field path as before.
func TestLoadInputErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{"sensors:\n  opcua2:\n    enabled: true\n", "line 2: sensors.opcua2: unknown key (allowed: partitioner, "},
		{"sensors:\n  mqtt:\n    qos: high\n", `line 3: sensors.mqtt.qos: "high" is not an integer`},
		{"sensors:\n  modbus: [a]\n", "line 2: sensors.modbus: expected a mapping with keys (enabled, topic, partitions, interval, timeout, devices), got a list"},
	}
	for _, tt := range tests {
		_, err := config.Load(writeConfig(t, tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.body, err, tt.want)
		}
	}
}

func TestValidateInputsReject(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   string // the whole one-line message
	}{
		{"mqtt tls keys on a plain url", func(c *config.Config) {
			m := mqtt.ConfigOf(c.Sensors)
			m.Enabled = true
			m.Brokers = []mqtt.BrokerConfig{{URL: "tcp://127.0.0.1:1883", ClientID: "k", CAFile: "ca.pem"}}
			m.Rules = []mqtt.RuleConfig{{Filter: "a/#", Topic: "a"}}
		}, `sensors.mqtt.brokers[0].url: "tcp://127.0.0.1:1883" is not TLS but TLS settings are given, which would be ignored (use ssl, tls, mqtts, wss)`},
		{"sim topic", func(c *config.Config) { sim(c).Topic = "a/b" }, `sensors.simulated.topic: topic name "a/b" contains '/' (allowed: a-z, A-Z, 0-9, '.', '_', '-')`},
		{"sim partitions", func(c *config.Config) { sim(c).Partitions = 0 }, "sensors.simulated.partitions: 0 is out of range (allowed: 1..10000)"},
		{"sim interval", func(c *config.Config) { sim(c).Interval = 0 }, "sensors.simulated.interval: 0s must be positive (e.g. 1s)"},
		{"sim no sensors", func(c *config.Config) { sim(c).Sensors = nil }, "sensors.simulated.sensors: is empty but the source is enabled (add a sensor or set enabled: false)"},
		{"sensor kind", func(c *config.Config) { sim(c).Sensors[1].Kind = "square" }, `sensors.simulated.sensors[1].kind: "square" is not allowed (allowed: sine, random_walk, step, counter)`},
		{"sensor min max", func(c *config.Config) { sim(c).Sensors[0].Min = 30 }, "sensors.simulated.sensors[0].max: 24 is below min 30 (allowed: max >= min)"},
		{"sensor nan", func(c *config.Config) { sim(c).Sensors[0].Min = math.NaN() }, "sensors.simulated.sensors[0].min: NaN is not allowed (allowed: a finite number)"},
		{"sensor period", func(c *config.Config) { sim(c).Sensors[0].Period = 0 }, "sensors.simulated.sensors[0].period: 0s must be positive for kind sine (e.g. 60s)"},
		{"sensor noise", func(c *config.Config) { sim(c).Sensors[0].Noise = -1 }, "sensors.simulated.sensors[0].noise: -1 is not allowed (allowed: a standard deviation >= 0)"},
		{"sensor id empty", func(c *config.Config) { sim(c).Sensors[2].ID = "" }, "sensors.simulated.sensors[2].id: must not be empty (it is the record key)"},
		{"sensor id duplicate", func(c *config.Config) { sim(c).Sensors[2].ID = "temp-1" }, `sensors.simulated.sensors[2].id: "temp-1" is already used at sensors.simulated.sensors[0] (sensor ids must be unique)`},
		{"partitioner", func(c *config.Config) { c.Sensors.Partitioner = "by_field" }, `sensors.partitioner: "by_field" is not allowed (allowed: hash, round_robin, or the name of a partitioner instance in plugins.instances)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
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

func TestValidateInputsAccept(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
	}{
		{"disabled source without sensors", func(c *config.Config) { sim(c).Enabled = false; sim(c).Sensors = nil }},
		{"min equals max", func(c *config.Config) { sim(c).Sensors[1].Min = 1; sim(c).Sensors[1].Max = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateReportsEveryProblemOnItsOwnLine(t *testing.T) {
	c := config.Default()
	c.Log.Level = "loud"
	c.Storage.Fsync = "never"
	sim(&c).Sensors[0].Kind = "saw"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"log.level: ", "storage.fsync: ", "sensors.simulated.sensors[0].kind: "}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}
