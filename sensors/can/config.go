package can

import (
	_ "embed"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// Config configures the CAN input (sensors.can).
type Config struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// Topic receives the decoded signals (created if missing).
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// DeadLetterTopic receives frames that cannot be decoded (shorter than the
	// DBC says, malformed log lines), with the reason in a header.
	DeadLetterTopic string `yaml:"dead_letter_topic"`
	// DBCFile is the DBC file that describes the messages and signals.
	DBCFile string `yaml:"dbc_file"`
	// Key is signal (one record per signal, key Message.Signal) or message
	// (one record per frame, key Message, every signal in it).
	Key string `yaml:"key"`
	// Interfaces are SocketCAN interfaces read live (e.g. can0); when none is
	// given, Replay.Files are replayed instead.
	Interfaces []string `yaml:"interfaces"`
	// Replay replays candump -l log files when no interface is given.
	Replay Replay `yaml:"replay"`
	// Rate is when a signal is written: every_frame, on_change or interval.
	Rate string `yaml:"rate"`
	// Interval is the least time between two records of one signal with rate interval.
	Interval time.Duration `yaml:"interval"`
	// Signals override Rate and Interval for single signals.
	Signals []SignalConfig `yaml:"signals"`
	// BatchMaxRecords bounds the records written together.
	BatchMaxRecords int `yaml:"batch_max_records"`
	// BatchWait is how long a batch may wait for more frames after its first one.
	BatchWait time.Duration `yaml:"batch_wait"`
}

// Replay is the candump log replay.
type Replay struct {
	// Files are candump -l log files, replayed one after the other.
	Files []string `yaml:"files"`
	// Speed is the replay speed: 1 keeps the logged timing, 2 is twice as
	// fast, 0 replays as fast as katka can write.
	Speed float64 `yaml:"speed"`
	// Loop starts again from the first file after the last one.
	Loop bool `yaml:"loop"`
	// Timestamps is log (records carry the logged time) or replay (the time of
	// replay, keeping the logged spacing divided by Speed).
	Timestamps string `yaml:"timestamps"`
}

// SignalConfig overrides the rate of one signal.
type SignalConfig struct {
	// Name is Message.Signal as in the DBC file.
	Name string `yaml:"name"`
	// Rate is every_frame, on_change, interval or off (never written).
	Rate string `yaml:"rate"`
	// Interval is the least time between two records with rate interval.
	Interval time.Duration `yaml:"interval"`
}

// sample is this input's documented section of configs/katka.yaml.
//
//go:embed sample.yaml
var sample string

func init() { config.Register("can", DefaultConfig, sample) }

// DefaultConfig returns the built-in config: off, every frame, keyed by signal.
func DefaultConfig() *Config {
	return &Config{
		Topic:           "sensors.can",
		Partitions:      3,
		DeadLetterTopic: "can.dead-letter",
		Key:             "signal",
		Replay:          Replay{Speed: 1, Timestamps: "replay"},
		Rate:            "every_frame",
		BatchMaxRecords: 10000,
		BatchWait:       10 * time.Millisecond,
	}
}

// ConfigOf returns the can section of s, to read or change in place; a zero
// (disabled) config when s holds none.
func ConfigOf(s config.Sensors) *Config { return config.SectionOf[Config](s, "can") }

// Allowed values of the enumerated settings.
var (
	keyModes   = []string{"signal", "message"}
	rates      = []string{"every_frame", "on_change", "interval"}
	rateOrOff  = []string{"every_frame", "on_change", "interval", "off"}
	timestamps = []string{"log", "replay"}
)

// MaxBatchRecords is the largest batch_max_records.
const MaxBatchRecords = 100000

// Validate checks the input's values, one line per problem under path.
func (c *Config) Validate(v *config.Validator, path string, _ *config.Config) {
	v.Topic(path+".topic", c.Topic)
	v.Partitions(path+".partitions", c.Partitions)
	v.Topic(path+".dead_letter_topic", c.DeadLetterTopic)
	if c.Enabled && c.DBCFile == "" {
		v.Add(path+".dbc_file", "is empty but the input is enabled (name the DBC file describing the messages)")
	}
	v.OneOf(path+".key", c.Key, keyModes)
	if c.Enabled && len(c.Interfaces) == 0 && len(c.Replay.Files) == 0 {
		v.Add(path+".interfaces", "is empty and so is replay.files, but the input is enabled (name a SocketCAN interface such as can0, or a candump log)")
	}
	for i, in := range c.Interfaces {
		if in == "" || len(in) > 15 || strings.ContainsAny(in, "/ \t") {
			v.Add(fmt.Sprintf("%s.interfaces[%d]", path, i), "%q is not an interface name (allowed: 1..15 characters without '/' or spaces, e.g. can0)", in)
		}
	}
	for i, f := range c.Replay.Files {
		if f == "" {
			v.Add(fmt.Sprintf("%s.replay.files[%d]", path, i), "must not be empty (a candump -l log file)")
		}
	}
	if s := c.Replay.Speed; !(s >= 0) || math.IsInf(s, 0) {
		v.Add(path+".replay.speed", "%v is not allowed (allowed: 0 for as fast as possible, or a positive factor such as 1)", s)
	}
	v.OneOf(path+".replay.timestamps", c.Replay.Timestamps, timestamps)
	v.OneOf(path+".rate", c.Rate, rates)
	if c.Rate == "interval" && c.Interval <= 0 {
		v.Add(path+".interval", "%s must be positive with rate interval (e.g. 100ms)", c.Interval)
	}
	names := make(map[string]string)
	for i, s := range c.Signals {
		p := fmt.Sprintf("%s.signals[%d]", path, i)
		if msg, sig, ok := strings.Cut(s.Name, "."); !ok || msg == "" || sig == "" {
			v.Add(p+".name", "%q is not Message.Signal (e.g. EngineData.EngineSpeed)", s.Name)
		} else if first, dup := names[s.Name]; dup {
			v.Add(p+".name", "%q is already used at %s (signal names must be unique)", s.Name, first)
		} else {
			names[s.Name] = p
		}
		v.OneOf(p+".rate", s.Rate, rateOrOff)
		if s.Rate == "interval" && s.Interval <= 0 {
			v.Add(p+".interval", "%s must be positive with rate interval (e.g. 100ms)", s.Interval)
		}
	}
	if c.BatchMaxRecords < 1 || c.BatchMaxRecords > MaxBatchRecords {
		v.Add(path+".batch_max_records", "%d is out of range (allowed: 1..%d)", c.BatchMaxRecords, MaxBatchRecords)
	}
	if c.BatchWait < 0 || c.BatchWait > time.Second {
		v.Add(path+".batch_wait", "%s is out of range (allowed: 0s..1s)", c.BatchWait)
	}
}
