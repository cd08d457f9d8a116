package modbus

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// decodeCase is one register of the test device: the bytes it sends, in wire order
// (register by register, as on the network), and the value katka must write.
type decodeCase struct {
	name          string
	typ           string
	byteOrder     string
	wordOrder     string
	scale, offset float64
	unit          string
	wire          []byte
	want          float64
}

// decodeCases covers every type in every byte and word order, with and without
// scale and offset. Raw values: int16 -12345 = 0xCFC7, uint16 54321 = 0xD431,
// int32 -123456789 = 0xF8A432EB, uint32 3456789012 = 0xCE0A6A14,
// float32 -1234.5 = 0xC49A5000 and 0.15625 = 0x3E200000.
var decodeCases = []decodeCase{
	{name: "i16_big", typ: "int16", byteOrder: "big", wire: []byte{0xCF, 0xC7}, want: -12345},
	{name: "i16_little", typ: "int16", byteOrder: "little", scale: 0.5, offset: 10, unit: "C", wire: []byte{0xC7, 0xCF}, want: -6162.5},
	{name: "i16_default", typ: "int16", scale: -2, wire: []byte{0xCF, 0xC7}, want: 24690},
	{name: "u16_big", typ: "uint16", byteOrder: "big", wire: []byte{0xD4, 0x31}, want: 54321},
	{name: "u16_little", typ: "uint16", byteOrder: "little", scale: 0.25, unit: "rpm", wire: []byte{0x31, 0xD4}, want: 13580.25},
	{name: "u16_default", typ: "uint16", offset: -321, wire: []byte{0xD4, 0x31}, want: 54000},
	{name: "i32_big_high", typ: "int32", byteOrder: "big", wordOrder: "high_first", wire: []byte{0xF8, 0xA4, 0x32, 0xEB}, want: -123456789},
	{name: "i32_little_high", typ: "int32", byteOrder: "little", wordOrder: "high_first", wire: []byte{0xA4, 0xF8, 0xEB, 0x32}, want: -123456789},
	{name: "i32_big_low", typ: "int32", byteOrder: "big", wordOrder: "low_first", wire: []byte{0x32, 0xEB, 0xF8, 0xA4}, want: -123456789},
	{name: "i32_little_low", typ: "int32", byteOrder: "little", wordOrder: "low_first", wire: []byte{0xEB, 0x32, 0xA4, 0xF8}, want: -123456789},
	{name: "i32_default", typ: "int32", scale: 0.5, offset: 0.25, wire: []byte{0xF8, 0xA4, 0x32, 0xEB}, want: -61728394.25},
	{name: "u32_big_high", typ: "uint32", byteOrder: "big", wordOrder: "high_first", wire: []byte{0xCE, 0x0A, 0x6A, 0x14}, want: 3456789012},
	{name: "u32_little_high", typ: "uint32", byteOrder: "little", wordOrder: "high_first", wire: []byte{0x0A, 0xCE, 0x14, 0x6A}, want: 3456789012},
	{name: "u32_big_low", typ: "uint32", byteOrder: "big", wordOrder: "low_first", wire: []byte{0x6A, 0x14, 0xCE, 0x0A}, want: 3456789012},
	{name: "u32_little_low", typ: "uint32", byteOrder: "little", wordOrder: "low_first", scale: 2, offset: -12, unit: "Wh", wire: []byte{0x14, 0x6A, 0x0A, 0xCE}, want: 6913578012},
	{name: "f32_big_high", typ: "float32", byteOrder: "big", wordOrder: "high_first", wire: []byte{0xC4, 0x9A, 0x50, 0x00}, want: -1234.5},
	{name: "f32_little_high", typ: "float32", byteOrder: "little", wordOrder: "high_first", wire: []byte{0x9A, 0xC4, 0x00, 0x50}, want: -1234.5},
	{name: "f32_big_low", typ: "float32", byteOrder: "big", wordOrder: "low_first", unit: "kWh", wire: []byte{0x50, 0x00, 0xC4, 0x9A}, want: -1234.5},
	{name: "f32_little_low", typ: "float32", byteOrder: "little", wordOrder: "low_first", wire: []byte{0x00, 0x50, 0x9A, 0xC4}, want: -1234.5},
	{name: "f32_default", typ: "float32", scale: 4, offset: 1, wire: []byte{0x3E, 0x20, 0x00, 0x00}, want: 1.625},
}

