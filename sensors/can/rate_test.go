package can

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
)

// readAll returns every record of topic, all partitions.
func readAll(t *testing.T, b *broker.Broker, topic string) []broker.Record {
	t.Helper()
	info, err := b.Topic(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []broker.Record
	for p := range info.Partitions {
		for off := int64(0); ; {
			res, err := b.Fetch(t.Context(), topic, p, off, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) == 0 {
				break
			}
			out = append(out, res.Records...)
			off = res.Records[len(res.Records)-1].Offset + 1
		}
	}
	return out
}

// signalRecord is a key: signal record.
type signalRecord struct {
	Message   string    `json:"message"`
	Signal    string    `json:"signal"`
	Value     *float64  `json:"value"`
	Unit      string    `json:"unit"`
	Label     string    `json:"label"`
	Interface string    `json:"interface"`
	TS        time.Time `json:"ts"`
}

// TestSignalRecordsRatesAndDeadLetters replays a hand-made log in key:
// signal mode with per-signal rates: on_change writes a value only when it
// changed, interval at most once per interval of frame time, off never,
// every_frame always; unknown ids are counted, short frames and lines that
// are not candump -l go to the dead-letter topic with the reason.
func TestSignalRecordsRatesAndDeadLetters(t *testing.T) {
	name := fmt.Sprintf("rates-%d.log", time.Now().UnixNano()) // fresh metric series with -count
	path := logPath(t, name)
	var lines []string
	for i := range 10 {
		speed := byte(0x10)
		if i >= 5 {
			speed = 0x20
		}
		// EngineSpeed raw = speed (x0.25 rpm), CoolantTemp raw = i, Throttle 7, Running = i%2.
		lines = append(lines, fmt.Sprintf("(100.%06d) can0 100#%02X00%02X%02X00000000", i*10000, speed, i, 7|byte(i%2)<<7))
	}
	lines = append(lines,
		"(100.100000) can0 7FF#00",              // unknown id
		"(100.110000) can0 100#1000",            // 2 bytes, the DBC says 8
		"this is not candump",                   // malformed
		"(100.120000) can0 100#R",               // remote frame
		"(100.130000) can0 18FEF100#0000800000", // 5 bytes of 8: short too
	)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := openBroker(t)
	cfg := testConfig(path)
	c := ConfigOf(cfg)
	c.Signals = []SignalConfig{
		{Name: "Engine.EngineSpeed", Rate: "on_change"},
		{Name: "Engine.CoolantTemp", Rate: "interval", Interval: 30 * time.Millisecond},
		{Name: "Engine.Throttle", Rate: "off"},
	}
	runInputs(t, b, cfg)()

	got := map[string][]signalRecord{}
	for _, r := range readAll(t, b, c.Topic) {
		var s signalRecord
		if err := json.Unmarshal(r.Value, &s); err != nil {
			t.Fatalf("%q: %v", r.Value, err)
		}
		if string(r.Key) != s.Message+"."+s.Signal || !r.Timestamp.Equal(s.TS) || s.Interface != "can0" || s.Value == nil {
			t.Fatalf("record key %q ts %v: %s", r.Key, r.Timestamp, r.Value)
		}
		got[s.Signal] = append(got[s.Signal], s)
	}
	values := func(sig string) []float64 {
		var out []float64
		for _, s := range got[sig] {
			out = append(out, *s.Value)
		}
		return out
	}
	for sig, want := range map[string][]float64{
		"EngineSpeed": {4, 8},                         // on_change: 0x10 * 0.25, then 0x20 * 0.25
		"CoolantTemp": {-10, -8.5, -7, -5.5},          // interval 30ms: frames 0, 3, 6, 9
		"Throttle":    nil,                            // off
		"Running":     {0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, // every_frame
	} {
		if fmt.Sprint(values(sig)) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", sig, values(sig), want)
		}
	}
	if l := got["Running"][1].Label; l != "On" || got["EngineSpeed"][0].Unit != "rpm" {
		t.Errorf("label %q, unit %q", l, got["EngineSpeed"][0].Unit)
	}

	dead := readAll(t, b, c.DeadLetterTopic)
	var reasons []string
	for _, r := range dead {
		reasons = append(reasons, string(r.Headers[0].Value))
	}
	if len(dead) != 3 || !strings.Contains(reasons[0]+reasons[1]+reasons[2], "has 2 data bytes, DBC message Engine has 8") ||
		!strings.Contains(strings.Join(reasons, "|"), name+" line 13: does not start with (timestamp)") {
		t.Fatalf("dead letters: %q", reasons)
	}
	src := "replay:" + name
	for m, want := range map[string]float64{
		"frames":     14, // 10 + unknown + 2 short + remote
		"unknown":    1,
		"skipped":    1,
		"dead":       3,
		"suppressed": 8 + 6 + 10, // EngineSpeed, CoolantTemp, Throttle
	} {
		got := map[string]float64{
			"frames": testutil.ToFloat64(framesIn.WithLabelValues(src)), "unknown": testutil.ToFloat64(framesUnknown.WithLabelValues(src)),
			"skipped": testutil.ToFloat64(framesSkipped.WithLabelValues(src)), "dead": testutil.ToFloat64(deadLettered.WithLabelValues(src)),
			"suppressed": testutil.ToFloat64(suppressed.WithLabelValues(src)),
		}[m]
		if got != want {
			t.Errorf("metric %s = %v, want %v", m, got, want)
		}
	}
}
