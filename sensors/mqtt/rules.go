package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// Record header names.
const (
	HeaderTopic    = "mqtt.topic"         // HeaderTopic is the MQTT topic of the message.
	HeaderQoS      = "mqtt.qos"           // HeaderQoS is the QoS it was delivered with: 0, 1 or 2.
	HeaderRetained = "mqtt.retained"      // HeaderRetained is true for a retained message.
	HeaderReason   = "dead_letter.reason" // HeaderReason says why a message was dead-lettered.
	HeaderSize     = "dead_letter.size"   // HeaderSize is the payload size of an oversized message.
)

// Dead-letter reasons, also the values of the reason label of the dead-letter metric.
const (
	ReasonInvalidJSON = "invalid_json" // the payload of a json rule is not JSON
	ReasonTimestamp   = "timestamp"    // the timestamp field is missing or unreadable
	ReasonNoRule      = "no_rule"      // no rule's filter matches the MQTT topic
	ReasonTooLarge    = "too_large"    // the payload is over max_message_bytes
)

// rule is one compiled mapping rule.
type rule struct {
	filter     []string // the filter's levels
	topic      string
	partitions int32
	keyLevel   int
	json       bool
	tsPath     []string // JSON field path of the timestamp; nil for none
	tsFormat   string
}

// compileRules checks and compiles the configured rules.
func compileRules(cfgs []RuleConfig) ([]*rule, error) {
	var out []*rule
	for i, c := range cfgs {
		if err := ValidFilter(c.Filter); err != nil {
			return nil, fmt.Errorf("rules[%d].filter: %w", i, err)
		}
		if err := config.ValidTopicName(c.Topic); err != nil {
			return nil, fmt.Errorf("rules[%d].topic: %w", i, err)
		}
		r := &rule{filter: strings.Split(c.Filter, "/"), topic: c.Topic, partitions: c.Partitions, keyLevel: c.KeyLevel, tsFormat: c.TimestampFormat}
		switch c.Format {
		case "", "raw":
		case "json":
			r.json = true
		default:
			return nil, fmt.Errorf("rules[%d].format: %q is not allowed (allowed: raw, json)", i, c.Format)
		}
		if c.TimestampField != "" {
			if !r.json {
				return nil, fmt.Errorf("rules[%d].timestamp_field needs format: json", i)
			}
			r.tsPath = strings.Split(c.TimestampField, ".")
		}
		out = append(out, r)
	}
	return out, nil
}

// matchFilter reports whether an MQTT topic (split into levels) matches a filter,
// with MQTT's rules: + is one level, # is any number of levels including none, and
// wildcards at the start do not match topics beginning with $.
func matchFilter(filter, topic []string) bool {
	if len(topic) > 0 && strings.HasPrefix(topic[0], "$") && len(filter) > 0 && (filter[0] == "+" || filter[0] == "#") {
		return false
	}
	for i, f := range filter {
		if f == "#" {
			return true
		}
		if i >= len(topic) {
			return false
		}
		if f != "+" && f != topic[i] {
			return false
		}
	}
	return len(filter) == len(topic)
}

// key returns the record key for an MQTT topic under this rule.
func (r *rule) key(topic string, levels []string) []byte {
	switch {
	case r.keyLevel == -1:
		return []byte(topic)
	case r.keyLevel >= 1 && r.keyLevel <= len(levels):
		return []byte(levels[r.keyLevel-1])
	}
	return nil
}

// timestamp reads the timestamp field from a JSON payload.
func (r *rule) timestamp(payload []byte) (time.Time, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return time.Time{}, fmt.Errorf("payload is not JSON: %w", err)
	}
	for _, name := range r.tsPath {
		obj, ok := v.(map[string]any)
		if !ok {
			return time.Time{}, fmt.Errorf("timestamp field %s: not found", strings.Join(r.tsPath, "."))
		}
		if v, ok = obj[name]; !ok {
			return time.Time{}, fmt.Errorf("timestamp field %s: not found", strings.Join(r.tsPath, "."))
		}
	}
	ts, err := parseTimestamp(v, r.tsFormat)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp field %s: %w", strings.Join(r.tsPath, "."), err)
	}
	return ts, nil
}

