package simulated

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/linkstate"
)

// record is one call to fakeProducer.Produce.
type record struct {
	topic      string
	key, value []byte
	ts         time.Time
}

// fakeProducer keeps what it is given, or fails with err.
type fakeProducer struct {
	mu    sync.Mutex
	recs  []record
	calls atomic.Int64
	err   error
}

func (f *fakeProducer) Produce(_ context.Context, topic string, key, value []byte, ts time.Time) error {
	f.calls.Add(1)
	if f.err != nil {
		return f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, record{topic, key, value, ts})
	return nil
}

// perKey counts records per key.
func (f *fakeProducer) perKey() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]int)
	for _, r := range f.recs {
		m[string(r.key)]++
	}
	return m
}

// testConfig is the default simulated config with a short interval.
func testConfig(interval time.Duration) Config {
	c := *DefaultConfig()
	c.Interval = interval
	return c
}

func TestGeneratorsStayInBounds(t *testing.T) {
	for _, kind := range []string{"sine", "random_walk", "step", "counter"} {
		t.Run(kind, func(t *testing.T) {
			sn, err := newSensor(SensorConfig{ID: "s", Kind: kind, Min: -2, Max: 3, Period: time.Minute, Noise: 0.5})
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for i := range 100000 {
				v := sn.read(time.Duration(i) * 10 * time.Millisecond)
				if v < -2 || v > 3 || math.IsNaN(v) {
					t.Fatalf("reading %d = %v, outside -2..3", i, v)
				}
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			// Over many readings each signal covers most of its range.
			if lo > -1 || hi < 2 {
				t.Errorf("readings span only %v..%v of -2..3", lo, hi)
			}
		})
	}
}

func TestSineShape(t *testing.T) {
	g := sine{min: 18, max: 24, period: time.Minute}
	for _, tt := range []struct {
		at   time.Duration
		want float64
	}{{0, 21}, {15 * time.Second, 24}, {30 * time.Second, 21}, {45 * time.Second, 18}, {time.Minute, 21}} {
		if got := g.next(tt.at); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("sine at %s = %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestStepAlternates(t *testing.T) {
	g := step{min: 0, max: 1, period: 10 * time.Second}
	for _, tt := range []struct {
		at   time.Duration
		want float64
	}{{0, 0}, {4 * time.Second, 0}, {5 * time.Second, 1}, {9 * time.Second, 1}, {10 * time.Second, 0}, {15 * time.Second, 1}} {
		if got := g.next(tt.at); got != tt.want {
			t.Errorf("step at %s = %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestCounterWraps(t *testing.T) {
	sn, err := newSensor(SensorConfig{ID: "c", Kind: "counter", Min: 5, Max: 8})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{5, 6, 7, 8, 5, 6, 7, 8, 5}
	for i, w := range want {
		if got := sn.read(0); got != w {
			t.Fatalf("reading %d = %v, want %v (all: %v)", i, got, w, want)
		}
	}
}

func TestNoiseIsSeededBySensorID(t *testing.T) {
	c := SensorConfig{ID: "temp-1", Kind: "random_walk", Min: 0, Max: 10, Noise: 1}
	a, _ := newSensor(c)
	b, _ := newSensor(c)
	for i := range 100 {
		if va, vb := a.read(0), b.read(0); va != vb {
			t.Fatalf("reading %d differs between two sensors with the same id: %v, %v", i, va, vb)
		}
	}
}

func TestNewRejects(t *testing.T) {
	good := testConfig(time.Second)
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"topic", func(c *Config) { c.Topic = "" }, "topic name is empty"},
		{"interval", func(c *Config) { c.Interval = 0 }, "interval 0s must be positive"},
		{"kind", func(c *Config) { c.Sensors[0].Kind = "saw" }, `sensors[0] "temp-1": kind "saw" is not known`},
		{"period", func(c *Config) { c.Sensors[0].Period = 0 }, "needs a positive period"},
		{"min max", func(c *Config) { c.Sensors[1].Min = 2 }, `sensors[1] "pressure-1": min 2 is above max 1.1`},
		{"infinite", func(c *Config) { c.Sensors[1].Max = math.Inf(1) }, "must be finite"},
		{"noise", func(c *Config) { c.Sensors[2].Noise = math.NaN() }, "noise NaN"},
		{"empty id", func(c *Config) { c.Sensors[2].ID = "" }, "id is empty"},
		{"duplicate id", func(c *Config) { c.Sensors[2].ID = "temp-1" }, `id "temp-1" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			c.Sensors = append([]SensorConfig(nil), good.Sensors...)
			tt.mutate(&c)
			_, err := New(c, &fakeProducer{}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(good, nil, nil); err == nil {
		t.Fatal("New accepted a nil producer")
	}
}

func TestRunWritesReadings(t *testing.T) {
	const n = 5
	cfg := testConfig(2 * time.Millisecond)
	p := &fakeProducer{}
	src, err := New(cfg, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		counts := p.perKey()
		ok := true
		for _, s := range cfg.Sensors {
			ok = ok && counts[s.ID] >= n
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s only %v readings, want %d per sensor", counts, n)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	units := map[string]string{}
	for _, s := range cfg.Sensors {
		units[s.ID] = s.Unit
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.recs {
		if r.topic != cfg.Topic {
			t.Fatalf("record to topic %q, want %q", r.topic, cfg.Topic)
		}
		var got struct {
			Sensor string   `json:"sensor"`
			Value  *float64 `json:"value"`
			Unit   string   `json:"unit"`
			TS     string   `json:"ts"`
		}
		if err := json.Unmarshal(r.value, &got); err != nil {
			t.Fatalf("value %s is not JSON: %v", r.value, err)
		}
		if got.Sensor != string(r.key) || got.Value == nil || got.Unit != units[got.Sensor] {
			t.Fatalf("record key %q value %s: sensor, value or unit wrong", r.key, r.value)
		}
		ts, err := time.Parse(time.RFC3339Nano, got.TS)
		if err != nil || !ts.Equal(r.ts) {
			t.Fatalf("ts %q (%v) does not match record timestamp %v", got.TS, err, r.ts)
		}
	}
	// The counter counts up by one per reading.
	var counts []float64
	for _, r := range p.recs {
		if string(r.key) == "counter-1" {
			var v reading
			_ = json.Unmarshal(r.value, &v)
			counts = append(counts, v.Value)
		}
	}
	for i, v := range counts {
		if v != float64(i) {
			t.Fatalf("counter readings %v, want 0, 1, 2, ...", counts)
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	p := &fakeProducer{}
	src, err := New(testConfig(time.Hour), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	for p.calls.Load() < 3 { // the first readings are produced at once
		time.Sleep(time.Millisecond)
	}
	if err := src.Run(ctx); err == nil {
		t.Fatal("a second concurrent Run was accepted")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := p.calls.Load(); got != 3 {
		t.Fatalf("%d produce calls, want 3 (one per sensor before the hour-long interval)", got)
	}

	// A context that is already done produces nothing.
	p2 := &fakeProducer{}
	src2, _ := New(testConfig(time.Millisecond), p2, nil)
	if err := src2.Run(ctx); err != nil || p2.calls.Load() != 0 {
		t.Fatalf("Run on a done context: err %v, %d calls", err, p2.calls.Load())
	}
}

// countHandler counts log records at warn level and above.
type countHandler struct {
	slog.Handler
	errors atomic.Int64
}

func (h *countHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.errors.Add(1)
	}
	return nil
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }

func TestProduceErrorsAreRateLimited(t *testing.T) {
	h := &countHandler{Handler: slog.DiscardHandler}
	p := &fakeProducer{err: errors.New("disk full")}
	src, err := New(testConfig(time.Millisecond), p, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	for p.calls.Load() < 60 { // the loop goes on after errors
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := h.errors.Load(); got != 1 {
		t.Fatalf("%d warn logs for %d failed produces, want 1", got, p.calls.Load())
	}

	// After the reminder interval the next failure is logged again ("still down").
	now := time.Now()
	src.now = func() time.Time { return now.Add(linkstate.DefaultRemind) }
	src.produceFailed("temp-1", errors.New("disk full"))
	if got := h.errors.Load(); got != 2 {
		t.Fatalf("%d warn logs after the reminder interval, want 2", got)
	}
	// Writes work again (Run has returned: no other goroutine): back, once.
	p.err = nil
	src.emit(t.Context(), now)
	src.emit(t.Context(), now)
	if s := src.link.Snapshot(); s.State != linkstate.Up || h.errors.Load() != 2 {
		t.Fatalf("after writes work again: %+v, %d warn logs", s, h.errors.Load())
	}
}
