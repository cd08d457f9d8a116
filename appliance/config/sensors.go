package config

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Allowed values of the sensor inputs' enumerated settings.
var (
	partitioners     = []string{"hash", "round_robin"}
	mqttSchemes      = []string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}
	mqttTLSSchemes   = []string{"ssl", "tls", "mqtts", "wss"}
	mqttFormats      = []string{"raw", "json"}
	timestampFormats = []string{"rfc3339", "unix", "unix_ms", "unix_us", "unix_ns"}
	systemGroups     = []string{"cpu", "memory", "disk", "network", "temperature"}
	modbusTables     = []string{"holding", "input"}
	modbusTypes      = []string{"int16", "uint16", "int32", "uint32", "float32"}
	byteOrders       = []string{"big", "little"}
	wordOrders       = []string{"high_first", "low_first"}
)

// MaxMQTTMessageBytes is the largest sensors.mqtt.max_message_bytes (the MQTT limit).
const MaxMQTTMessageBytes = 256 * MiB

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

// ValidMQTTFilter checks an MQTT topic filter: not empty, '+' and '#' only as whole
// levels and '#' only last.
func ValidMQTTFilter(f string) error {
	if f == "" {
		return fmt.Errorf("topic filter is empty (e.g. factory/+/line/+/temp)")
	}
	if len(f) > 65535 {
		return fmt.Errorf("topic filter is %d bytes long (allowed: up to 65535)", len(f))
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: '#' must be the last level", f)
		case l != "+" && l != "#" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("topic filter %q: '+' and '#' must fill a whole level", f)
		case strings.ContainsRune(l, 0):
			return fmt.Errorf("topic filter %q contains a NUL character", f)
		}
	}
	return nil
}

// mqtt checks the MQTT input.
func (v *validator) mqtt(path string, m MQTT) {
	if m.QoS < 0 || m.QoS > 2 {
		v.add(path+".qos", "%d is not allowed (allowed: 0, 1, 2; 1 and 2 lose nothing)", m.QoS)
	}
	if err := ValidTopicName(m.DeadLetterTopic); err != nil {
		v.add(path+".dead_letter_topic", "%v", err)
	}
	if m.MaxMessageBytes < 1 || m.MaxMessageBytes > MaxMQTTMessageBytes {
		v.add(path+".max_message_bytes", "%s is out of range (allowed: 1B..%s)", m.MaxMessageBytes, ByteSize(MaxMQTTMessageBytes))
	}
	if m.BatchMaxMessages < 1 || m.BatchMaxMessages > 65535 {
		v.add(path+".batch_max_messages", "%d is out of range (allowed: 1..65535)", m.BatchMaxMessages)
	}
	if m.BatchWait < 0 || m.BatchWait > time.Second {
		v.add(path+".batch_wait", "%s is out of range (allowed: 0s..1s)", m.BatchWait)
	}
	v.positive(path+".reconnect_min", m.ReconnectMin)
	if m.ReconnectMax < m.ReconnectMin {
		v.add(path+".reconnect_max", "%s is below reconnect_min %s (allowed: >= reconnect_min)", m.ReconnectMax, m.ReconnectMin)
	}
	if m.Enabled && len(m.Brokers) == 0 {
		v.add(path+".brokers", "is empty but the input is enabled (add a broker or set enabled: false)")
	}
	if m.Enabled && len(m.Rules) == 0 {
		v.add(path+".rules", "is empty but the input is enabled (add a rule or set enabled: false)")
	}
	names := make(map[string]string)
	ids := make(map[string]string)
	for i, b := range m.Brokers {
		p := fmt.Sprintf("%s.brokers[%d]", path, i)
		name := b.Name
		if name == "" {
			name = b.URL
		}
		if first, dup := names[name]; dup && name != "" {
			v.add(p+".name", "%q is already used at %s (broker names must be unique)", name, first)
		} else {
			names[name] = p
		}
		u, err := url.Parse(b.URL)
		switch {
		case b.URL == "":
			v.add(p+".url", "must not be empty (e.g. tcp://127.0.0.1:1883 or ssl://broker:8883)")
		case err != nil || u.Host == "":
			v.add(p+".url", "%q is not a URL with a host (e.g. tcp://127.0.0.1:1883)", b.URL)
		case !slices.Contains(mqttSchemes, u.Scheme):
			v.add(p+".url", "scheme %q is not allowed (allowed: %s)", u.Scheme, strings.Join(mqttSchemes, ", "))
		case !slices.Contains(mqttTLSSchemes, u.Scheme) && (b.CAFile != "" || b.CertFile != "" || b.KeyFile != "" || b.ServerName != "" || b.InsecureSkipVerify):
			v.add(p+".url", "%q is not TLS but TLS settings are given, which would be ignored (use %s)", b.URL, strings.Join(mqttTLSSchemes, ", "))
		}
		if b.ClientID == "" {
			v.add(p+".client_id", "must not be empty: a fixed client id keeps the session and its queued messages across restarts")
		} else if first, dup := ids[b.URL+"\x00"+b.ClientID]; dup {
			v.add(p+".client_id", "%q is already used for the same url at %s (two connections would take each other's session)", b.ClientID, first)
		} else {
			ids[b.URL+"\x00"+b.ClientID] = p
		}
		if b.KeepAlive < 0 {
			v.add(p+".keep_alive", "%s is negative (allowed: 0 for 30s, or a positive duration)", b.KeepAlive)
		}
		if (b.CertFile == "") != (b.KeyFile == "") {
			v.add(p+".key_file", "cert_file and key_file must be given together")
		}
		if b.Password != "" && b.Username == "" {
			v.add(p+".username", "must be set when password is")
		}
	}
	for i, r := range m.Rules {
		p := fmt.Sprintf("%s.rules[%d]", path, i)
		if err := ValidMQTTFilter(r.Filter); err != nil {
			v.add(p+".filter", "%v", err)
		}
		if err := ValidTopicName(r.Topic); err != nil {
			v.add(p+".topic", "%v", err)
		}
		v.optionalPartitions(p+".partitions", r.Partitions)
		if n := len(strings.Split(r.Filter, "/")); r.KeyLevel < -1 || (r.KeyLevel > n && !strings.HasSuffix(r.Filter, "#")) {
			v.add(p+".key_level", "%d is out of range (allowed: -1 for the whole MQTT topic, 0 for no key, 1..%d for a level of %q)", r.KeyLevel, n, r.Filter)
		}
		v.optionalOneOf(p+".format", r.Format, mqttFormats)
		if r.TimestampField != "" && r.Format != "json" {
			v.add(p+".timestamp_field", "needs format: json")
		}
		v.optionalOneOf(p+".timestamp_format", r.TimestampFormat, timestampFormats)
	}
}

