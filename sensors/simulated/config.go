package simulated

import (
	_ "embed"
	"fmt"
	"math"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// Config configures the simulated sensor source (sensors.simulated).
type Config struct {
	// Enabled turns the source on.
	Enabled bool `yaml:"enabled"`
	// Topic receives the readings (created if missing).
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Interval is the time between readings of one sensor.
	Interval time.Duration `yaml:"interval"`
	// Sensors lists the simulated sensors.
	Sensors []SensorConfig `yaml:"sensors"`
}

// SensorConfig is one simulated signal.
type SensorConfig struct {
	// ID is the sensor id, used as the record key.
	ID string `yaml:"id"`
	// Kind is one of sine, random_walk, step, counter.
	Kind string `yaml:"kind"`
	// Min and Max bound the signal.
	Min float64 `yaml:"min"`
	Max float64 `yaml:"max"`
	// Period is the period of sine and step signals.
	Period time.Duration `yaml:"period"`
	// Noise is the standard deviation of gaussian noise added to each reading.
	Noise float64 `yaml:"noise"`
	// Unit is carried in each reading, e.g. "C" or "bar".
	Unit string `yaml:"unit"`
}

// sample is this input's documented section of configs/katka.yaml.
//
//go:embed sample.yaml
var sample string

func init() { config.Register("simulated", DefaultConfig, sample) }

// DefaultConfig returns the built-in config: on, three sensors, one reading a second.
func DefaultConfig() *Config {
	return &Config{
		Enabled:    true,
		Topic:      "sensors.simulated",
		Partitions: 3,
		Interval:   time.Second,
		Sensors: []SensorConfig{
			{ID: "temp-1", Kind: "sine", Min: 18, Max: 24, Period: 60 * time.Second, Noise: 0.1, Unit: "C"},
			{ID: "pressure-1", Kind: "random_walk", Min: 0.9, Max: 1.1, Noise: 0.005, Unit: "bar"},
			{ID: "counter-1", Kind: "counter", Min: 0, Max: 1000000, Unit: "count"},
		},
	}
}

// ConfigOf returns the simulated section of s, to read or change in place;
// a zero (disabled) config when s holds none.
func ConfigOf(s config.Sensors) *Config { return config.SectionOf[Config](s, "simulated") }

// sensorKinds are the allowed values of sensors[].kind.
var sensorKinds = []string{"sine", "random_walk", "step", "counter"}

// Validate checks the source's values, one line per problem under path.
func (s *Config) Validate(v *config.Validator, path string, _ *config.Config) {
	v.Topic(path+".topic", s.Topic)
	v.Partitions(path+".partitions", s.Partitions)
	v.Positive(path+".interval", s.Interval)
	if s.Enabled && len(s.Sensors) == 0 {
		v.Add(path+".sensors", "is empty but the source is enabled (add a sensor or set enabled: false)")
	}
	firstUse := make(map[string]string)
	for i, sn := range s.Sensors {
		p := fmt.Sprintf("%s.sensors[%d]", path, i)
		if sn.ID == "" {
			v.Add(p+".id", "must not be empty (it is the record key)")
		} else if first, dup := firstUse[sn.ID]; dup {
			v.Add(p+".id", "%q is already used at %s (sensor ids must be unique)", sn.ID, first)
		} else {
			firstUse[sn.ID] = p
		}
		v.OneOf(p+".kind", sn.Kind, sensorKinds)
		finite := true
		for _, f := range []struct {
			name string
			val  float64
		}{{"min", sn.Min}, {"max", sn.Max}} {
			if math.IsNaN(f.val) || math.IsInf(f.val, 0) {
				v.Add(p+"."+f.name, "%v is not allowed (allowed: a finite number)", f.val)
				finite = false
			}
		}
		if finite && sn.Min > sn.Max {
			v.Add(p+".max", "%v is below min %v (allowed: max >= min)", sn.Max, sn.Min)
		}
		if (sn.Kind == "sine" || sn.Kind == "step") && sn.Period <= 0 {
			v.Add(p+".period", "%s must be positive for kind %s (e.g. 60s)", sn.Period, sn.Kind)
		}
		if !(sn.Noise >= 0) || math.IsInf(sn.Noise, 0) { // also catches NaN
			v.Add(p+".noise", "%v is not allowed (allowed: a standard deviation >= 0)", sn.Noise)
		}
	}
}
