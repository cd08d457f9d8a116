package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Plugins configures out-of-process plugins (partitioners, processors, sinks,
// sources) that katka discovers in Dir, verifies and supervises.
type Plugins struct {
	// Dir holds one subdirectory per plugin, each with a manifest.yaml.
	Dir string `yaml:"dir"`
	// CallTimeout bounds every call into a plugin; a plugin that overruns it is
	// killed and restarted.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// RestartMin and RestartMax bound the exponential backoff between restarts.
	RestartMin time.Duration `yaml:"restart_min"`
	RestartMax time.Duration `yaml:"restart_max"`
	// BatchMaxRecords is the most records handed to a plugin in one call.
	BatchMaxRecords int `yaml:"batch_max_records"`
	// BatchWait is how long a batch smaller than 100 records waits for more.
	BatchWait time.Duration `yaml:"batch_wait"`
	// StateTopic is the compacted topic holding the committed input positions,
	// processor state and source positions of every plugin instance.
	StateTopic string `yaml:"state_topic"`
	// Instances are the plugins to run.
	Instances []PluginInstance `yaml:"instances"`
}

// PluginInstance is one running plugin.
type PluginInstance struct {
	// Name identifies the instance (positions, state, logs, metrics); unique.
	Name string `yaml:"name"`
	// Plugin is the name in the plugin's manifest.
	Plugin string `yaml:"plugin"`
	// Inputs are the topics a sink or processor reads.
	Inputs []string `yaml:"inputs"`
	// Output is the topic a processor or source writes by default.
	Output string `yaml:"output"`
	// Partitions is the output topic's partition count when katka creates it; 0
	// means topics.default_partitions.
	Partitions int32 `yaml:"partitions"`
	// Partitioner chooses output partitions: hash (default), round_robin, or the
	// name of a partitioner plugin instance.
	Partitioner string `yaml:"partitioner"`
	// Settings are "key=value" strings handed to the plugin.
	Settings []string `yaml:"settings"`
}

// Limits of the plugins section.
const (
	MinPluginBatch = 1
	MaxPluginBatch = 100000
)

// builtinPartitioners are the partitioner values that are not plugin instances.
var builtinPartitioners = []string{"hash", "round_robin"}

// defaultPlugins is the plugins section of Default(): nothing runs.
func defaultPlugins() Plugins {
	return Plugins{
		Dir:             "./plugins",
		CallTimeout:     10 * time.Second,
		RestartMin:      100 * time.Millisecond,
		RestartMax:      30 * time.Second,
		BatchMaxRecords: 1000,
		BatchWait:       20 * time.Millisecond,
		StateTopic:      "__katka_plugins",
	}
}

// plugins checks the plugins section. Whether a plugin's kind fits its
// instance (inputs for sinks, an output for sources) is checked at start,
// against its manifest.
func (v *validator) plugins(path string, p Plugins) {
	if len(p.Instances) > 0 && strings.TrimSpace(p.Dir) == "" {
		v.add(path+".dir", "must not be empty when instances are configured (e.g. ./plugins)")
	}
	v.positive(path+".call_timeout", p.CallTimeout)
	v.positive(path+".restart_min", p.RestartMin)
	if p.RestartMax < p.RestartMin {
		v.add(path+".restart_max", "%s is less than restart_min %s", p.RestartMax, p.RestartMin)
	}
	if p.BatchMaxRecords < MinPluginBatch || p.BatchMaxRecords > MaxPluginBatch {
		v.add(path+".batch_max_records", "%d is out of range (allowed: %d..%d)", p.BatchMaxRecords, MinPluginBatch, MaxPluginBatch)
	}
	if p.BatchWait < 0 || p.BatchWait > 10*time.Second {
		v.add(path+".batch_wait", "%s is out of range (allowed: 0s..10s)", p.BatchWait)
	}
	if err := ValidTopicName(p.StateTopic); err != nil {
		v.add(path+".state_topic", "%v", err)
	}
	names := map[string]string{}
	for i, in := range p.Instances {
		ip := fmt.Sprintf("%s.instances[%d]", path, i)
		switch {
		case in.Name == "":
			v.add(ip+".name", "must not be empty")
		case strings.ContainsAny(in.Name, "\x00/ "):
			v.add(ip+".name", "%q must not contain '/', spaces or NUL", in.Name)
		case names[in.Name] != "":
			v.add(ip+".name", "%q is already listed at %s (instance names must be unique)", in.Name, names[in.Name])
		default:
			names[in.Name] = ip
		}
		if in.Plugin == "" {
			v.add(ip+".plugin", "must not be empty (the name in the plugin's manifest.yaml)")
		}
		for j, t := range in.Inputs {
			if err := ValidTopicName(t); err != nil {
				v.add(fmt.Sprintf("%s.inputs[%d]", ip, j), "%v", err)
			}
		}
		if in.Output != "" {
			if err := ValidTopicName(in.Output); err != nil {
				v.add(ip+".output", "%v", err)
			}
		}
		v.optionalPartitions(ip+".partitions", in.Partitions)
		for j, s := range in.Settings {
			if k, _, ok := strings.Cut(s, "="); !ok || strings.TrimSpace(k) == "" {
				v.add(fmt.Sprintf("%s.settings[%d]", ip, j), "%q is not key=value", s)
			}
		}
	}
	for i, in := range p.Instances {
		if in.Partitioner == "" || slices.Contains(builtinPartitioners, in.Partitioner) {
			continue
		}
		if _, ok := names[in.Partitioner]; !ok || in.Partitioner == in.Name {
			v.add(fmt.Sprintf("%s.instances[%d].partitioner", path, i), "%q is not allowed (allowed: %s, or the name of a partitioner instance)", in.Partitioner, strings.Join(builtinPartitioners, ", "))
		}
	}
}
