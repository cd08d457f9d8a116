package can

import (
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// TestValidate checks that each bad value gives one line naming its field path.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"no dbc", func(c *Config) { c.DBCFile = "" }, "sensors.can.dbc_file: is empty but the input is enabled (name the DBC file describing the messages)"},
		{"no source", func(c *Config) { c.Replay.Files = nil }, "sensors.can.interfaces: is empty and so is replay.files, but the input is enabled (name a SocketCAN interface such as can0, or a candump log)"},
		{"key", func(c *Config) { c.Key = "frame" }, `sensors.can.key: "frame" is not allowed (allowed: signal, message)`},
		{"interface", func(c *Config) { c.Interfaces = []string{"can/0"} }, `sensors.can.interfaces[0]: "can/0" is not an interface name (allowed: 1..15 characters without '/' or spaces, e.g. can0)`},
		{"speed", func(c *Config) { c.Replay.Speed = -1 }, "sensors.can.replay.speed: -1 is not allowed (allowed: 0 for as fast as possible, or a positive factor such as 1)"},
		{"timestamps", func(c *Config) { c.Replay.Timestamps = "now" }, `sensors.can.replay.timestamps: "now" is not allowed (allowed: log, replay)`},
		{"rate", func(c *Config) { c.Rate = "off" }, `sensors.can.rate: "off" is not allowed (allowed: every_frame, on_change, interval)`},
		{"interval", func(c *Config) { c.Rate = "interval" }, "sensors.can.interval: 0s must be positive with rate interval (e.g. 100ms)"},
		{"signal name", func(c *Config) { c.Signals = []SignalConfig{{Name: "Speed", Rate: "off"}} }, `sensors.can.signals[0].name: "Speed" is not Message.Signal (e.g. EngineData.EngineSpeed)`},
		{"signal twice", func(c *Config) { c.Signals = []SignalConfig{{Name: "A.B", Rate: "off"}, {Name: "A.B", Rate: "off"}} }, `sensors.can.signals[1].name: "A.B" is already used at sensors.can.signals[0] (signal names must be unique)`},
		{"signal interval", func(c *Config) { c.Signals = []SignalConfig{{Name: "A.B", Rate: "interval", Interval: -time.Second}} }, "sensors.can.signals[0].interval: -1s must be positive with rate interval (e.g. 100ms)"},
		{"batch", func(c *Config) { c.BatchMaxRecords = 0 }, "sensors.can.batch_max_records: 0 is out of range (allowed: 1..100000)"},
		{"batch wait", func(c *Config) { c.BatchWait = 2 * time.Second }, "sensors.can.batch_wait: 2s is out of range (allowed: 0s..1s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			full := config.Default()
			c := ConfigOf(full.Sensors)
			c.Enabled, c.DBCFile, c.Replay.Files = true, "testdata/test.dbc", []string{"x.log"}
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

// TestUnknownSignalOverride checks that a signals entry naming no signal of
// the DBC stops the input at start.
func TestUnknownSignalOverride(t *testing.T) {
	cfg := *ConfigOf(testConfig("x.log"))
	cfg.Signals = []SignalConfig{{Name: "Engine.Nope", Rate: "off"}}
	_, err := New(cfg, newNopWriterT(t), nil)
	if err == nil || err.Error() != `signals[0].name: "Engine.Nope" is not a signal of testdata/test.dbc` {
		t.Fatalf("got %v", err)
	}
}