// system checks the host metrics input.
func (v *validator) system(path string, s System) {
	if err := ValidTopicName(s.Topic); err != nil {
		v.add(path+".topic", "%v", err)
	}
	v.partitions(path+".partitions", s.Partitions)
	v.positive(path+".interval", s.Interval)
	if s.Enabled && len(s.Collect) == 0 {
		v.add(path+".collect", "is empty but the input is enabled (allowed: %s)", strings.Join(systemGroups, ", "))
	}
	for i, g := range s.Collect {
		v.oneOf(fmt.Sprintf("%s.collect[%d]", path, i), g, systemGroups)
	}
	for i, d := range s.DiskPaths {
		if d == "" {
			v.add(fmt.Sprintf("%s.disk_paths[%d]", path, i), "must not be empty (e.g. /)")
		}
	}
}

// modbus checks the Modbus TCP input.
func (v *validator) modbus(path string, m Modbus) {
	if err := ValidTopicName(m.Topic); err != nil {
		v.add(path+".topic", "%v", err)
	}
	v.partitions(path+".partitions", m.Partitions)
	v.positive(path+".interval", m.Interval)
	v.positive(path+".timeout", m.Timeout)
	if m.Enabled && len(m.Devices) == 0 {
		v.add(path+".devices", "is empty but the input is enabled (add a device or set enabled: false)")
	}
	names := make(map[string]string)
	for i, d := range m.Devices {
		p := fmt.Sprintf("%s.devices[%d]", path, i)
		if d.Name == "" {
			v.add(p+".name", "must not be empty (it starts every record key)")
		} else if first, dup := names[d.Name]; dup {
			v.add(p+".name", "%q is already used at %s (device names must be unique)", d.Name, first)
		} else {
			names[d.Name] = p
		}
		if u, err := url.Parse(d.URL); err != nil || u.Scheme != "tcp" || u.Host == "" {
			v.add(p+".url", "%q is not allowed (allowed: tcp://host:port, e.g. tcp://10.0.0.5:502)", d.URL)
		}
		if d.UnitID < 0 || d.UnitID > 255 {
			v.add(p+".unit_id", "%d is out of range (allowed: 0..255)", d.UnitID)
		}
		if d.Interval < 0 {
			v.add(p+".interval", "%s is negative (allowed: 0 for modbus.interval, or a positive duration)", d.Interval)
		}
		if len(d.Registers) == 0 {
			v.add(p+".registers", "is empty (list at least one register)")
		}
		regs := make(map[string]string)
		for j, r := range d.Registers {
			rp := fmt.Sprintf("%s.registers[%d]", p, j)
			if r.Name == "" {
				v.add(rp+".name", "must not be empty (it ends the record key)")
			} else if first, dup := regs[r.Name]; dup {
				v.add(rp+".name", "%q is already used at %s (register names must be unique per device)", r.Name, first)
			} else {
				regs[r.Name] = rp
			}
			v.oneOf(rp+".table", r.Table, modbusTables)
			v.oneOf(rp+".type", r.Type, modbusTypes)
			words := 1
			if strings.HasSuffix(r.Type, "32") {
				words = 2
			}
			if r.Address < 0 || r.Address+words > 65536 {
				v.add(rp+".address", "%d is out of range (allowed: 0..%d for %s)", r.Address, 65536-words, r.Type)
			}
			v.optionalOneOf(rp+".byte_order", r.ByteOrder, byteOrders)
			v.optionalOneOf(rp+".word_order", r.WordOrder, wordOrders)
			for _, f := range []struct {
				name string
				val  float64
			}{{"scale", r.Scale}, {"offset", r.Offset}} {
				if math.IsNaN(f.val) || math.IsInf(f.val, 0) {
					v.add(rp+"."+f.name, "%v is not allowed (allowed: a finite number)", f.val)
				}
			}
		}
	}
}