// parseTimestamp reads a JSON value as a time in format ("" is rfc3339 for strings
// and unix_ms for numbers).
func parseTimestamp(v any, format string) (time.Time, error) {
	var num string
	switch x := v.(type) {
	case string:
		if format == "" || format == "rfc3339" {
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", x)
			}
			return t, nil
		}
		num = x
	case json.Number:
		if format == "rfc3339" {
			return time.Time{}, fmt.Errorf("%s is a number, not an RFC 3339 string", x)
		}
		num = x.String()
	default:
		return time.Time{}, fmt.Errorf("%v is neither a string nor a number", v)
	}
	unit := map[string]int64{"unix": 1e9, "": 1e6, "unix_ms": 1e6, "unix_us": 1e3, "unix_ns": 1}[format]
	if unit == 0 {
		return time.Time{}, fmt.Errorf("format %q is not known", format)
	}
	if len(num) > 64 {
		return time.Time{}, fmt.Errorf("%.20s... is too long for a time", num)
	}
	if strings.ContainsAny(num, "eE") { // keep big.Rat away from 1e999999999
		if f, err := strconv.ParseFloat(num, 64); err != nil || math.IsNaN(f) || math.Abs(f) > 1e20 {
			return time.Time{}, fmt.Errorf("%s is out of range", num)
		}
	}
	r, ok := new(big.Rat).SetString(num) // exact, so 1735787045.678 s is exactly .678
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not a number", num)
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	ns := new(big.Int).Quo(r.Num(), r.Denom())
	if !ns.IsInt64() {
		return time.Time{}, fmt.Errorf("%s is out of range", num)
	}
	return time.Unix(0, ns.Int64()).UTC(), nil
}

// mapped is where one message goes.
type mapped struct {
	topic      string
	partitions int32
	rec        broker.Record
	reason     string // dead-letter reason, empty when the message goes to its rule's topic
}

var errNoRule = errors.New("no rule matches the MQTT topic")

// mapper turns MQTT messages into records.
type mapper struct {
	rules      []*rule
	deadLetter string
	maxBytes   int
}

// mapMessage maps one message to its record, or to a dead-letter record with the
// reason in a header. It never fails: what cannot be mapped is dead-lettered.
func (m *mapper) mapMessage(topic string, qos byte, retained bool, payload []byte, at time.Time) mapped {
	levels := strings.Split(topic, "/")
	hdrs := []broker.Header{
		{Key: HeaderTopic, Value: []byte(topic)},
		{Key: HeaderQoS, Value: []byte{'0' + qos}},
		{Key: HeaderRetained, Value: []byte(strconv.FormatBool(retained))},
	}
	var r *rule
	for _, c := range m.rules {
		if matchFilter(c.filter, levels) {
			r = c
			break
		}
	}
	dead := func(key []byte, reason string, detail error, value []byte, extra ...broker.Header) mapped {
		h := append(hdrs, broker.Header{Key: HeaderReason, Value: []byte(reason + ": " + detail.Error())})
		h = append(h, extra...)
		return mapped{topic: m.deadLetter, rec: broker.Record{Key: key, Value: value, Headers: h, Timestamp: at}, reason: reason}
	}
	if r == nil {
		return dead(nil, ReasonNoRule, errNoRule, payload)
	}
	key := r.key(topic, levels)
	if len(payload) > m.maxBytes {
		return dead(key, ReasonTooLarge, fmt.Errorf("payload of %d bytes is over max_message_bytes %d (value dropped)", len(payload), m.maxBytes), nil,
			broker.Header{Key: HeaderSize, Value: []byte(strconv.Itoa(len(payload)))})
	}
	ts := at
	if r.json {
		if !json.Valid(payload) {
			return dead(key, ReasonInvalidJSON, errors.New("payload is not valid JSON"), payload)
		}
		if r.tsPath != nil {
			t, err := r.timestamp(payload)
			if err != nil {
				return dead(key, ReasonTimestamp, err, payload)
			}
			ts = t
		}
	}
	return mapped{topic: r.topic, partitions: r.partitions, rec: broker.Record{Key: key, Value: payload, Headers: hdrs, Timestamp: ts}}
}