// layout places the cases on a device: even cases in the holding table, back to back
// (they share requests), odd cases in the input table with a free register between
// two (each its own request; the gaps are not readable). It adds one uint16 that
// overlaps the first int32 case. It returns the registers and the device's tables.
func layout() ([]RegisterConfig, map[string]decodeCase, *handler) {
	h := &handler{holding: map[uint16]uint16{}, input: map[uint16]uint16{}}
	cases := map[string]decodeCase{}
	var regs []RegisterConfig
	hAddr, iAddr := uint16(0), uint16(1000)
	for i, c := range decodeCases {
		table, tab, addr := "holding", h.holding, &hAddr
		if i%2 == 1 {
			table, tab, addr = "input", h.input, &iAddr
		}
		regs = append(regs, RegisterConfig{Name: c.name, Table: table, Address: int(*addr), Type: c.typ,
			ByteOrder: c.byteOrder, WordOrder: c.wordOrder, Scale: c.scale, Offset: c.offset, Unit: c.unit})
		if c.typ == "int32" && c.byteOrder == "big" && c.wordOrder == "high_first" {
			overlap := decodeCase{name: "i32_high_word", typ: "uint16", want: 0xF8A4}
			regs = append(regs, RegisterConfig{Name: overlap.name, Table: table, Address: int(*addr), Type: "uint16"})
			cases[overlap.name] = overlap
		}
		for j := 0; j < len(c.wire); j += 2 {
			tab[*addr] = binary.BigEndian.Uint16(c.wire[j:])
			*addr++
		}
		if i%2 == 1 {
			*addr++
		}
		cases[c.name] = c
	}
	return regs, cases, h
}

// TestDecodesEveryTypeAndOrder polls a Modbus TCP server through the registered input
// into a real broker and checks every reading read back: exact value, unit, key.
func TestDecodesEveryTypeAndOrder(t *testing.T) {
	regs, cases, h := layout()
	addr := freeAddr(t)
	startServer(t, addr, h)
	b := openBroker(t)
	dev := uniq("press-1") // fresh metric series with -count
	cfg := sensorsConfig(t, 50*time.Millisecond, DeviceConfig{Name: dev, URL: "tcp://" + addr, UnitID: 1, Registers: regs})
	start(t, b, cfg)

	var keys []string
	for name := range cases {
		keys = append(keys, dev+"/"+name)
	}
	r := newReader(b, ConfigOf(cfg).Topic)
	got := r.waitFor(t, 10*time.Second, keys...)
	for name, c := range cases {
		v := got[dev+"/"+name]
		if v.Device != dev || v.Register != name || v.Unit != c.unit {
			t.Errorf("%s: reading %+v", name, v)
		}
		if v.Value != c.want {
			t.Errorf("%s (%s, byte_order %q, word_order %q, scale %v, offset %v): value %v, want %v",
				name, c.typ, c.byteOrder, c.wordOrder, c.scale, c.offset, v.Value, c.want)
		}
	}
	// A second round of polls: every reading again, and no request failed (the gaps
	// between input registers, which the device refuses, were never read).
	r.waitFor(t, 5*time.Second, keys...)
	for _, kind := range []string{errConnect, errTimeout, errException, errProtocol, errIO, errDecode, errWrite} {
		if n := testutil.ToFloat64(pollErrors.WithLabelValues(dev, kind)); n != 0 {
			t.Errorf("errors{kind=%s} = %v, want 0", kind, n)
		}
	}
	if n := testutil.ToFloat64(readings.WithLabelValues(dev)); n < float64(2*len(cases)) {
		t.Errorf("readings = %v, want at least %d", n, 2*len(cases))
	}
	if n := testutil.ToFloat64(polls.WithLabelValues(dev)); n < 2 {
		t.Errorf("polls = %v, want at least 2", n)
	}
	// Holding cases are back to back: one request per poll; input cases have gaps: one each.
	wantReqs := 1 + (len(decodeCases) / 2)
	if got := len(plan(mustRegisters(t, regs))); got != wantReqs {
		t.Errorf("%d requests per poll, want %d", got, wantReqs)
	}
}

