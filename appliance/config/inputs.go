package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// InputConfig is the config of one input kind, the section sensors.<name>, owned
// by the input's own package (sensors/<name>/). It is a pointer to a struct whose
// fields carry yaml tags: Load decodes the section into it with the same strict
// walker as the rest of the file, so errors name the line and the field path.
type InputConfig interface {
	// Validate checks the values and adds one line per problem to v, each under
	// path (sensors.<name>). c is the whole config, for settings that refer to
	// other sections.
	Validate(v *Validator, path string, c *Config)
}

// InputSpec is what an input kind registers about its config.
type InputSpec struct {
	// Default returns a fresh config holding the input's defaults (sharing
	// nothing with earlier calls).
	Default func() InputConfig
	// Sample is the input's documented section as it appears under sensors: in
	// configs/katka.yaml, starting with its comment and "<name>:" at column 0.
	Sample string
}

// inputRegistry holds the registered input kinds. It is the one registry of
// input configs, filled by the inputs' init functions (Telegraf's shape).
type inputRegistry struct {
	mu    sync.Mutex
	specs map[string]InputSpec
}

var inputs = inputRegistry{specs: map[string]InputSpec{}}

// AddInput registers the config of the input kind name (the key under sensors:);
// call it from the input package's init. Adding a name twice, or the reserved
// name partitioner, is a programming error and panics at start.
func AddInput(name string, spec InputSpec) {
	inputs.mu.Lock()
	defer inputs.mu.Unlock()
	if _, dup := inputs.specs[name]; dup || name == "partitioner" || spec.Default == nil {
		panic("config: input " + name + " registered twice, reserved, or without defaults")
	}
	inputs.specs[name] = spec
}

// InputNames lists the registered input kinds, sorted.
func InputNames() []string {
	inputs.mu.Lock()
	defer inputs.mu.Unlock()
	names := make([]string, 0, len(inputs.specs))
	for n := range inputs.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// InputSample returns the documented sample section of the input kind name.
func InputSample(name string) (string, bool) {
	inputs.mu.Lock()
	defer inputs.mu.Unlock()
	s, ok := inputs.specs[name]
	return s.Sample, ok
}

// defaultInputs returns a fresh default config of every registered input kind.
func defaultInputs() map[string]InputConfig {
	inputs.mu.Lock()
	defer inputs.mu.Unlock()
	m := make(map[string]InputConfig, len(inputs.specs))
	for n, s := range inputs.specs {
		m[n] = s.Default()
	}
	return m
}

// Input returns the config of the input kind name in s, or nil when s holds
// none (a Sensors built by hand, or an input that is not registered): the
// input then counts as disabled, as a zero config would.
func (s Sensors) Input(name string) InputConfig {
	return s.Inputs[name]
}

// SectionOf returns s's section of the input kind name as *T, to read or
// change in place; a zero T (a disabled input) when s holds none.
func SectionOf[T any](s Sensors, name string) *T {
	if c, ok := any(s.Inputs[name]).(*T); ok && c != nil {
		return c
	}
	return new(T)
}

// Register registers an input kind's config from its defaults and sample:
// AddInput with Default returning defaults().
func Register[T any, P interface {
	*T
	InputConfig
}](name string, defaults func() P, sample string) {
	AddInput(name, InputSpec{Default: func() InputConfig { return defaults() }, Sample: sample})
}

// sensorsType is the Sensors struct, whose input sections the walker looks up
// in the registry rather than in struct fields.
var sensorsType = reflect.TypeFor[Sensors]()

// inputField finds the input section key of a Sensors value v: the decoded
// config to walk into, or false if key is no registered input.
func inputField(v reflect.Value, key string) (reflect.Value, bool) {
	s := v.Addr().Interface().(*Sensors)
	ic, ok := s.Inputs[key]
	if !ok {
		return reflect.Value{}, false
	}
	return reflect.ValueOf(ic).Elem(), true
}

// sensorsKeys lists the keys allowed under sensors: partitioner, then the inputs.
func sensorsKeys(v reflect.Value) []string {
	s := v.Addr().Interface().(*Sensors)
	keys := make([]string, 0, len(s.Inputs))
	for n := range s.Inputs {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	return keys
}

// Validator collects one-line problems, each naming a field path; an input's
// InputConfig.Validate gets one.
type Validator struct{ v *validator }

// Add records a problem with the value at path.
func (x *Validator) Add(path, format string, args ...any) { x.v.add(path, format, args...) }

// OneOf checks that val is one of allowed.
func (x *Validator) OneOf(path, val string, allowed []string) { x.v.oneOf(path, val, allowed) }

// OptionalOneOf checks that val is empty (the default) or one of allowed.
func (x *Validator) OptionalOneOf(path, val string, allowed []string) {
	x.v.optionalOneOf(path, val, allowed)
}

// Positive checks that a duration is above zero.
func (x *Validator) Positive(path string, d time.Duration) { x.v.positive(path, d) }

// Partitions checks a partition count (1..MaxPartitions).
func (x *Validator) Partitions(path string, n int32) { x.v.partitions(path, n) }

// OptionalPartitions checks a partition count where 0 means topics.default_partitions.
func (x *Validator) OptionalPartitions(path string, n int32) { x.v.optionalPartitions(path, n) }

// Topic checks a topic name (ValidTopicName).
func (x *Validator) Topic(path, name string) {
	if err := ValidTopicName(name); err != nil {
		x.v.add(path, "%v", err)
	}
}

// Allowed values of sensors.partitioner besides a partitioner plugin instance.
var partitioners = []string{"hash", "round_robin"}

// optionalOneOf checks that val is empty (the default) or one of allowed.
func (v *validator) optionalOneOf(path, val string, allowed []string) {
	if val != "" && !slices.Contains(allowed, val) {
		v.add(path, "%q is not allowed (allowed: %s, or leave it out)", val, strings.Join(allowed, ", "))
	}
}

// optionalPartitions checks a partition count where 0 means the default.
func (v *validator) optionalPartitions(path string, n int32) {
	if n < 0 || n > MaxPartitions {
		v.add(path, "%d is out of range (allowed: 0 for topics.default_partitions, or 1..%d)", n, MaxPartitions)
	}
}

// sensors checks sensors.partitioner and every input section.
func (v *validator) sensors(c *Config) {
	if p := c.Sensors.Partitioner; !slices.Contains(partitioners, p) && !slices.ContainsFunc(c.Plugins.Instances, func(in PluginInstance) bool { return in.Name == p }) {
		v.add("sensors.partitioner", "%q is not allowed (allowed: %s, or the name of a partitioner instance in plugins.instances)", p, strings.Join(partitioners, ", "))
	}
	names := make([]string, 0, len(c.Sensors.Inputs))
	for n := range c.Sensors.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ic := c.Sensors.Inputs[n]; ic != nil {
			ic.Validate(&Validator{v}, "sensors."+n, c)
		} else {
			v.add("sensors."+n, "%s", fmt.Sprintf("input %s has no config", n))
		}
	}
}
