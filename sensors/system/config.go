package system

import (
	_ "embed"
	"fmt"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// Config configures the host metrics input (sensors.system).
type Config struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// Topic receives one JSON record per interval, keyed by host name.
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Interval is the time between two readings.
	Interval time.Duration `yaml:"interval"`
	// Collect lists the groups read: cpu, memory, disk, network, temperature.
	Collect []string `yaml:"collect"`
	// DiskPaths lists the mount points reported; empty means every physical disk.
	DiskPaths []string `yaml:"disk_paths"`
}

// sample is this input's documented section of configs/katka.yaml.
//
//go:embed sample.yaml
var sample string

func init() { config.Register("system", DefaultConfig, sample) }

// DefaultConfig returns the built-in config: off, every group each 10s.
func DefaultConfig() *Config {
	return &Config{
		Topic:      "sensors.system",
		Partitions: 1,
		Interval:   10 * time.Second,
		Collect:    []string{"cpu", "memory", "disk", "network", "temperature"},
	}
}

// ConfigOf returns the system section of s, to read or change in place; a
// zero (disabled) config when s holds none.
func ConfigOf(s config.Sensors) *Config { return config.SectionOf[Config](s, "system") }

// systemGroups are the allowed values of collect.
var systemGroups = []string{"cpu", "memory", "disk", "network", "temperature"}

// Validate checks the input's values, one line per problem under path.
func (s *Config) Validate(v *config.Validator, path string, _ *config.Config) {
	v.Topic(path+".topic", s.Topic)
	v.Partitions(path+".partitions", s.Partitions)
	v.Positive(path+".interval", s.Interval)
	if s.Enabled && len(s.Collect) == 0 {
		v.Add(path+".collect", "is empty but the input is enabled (allowed: %s)", strings.Join(systemGroups, ", "))
	}
	for i, g := range s.Collect {
		v.OneOf(fmt.Sprintf("%s.collect[%d]", path, i), g, systemGroups)
	}
	for i, d := range s.DiskPaths {
		if d == "" {
			v.Add(fmt.Sprintf("%s.disk_paths[%d]", path, i), "must not be empty (e.g. /)")
		}
	}
}
