package modbus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/appliance/linkstate/logtest"
	"github.com/katka-io/katka/sensors"
)

// handler is a Modbus device for tests: fixed holding and input register values;
// a request touching any other address gets an illegal data address exception.
type handler struct {
	mu      sync.Mutex
	holding map[uint16]uint16
	input   map[uint16]uint16
	reqs    int
}

func (h *handler) read(table map[uint16]uint16, addr, n uint16) ([]uint16, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs++
	out := make([]uint16, n)
	for i := range n {
		v, ok := table[addr+i]
		if !ok {
			return nil, mb.ErrIllegalDataAddress
		}
		out[i] = v
	}
	return out, nil
}

func (h *handler) HandleCoils(*mb.CoilsRequest) ([]bool, error) { return nil, mb.ErrIllegalFunction }

func (h *handler) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

func (h *handler) HandleHoldingRegisters(r *mb.HoldingRegistersRequest) ([]uint16, error) {
	if r.IsWrite {
		return nil, mb.ErrIllegalFunction
	}
	return h.read(h.holding, r.Addr, r.Quantity)
}

func (h *handler) HandleInputRegisters(r *mb.InputRegistersRequest) ([]uint16, error) {
	return h.read(h.input, r.Addr, r.Quantity)
}

// freeAddr returns a loopback address with a port nothing listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServer serves h over Modbus TCP on addr until the test ends or stop is called.
func startServer(t *testing.T, addr string, h *handler) (stop func()) {
	t.Helper()
	srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: 30 * time.Second, MaxClients: 4}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("modbus server on %s: %v", addr, err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { srv.Stop() }) }
	t.Cleanup(stop)
	return stop
}

// openBroker opens a broker on a temporary directory.
func openBroker(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testLog is a logger for tests: debug to stderr with -v, else discarded.
func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// sensorsConfig is the default sensors config with only the given Modbus devices on.
func sensorsConfig(t *testing.T, interval time.Duration, devs ...DeviceConfig) config.Sensors {
	t.Helper()
	full := config.Default()
	s := &full.Sensors
	m := ConfigOf(*s) // the only input registered in this test binary
	m.Enabled = true
	m.Interval = interval
	m.Timeout = 500 * time.Millisecond
	m.Devices = devs
	if err := full.Validate(); err != nil {
		t.Fatalf("test config does not validate: %v", err)
	}
	return *s
}

// start runs the registered inputs of cfg on b until the test ends and returns
// their log lines (also written to stderr with -v).
func start(t *testing.T, b *broker.Broker, cfg config.Sensors) *logtest.Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	rec := logtest.New()
	lg := slog.New(slog.NewMultiHandler(rec, testLog().Handler()))
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b, Log: lg, Links: linkstate.NewRegistry(nil)}); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return rec
}

// reader reads a topic's records from every partition, remembering where it is.
type reader struct {
	b     *broker.Broker
	topic string
	next  map[int32]int64
}

func newReader(b *broker.Broker, topic string) *reader {
	return &reader{b: b, topic: topic, next: map[int32]int64{}}
}

// poll returns the records written since the last call.
func (r *reader) poll(t *testing.T) []broker.Record {
	t.Helper()
	info, err := r.b.Topic(r.topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []broker.Record
	for p := range info.Partitions {
		res, err := r.b.Fetch(t.Context(), r.topic, p, r.next[p], 1<<20, 0)
		if err != nil {
			t.Fatalf("fetch %s/%d: %v", r.topic, p, err)
		}
		for _, rec := range res.Records {
			out = append(out, rec)
			r.next[p] = rec.Offset + 1
		}
	}
	return out
}

// waitFor polls until every key in keys has a record (or the deadline) and returns
// the last reading of each key, checked against its record.
func (r *reader) waitFor(t *testing.T, d time.Duration, keys ...string) map[string]Reading {
	t.Helper()
	got := map[string]Reading{}
	deadline := time.Now().Add(d)
	for {
		for _, rec := range r.poll(t) {
			got[string(rec.Key)] = decodeRecord(t, rec)
		}
		missing := 0
		for _, k := range keys {
			if _, ok := got[k]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d of %d keys have no record (have %d keys)", d, missing, len(keys), len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// decodeRecord parses a record's value and checks it against the key and timestamp.
func decodeRecord(t *testing.T, rec broker.Record) Reading {
	t.Helper()
	var v Reading
	if err := json.Unmarshal(rec.Value, &v); err != nil {
		t.Fatalf("record %q: %v", rec.Value, err)
	}
	if string(rec.Key) != v.Device+"/"+v.Register {
		t.Errorf("key %q, reading of %s/%s", rec.Key, v.Device, v.Register)
	}
	if !rec.Timestamp.Equal(v.TS) {
		t.Errorf("%s: record timestamp %v, ts %v", rec.Key, rec.Timestamp, v.TS)
	}
	return v
}

// newTestWriter returns a writer over a fresh broker.
func newTestWriter(t *testing.T) *sensors.Writer {
	t.Helper()
	w, err := sensors.NewWriter(openBroker(t), "hash")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var runs atomic.Int32

// uniq returns name with a number of its own, so that every test run has fresh
// metric series (the collectors are global).
func uniq(name string) string { return fmt.Sprintf("%s-%d", name, runs.Add(1)) }