// mustRegisters converts configured registers or fails the test.
func mustRegisters(t *testing.T, rcs []RegisterConfig) []register {
	t.Helper()
	var out []register
	for _, rc := range rcs {
		r, err := newRegister(rc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestDeviceDownThenUp starts polling a device that is not there yet: connects fail
// and are counted, nothing is written; once the server starts, readings arrive. Then
// the server goes away mid-stream and comes back, and polling resumes.
func TestDeviceDownThenUp(t *testing.T) {
	dev := uniq("late-1") // fresh metric series with -count
	h := &handler{holding: map[uint16]uint16{7: 42}, input: map[uint16]uint16{}}
	addr := freeAddr(t)
	b := openBroker(t)
	cfg := sensorsConfig(t, 50*time.Millisecond, DeviceConfig{Name: dev, URL: "tcp://" + addr,
		Registers: []RegisterConfig{{Name: "level", Table: "holding", Address: 7, Type: "uint16", Unit: "%"}}})
	logs := start(t, b, cfg)
	r := newReader(b, ConfigOf(cfg).Topic)
	link := "link=modbus/" + dev
	waitLine := func(what string) {
		t.Helper()
		if _, ok := logs.Wait(15*time.Second, what, link); !ok {
			t.Fatalf("no line %q within 15s; log:\n%s", what, logs)
		}
	}

	waitLine("WARN link unreachable; retrying")
	waitMetric(t, "connect errors", func() float64 { return testutil.ToFloat64(pollErrors.WithLabelValues(dev, errConnect)) }, 3)
	if recs := r.poll(t); len(recs) != 0 {
		t.Fatalf("%d records while the device is down", len(recs))
	}
	if c := testutil.ToFloat64(connected.WithLabelValues(dev)); c != 0 {
		t.Fatalf("connected = %v while the device is down", c)
	}

	stop := startServer(t, addr, h)
	got := r.waitFor(t, 15*time.Second, dev+"/level")
	if v := got[dev+"/level"]; v.Value != 42 || v.Unit != "%" {
		t.Fatalf("reading %+v, want 42 %%", v)
	}
	if c := testutil.ToFloat64(connected.WithLabelValues(dev)); c != 1 {
		t.Fatalf("connected = %v with the device up", c)
	}
	waitLine("INFO link up after ")

	// The device goes away while connected, then comes back with a new value.
	stop()
	waitMetric(t, "connected = 0", func() float64 { return 1 - testutil.ToFloat64(connected.WithLabelValues(dev)) }, 1)
	waitLine("WARN link lost; retrying")
	connects := testutil.ToFloat64(pollErrors.WithLabelValues(dev, errConnect))
	waitMetric(t, "failed reconnects", func() float64 { return testutil.ToFloat64(pollErrors.WithLabelValues(dev, errConnect)) }, connects+2)
	r.poll(t) // drop what was written before
	h.mu.Lock()
	h.holding[7] = 43
	h.mu.Unlock()
	startServer(t, addr, h)
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs := r.poll(t)
		if len(recs) > 0 && decodeRecord(t, recs[len(recs)-1]).Value == 43 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reading of the new value after the device came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitLine("INFO link back after ")
	// Every state change once, no line per failed attempt.
	if warns := logs.Lines("WARN"); len(warns) != 2 {
		t.Errorf("%d WARN lines, want 2 (unreachable, lost):\n%s", len(warns), strings.Join(warns, "\n"))
	}
	for _, l := range logs.Lines("INFO link ", link) {
		t.Log(l)
	}
	if n := len(logs.Lines("INFO link ", link)); n != 2 {
		t.Errorf("%d INFO link lines, want 2 (up after, back after)", n)
	}
	t.Logf("errors: connect %v, io %v, timeout %v, protocol %v", testutil.ToFloat64(pollErrors.WithLabelValues(dev, errConnect)),
		testutil.ToFloat64(pollErrors.WithLabelValues(dev, errIO)), testutil.ToFloat64(pollErrors.WithLabelValues(dev, errTimeout)),
		testutil.ToFloat64(pollErrors.WithLabelValues(dev, errProtocol)))
}

// TestExceptionSkipsOnlyItsRegisters: a register the device refuses (illegal data
// address) is counted as an exception; the other registers are still written and the
// connection stays up.
func TestExceptionSkipsOnlyItsRegisters(t *testing.T) {
	dev := uniq("partial-1") // fresh metric series with -count
	h := &handler{holding: map[uint16]uint16{0: 5}, input: map[uint16]uint16{}}
	addr := freeAddr(t)
	startServer(t, addr, h)
	b := openBroker(t)
	cfg := sensorsConfig(t, 50*time.Millisecond, DeviceConfig{Name: dev, URL: "tcp://" + addr,
		Registers: []RegisterConfig{
			{Name: "ok", Table: "holding", Address: 0, Type: "int16"},
			{Name: "missing", Table: "input", Address: 9, Type: "float32"},
		}})
	start(t, b, cfg)
	r := newReader(b, ConfigOf(cfg).Topic)
	r.waitFor(t, 10*time.Second, dev+"/ok")
	waitMetric(t, "exceptions", func() float64 { return testutil.ToFloat64(pollErrors.WithLabelValues(dev, errException)) }, 2)
	for _, rec := range r.poll(t) {
		if string(rec.Key) != dev+"/ok" {
			t.Fatalf("record of %s", rec.Key)
		}
	}
	if n := testutil.ToFloat64(pollErrors.WithLabelValues(dev, errConnect)); n != 0 {
		t.Errorf("%v reconnects after exceptions, want 0", n)
	}
}

// waitMetric waits until get returns at least min.
func waitMetric(t *testing.T, what string, get func() float64, min float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after 10s, want at least %v", what, get(), min)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDecodeCasesAreConsistent checks the cases' wire bytes against their expected
// values with encoding/binary, independently of the decoder, so that a typo in a
// case cannot make it agree with a wrong decoder.
func TestDecodeCasesAreConsistent(t *testing.T) {
	for _, c := range decodeCases {
		big := make([]byte, len(c.wire))
		copy(big, c.wire)
		if c.byteOrder == "little" {
			for i := 0; i < len(big); i += 2 {
				big[i], big[i+1] = big[i+1], big[i]
			}
		}
		if c.wordOrder == "low_first" {
			big[0], big[1], big[2], big[3] = big[2], big[3], big[0], big[1]
		}
		var raw float64
		switch c.typ {
		case "int16":
			raw = float64(int16(binary.BigEndian.Uint16(big)))
		case "uint16":
			raw = float64(binary.BigEndian.Uint16(big))
		case "int32":
			raw = float64(int32(binary.BigEndian.Uint32(big)))
		case "uint32":
			raw = float64(binary.BigEndian.Uint32(big))
		case "float32":
			raw = float64(math.Float32frombits(binary.BigEndian.Uint32(big)))
		}
		scale := c.scale
		if scale == 0 {
			scale = 1
		}
		if got := raw*scale + c.offset; got != c.want {
			t.Errorf("%s: wire bytes give %v, case says %v", c.name, got, c.want)
		}
	}
}
