package mqtt

import (
	"strings"
	"testing"
	"time"
)

func TestMatchFilter(t *testing.T) {
	for _, tt := range []struct {
		filter, topic string
		want          bool
	}{
		{"factory/+/line/+/temp", "factory/p1/line/3/temp", true},
		{"factory/+/line/+/temp", "factory/p1/line/3/hum", false},
		{"factory/+/line/+/temp", "factory/p1/line/temp", false},
		{"factory/#", "factory", true},
		{"factory/#", "factory/a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/broker/load", false},
		{"+/broker/load", "$SYS/broker/load", false},
		{"$SYS/#", "$SYS/broker/load", true},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
	} {
		if got := matchFilter(strings.Split(tt.filter, "/"), strings.Split(tt.topic, "/")); got != tt.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func testMapper(t *testing.T, rules ...RuleConfig) *mapper {
	t.Helper()
	rs, err := compileRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return &mapper{rules: rs, deadLetter: "dlq", maxBytes: 64}
}

func header(t *testing.T, m mapped, key string) string {
	t.Helper()
	for _, h := range m.rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestMapMessage(t *testing.T) {
	m := testMapper(t,
		RuleConfig{Filter: "factory/+/line/+/temp", Topic: "temperature", KeyLevel: 2, Format: "json", TimestampField: "meta.ts", Partitions: 6},
		RuleConfig{Filter: "raw/#", Topic: "raw", KeyLevel: -1},
	)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

	ok := m.mapMessage("factory/p7/line/3/temp", 1, true, []byte(`{"v":21.5,"meta":{"ts":1735787045123}}`), at)
	if ok.reason != "" || ok.topic != "temperature" || ok.partitions != 6 || string(ok.rec.Key) != "p7" {
		t.Fatalf("mapped to %+v", ok)
	}
	if want := time.UnixMilli(1735787045123); !ok.rec.Timestamp.Equal(want) {
		t.Errorf("timestamp %v, want %v", ok.rec.Timestamp, want)
	}
	if header(t, ok, HeaderTopic) != "factory/p7/line/3/temp" || header(t, ok, HeaderQoS) != "1" || header(t, ok, HeaderRetained) != "true" {
		t.Errorf("headers %+v", ok.rec.Headers)
	}

	raw := m.mapMessage("raw/x/y", 0, false, []byte("not json"), at)
	if raw.reason != "" || raw.topic != "raw" || string(raw.rec.Key) != "raw/x/y" || !raw.rec.Timestamp.Equal(at) {
		t.Errorf("raw mapped to %+v", raw)
	}

	for _, tt := range []struct {
		name, topic, payload, reason, detail string
	}{
		{"invalid json", "factory/p1/line/1/temp", `{"v":`, ReasonInvalidJSON, "not valid JSON"},
		{"trailing garbage", "factory/p1/line/1/temp", `{"v":1} x`, ReasonInvalidJSON, "not valid JSON"},
		{"no timestamp", "factory/p1/line/1/temp", `{"v":1}`, ReasonTimestamp, "meta.ts: not found"},
		{"bad timestamp", "factory/p1/line/1/temp", `{"meta":{"ts":"yesterday"}}`, ReasonTimestamp, "not an RFC 3339 time"},
		{"no rule", "office/lamp", `{}`, ReasonNoRule, "no rule matches"},
		{"too large", "raw/big", strings.Repeat("x", 65), ReasonTooLarge, "65 bytes is over max_message_bytes 64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := m.mapMessage(tt.topic, 1, false, []byte(tt.payload), at)
			if d.reason != tt.reason || d.topic != "dlq" {
				t.Fatalf("mapped to topic %q reason %q, want dlq %q", d.topic, d.reason, tt.reason)
			}
			if r := header(t, d, HeaderReason); !strings.HasPrefix(r, tt.reason+": ") || !strings.Contains(r, tt.detail) {
				t.Errorf("reason header %q, want %q with %q", r, tt.reason, tt.detail)
			}
			if header(t, d, HeaderTopic) != tt.topic {
				t.Errorf("dead letter lost its mqtt.topic header")
			}
			if tt.reason == ReasonTooLarge {
				if d.rec.Value != nil || header(t, d, HeaderSize) != "65" {
					t.Errorf("oversized: value %d bytes, size header %q", len(d.rec.Value), header(t, d, HeaderSize))
				}
			} else if string(d.rec.Value) != tt.payload {
				t.Errorf("dead letter value %q, want the payload", d.rec.Value)
			}
		})
	}
}

func TestParseTimestamp(t *testing.T) {
	ref := time.Date(2025, 1, 2, 3, 4, 5, 678000000, time.UTC)
	m := testMapper(t)
	_ = m
	for _, tt := range []struct {
		payload, format string
		want            time.Time
		bad             bool
	}{
		{`{"ts":"2025-01-02T03:04:05.678Z"}`, "", ref, false},
		{`{"ts":"2025-01-02T05:04:05.678+02:00"}`, "rfc3339", ref, false},
		{`{"ts":1735787045678}`, "", ref, false},
		{`{"ts":1735787045.678}`, "unix", ref, false},
		{`{"ts":"1735787045"}`, "unix", ref.Truncate(time.Second), false},
		{`{"ts":1735787045678000}`, "unix_us", ref, false},
		{`{"ts":1735787045678000000}`, "unix_ns", ref, false},
		{`{"ts":1e300}`, "unix", time.Time{}, true},
		{`{"ts":1e999999999}`, "unix", time.Time{}, true},
		{`{"ts":99999999999999999}`, "unix", time.Time{}, true},
		{`{"ts":true}`, "", time.Time{}, true},
		{`{"ts":17}`, "rfc3339", time.Time{}, true},
	} {
		rs, err := compileRules([]RuleConfig{{Filter: "a", Topic: "t", Format: "json", TimestampField: "ts", TimestampFormat: tt.format}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := rs[0].timestamp([]byte(tt.payload))
		if tt.bad {
			if err == nil {
				t.Errorf("%s as %q: got %v, want an error", tt.payload, tt.format, got)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("%s as %q: got %v, %v; want %v", tt.payload, tt.format, got, err, tt.want)
		}
	}
}
