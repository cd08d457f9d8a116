package can

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	canlib "go.einride.tech/can"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
)

// putLE writes raw into d as an Intel (little-endian) signal: bit start is its
// least significant bit, the next bits follow upwards. Written independently
// of the decoder, bit by bit.
func putLE(d *[8]byte, start, size int, raw uint64) {
	for i := range size {
		p := start + i
		if raw>>i&1 == 1 {
			d[p/8] |= 1 << (p % 8)
		}
	}
}

// putBE writes raw into d as a Motorola (big-endian) signal: bit start is its
// most significant bit; the next bit is one lower in the same byte, or bit 7
// of the next byte (the DBC saw-tooth).
func putBE(d *[8]byte, start, size int, raw uint64) {
	p := start
	for i := size - 1; i >= 0; i-- {
		if raw>>i&1 == 1 {
			d[p/8] |= 1 << (p % 8)
		}
		if p%8 == 0 {
			p += 15
		} else {
			p--
		}
	}
}

// twos returns v as a size-bit two's complement raw value.
func twos(v int64, size int) uint64 { return uint64(v) & (1<<size - 1) }

// expected is what the decoder must find in a generated frame.
type expected struct {
	message string
	values  map[string]float64
	labels  map[string]string
}

// genFrame builds frame i of a test log over testdata/test.dbc with random
// raw values, and the physical values those raw values stand for
// (raw * factor + offset, the DBC definition).
func genFrame(rng *rand.Rand, i int, ts time.Time) (frame, expected) {
	fr := frame{ts: ts, iface: "vcan0"}
	var d [8]byte
	e := expected{values: map[string]float64{}, labels: map[string]string{}}
	switch i % 5 {
	case 0:
		e.message = "Engine"
		fr.f.ID, fr.f.Length = 0x100, 8
		speed, temp, thr, run := rng.Uint64N(1<<16), rng.Int64N(256)-128, rng.Uint64N(128), rng.Uint64N(2)
		putLE(&d, 0, 16, speed)
		putLE(&d, 16, 8, twos(temp, 8))
		putLE(&d, 24, 7, thr)
		putLE(&d, 31, 1, run)
		e.values["EngineSpeed"] = float64(speed) * 0.25
		e.values["CoolantTemp"] = float64(temp)*0.5 - 10
		e.values["Throttle"] = float64(thr)
		e.values["Running"] = float64(run)
		e.labels["Running"] = map[uint64]string{0: "Off", 1: "On"}[run]
	case 1:
		e.message = "Body"
		fr.f.ID, fr.f.Length = 0x1A0, 8
		speed, acc, odo := rng.Uint64N(1<<16), rng.Int64N(4096)-2048, rng.Uint64N(1<<24)
		putBE(&d, 7, 16, speed)
		putBE(&d, 23, 12, twos(acc, 12))
		putBE(&d, 39, 24, odo)
		e.values["Speed"] = float64(speed) * 0.01
		e.values["Accel"] = float64(acc) * 0.001
		e.values["Odometer"] = float64(odo) * 0.1
	case 2:
		e.message = "CruiseJ1939"
		fr.f.ID, fr.f.Length, fr.f.IsExtended = 0x18FEF100, 8, true
		ws := rng.Uint64N(1 << 16)
		putLE(&d, 8, 16, ws)
		e.values["WheelSpeed"] = float64(ws) * 0.00390625
	case 3:
		e.message = "Battery"
		fr.f.ID, fr.f.Length = 0x200, 3
		mux := rng.Uint64N(4)
		putLE(&d, 0, 2, mux)
		e.values["Mux"] = float64(mux)
		switch mux {
		case 0:
			v := rng.Uint64N(1 << 16)
			putLE(&d, 8, 16, v)
			e.values["CellVoltage"] = float64(v) * 0.001
		case 1:
			v := rng.Int64N(256) - 128
			putLE(&d, 8, 8, twos(v, 8))
			e.values["CellTemp"] = float64(v)
		case 2:
			v := rng.Uint64N(256)
			putLE(&d, 8, 8, v)
			e.values["Soc"] = float64(v) * 0.5
		default: // mux 3 carries nothing but the switch; junk in the rest
			d[1], d[2] = byte(rng.Uint32()), byte(rng.Uint32())
		}
	case 4:
		e.message = "Imu"
		fr.f.ID, fr.f.Length = 0x300, 4
		f := float32(rng.NormFloat64() * 100)
		putLE(&d, 0, 32, uint64(math.Float32bits(f)))
		e.values["YawRate"] = float64(f)
	}
	fr.f.Data = canlib.Data(d)
	return fr, e
}

// writeLog writes n generated frames as a candump -l log, 1 ms apart from
// base, and returns the expected values by timestamp.
func writeLog(t testing.TB, path string, n int, base time.Time) map[int64]expected {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(19, uint64(n)))
	want := make(map[int64]expected, n)
	for i := range n {
		ts := base.Add(time.Duration(i) * time.Millisecond)
		fr, e := genFrame(rng, i, ts)
		fmt.Fprintln(w, formatCandump(fr))
		want[ts.UnixNano()] = e
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return want
}

// openBroker opens a broker in a temp dir, closed when the test ends.
func openBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testConfig is the sensors config with only the CAN input on, replaying
// files as fast as possible with the logged timestamps.
func testConfig(files ...string) config.Sensors {
	s := config.Default().Sensors
	c := ConfigOf(s) // the only input registered in this test binary
	c.Enabled = true
	c.DBCFile = "testdata/test.dbc"
	c.Replay = Replay{Files: files, Speed: 0, Timestamps: "log"}
	return s
}

// runInputs runs the inputs of cfg on b; wait blocks until they returned.
func runInputs(t testing.TB, b *broker.Broker, cfg config.Sensors) (wait func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b}); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return wg.Wait
}

// logPath is a file in the test's temp dir.
func logPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
