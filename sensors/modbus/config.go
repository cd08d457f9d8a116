package modbus

import (
	_ "embed"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// Config configures the Modbus TCP polling input (sensors.modbus).
type Config struct {
	// Enabled turns the input on.
	Enabled bool `yaml:"enabled"`
	// Topic receives one JSON record per register reading.
	Topic string `yaml:"topic"`
	// Partitions is the partition count used when the topic is created.
	Partitions int32 `yaml:"partitions"`
	// Interval is the default time between two polls of a device.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one request to a device.
	Timeout time.Duration `yaml:"timeout"`
	// Devices lists the polled devices.
	Devices []DeviceConfig `yaml:"devices"`
}

// DeviceConfig is one Modbus TCP device.
type DeviceConfig struct {
	// Name identifies the device; it starts every record key.
	Name string `yaml:"name"`
	// URL is tcp://host:port.
	URL string `yaml:"url"`
	// UnitID is the Modbus unit (slave) id, 0..255.
	UnitID int `yaml:"unit_id"`
	// Interval overrides modbus.interval when not 0.
	Interval time.Duration `yaml:"interval"`
	// Registers lists the readings taken each poll.
	Registers []RegisterConfig `yaml:"registers"`
}

// RegisterConfig is one reading: a typed value at a register address.
type RegisterConfig struct {
	// Name identifies the reading within its device.
	Name string `yaml:"name"`
	// Table is holding or input.
	Table string `yaml:"table"`
	// Address is the first register's 0-based address.
	Address int `yaml:"address"`
	// Type is int16, uint16, int32, uint32 or float32.
	Type string `yaml:"type"`
	// ByteOrder is big (default) or little: the byte order within each register.
	ByteOrder string `yaml:"byte_order"`
	// WordOrder is high_first (default) or low_first: the register order of 32-bit values.
	WordOrder string `yaml:"word_order"`
	// Scale multiplies the raw value; 0 means 1.
	Scale float64 `yaml:"scale"`
	// Offset is added after scaling.
	Offset float64 `yaml:"offset"`
	// Unit is carried in each reading.
	Unit string `yaml:"unit"`
}

// sample is this input's documented section of configs/katka.yaml.
//
//go:embed sample.yaml
var sample string

func init() { config.Register("modbus", DefaultConfig, sample) }

// DefaultConfig returns the built-in config: off, polls each second.
func DefaultConfig() *Config {
	return &Config{
		Topic:      "sensors.modbus",
		Partitions: 3,
		Interval:   time.Second,
		Timeout:    2 * time.Second,
	}
}

// ConfigOf returns the modbus section of s, to read or change in place; a
// zero (disabled) config when s holds none.
func ConfigOf(s config.Sensors) *Config { return config.SectionOf[Config](s, "modbus") }

// Allowed values of the enumerated register settings.
var (
	modbusTables = []string{"holding", "input"}
	modbusTypes  = []string{"int16", "uint16", "int32", "uint32", "float32"}
	byteOrders   = []string{"big", "little"}
	wordOrders   = []string{"high_first", "low_first"}
)

// Validate checks the input's values, one line per problem under path.
func (m *Config) Validate(v *config.Validator, path string, _ *config.Config) {
	v.Topic(path+".topic", m.Topic)
	v.Partitions(path+".partitions", m.Partitions)
	v.Positive(path+".interval", m.Interval)
	v.Positive(path+".timeout", m.Timeout)
	if m.Enabled && len(m.Devices) == 0 {
		v.Add(path+".devices", "is empty but the input is enabled (add a device or set enabled: false)")
	}
	names := make(map[string]string)
	for i, d := range m.Devices {
		p := fmt.Sprintf("%s.devices[%d]", path, i)
		if d.Name == "" {
			v.Add(p+".name", "must not be empty (it starts every record key)")
		} else if first, dup := names[d.Name]; dup {
			v.Add(p+".name", "%q is already used at %s (device names must be unique)", d.Name, first)
		} else {
			names[d.Name] = p
		}
		if u, err := url.Parse(d.URL); err != nil || u.Scheme != "tcp" || u.Host == "" {
			v.Add(p+".url", "%q is not allowed (allowed: tcp://host:port, e.g. tcp://10.0.0.5:502)", d.URL)
		}
		if d.UnitID < 0 || d.UnitID > 255 {
			v.Add(p+".unit_id", "%d is out of range (allowed: 0..255)", d.UnitID)
		}
		if d.Interval < 0 {
			v.Add(p+".interval", "%s is negative (allowed: 0 for modbus.interval, or a positive duration)", d.Interval)
		}
		if len(d.Registers) == 0 {
			v.Add(p+".registers", "is empty (list at least one register)")
		}
		regs := make(map[string]string)
		for j, r := range d.Registers {
			rp := fmt.Sprintf("%s.registers[%d]", p, j)
			if r.Name == "" {
				v.Add(rp+".name", "must not be empty (it ends the record key)")
			} else if first, dup := regs[r.Name]; dup {
				v.Add(rp+".name", "%q is already used at %s (register names must be unique per device)", r.Name, first)
			} else {
				regs[r.Name] = rp
			}
			v.OneOf(rp+".table", r.Table, modbusTables)
			v.OneOf(rp+".type", r.Type, modbusTypes)
			words := 1
			if strings.HasSuffix(r.Type, "32") {
				words = 2
			}
			if r.Address < 0 || r.Address+words > 65536 {
				v.Add(rp+".address", "%d is out of range (allowed: 0..%d for %s)", r.Address, 65536-words, r.Type)
			}
			v.OptionalOneOf(rp+".byte_order", r.ByteOrder, byteOrders)
			v.OptionalOneOf(rp+".word_order", r.WordOrder, wordOrders)
			for _, f := range []struct {
				name string
				val  float64
			}{{"scale", r.Scale}, {"offset", r.Offset}} {
				if math.IsNaN(f.val) || math.IsInf(f.val, 0) {
					v.Add(rp+"."+f.name, "%v is not allowed (allowed: a finite number)", f.val)
				}
			}
		}
	}
}
