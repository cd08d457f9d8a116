package modbus

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// badAnswer is one way a broken device answers a read of 3 holding registers.
type badAnswer struct {
	name string
	kind string // the error kind it must be counted as
	// answer writes the reply to the request with transaction id txn and unit id unit.
	answer func(c net.Conn, txn uint16, unit byte)
}

// frame writes an MBAP frame; length < 0 means the right length for pdu.
func frame(c net.Conn, txn uint16, unit byte, length int, pdu ...byte) {
	if length < 0 {
		length = 1 + len(pdu)
	}
	b := binary.BigEndian.AppendUint16(nil, txn)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	b = append(b, unit)
	c.Write(append(b, pdu...))
}

// goodPDU answers the read of holding 3..5: 42 as uint16 and 2.5 as float32.
var goodPDU = []byte{0x03, 6, 0x00, 0x2A, 0x40, 0x20, 0x00, 0x00}

var badAnswers = []badAnswer{
	{"short data", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, -1, 0x03, 6, 0x00, 0x2A) }},
	{"byte count lies", errProtocol, func(c net.Conn, txn uint16, unit byte) {
		frame(c, txn, unit, -1, 0x03, 0xFF, 0, 1, 2, 3, 4, 5)
	}},
	{"odd byte count", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, -1, 0x03, 5, 0, 1, 2, 3, 4) }},
	{"other function", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, -1, 0x10, 0, 0, 0, 3) }},
	{"exception without code", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, -1, 0x83) }},
	{"no function code", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, -1) }},
	{"MBAP length 0", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, 0, goodPDU...) }},
	{"MBAP length too big", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit, 4000, goodPDU...) }},
	{"other unit id", errProtocol, func(c net.Conn, txn uint16, unit byte) { frame(c, txn, unit+1, -1, goodPDU...) }},
	{"half a header", errIO, func(c net.Conn, txn uint16, unit byte) { c.Write([]byte{byte(txn >> 8), byte(txn), 0}) }},
	{"hang up", errIO, func(net.Conn, uint16, byte) {}},
	{"no answer", errTimeout, func(net.Conn, uint16, byte) { time.Sleep(time.Second) }},
}

// fakeDevice is a Modbus TCP peer answering the i-th connection's first request
// with badAnswers[i] and closing it, and answering correctly once they are used up.
func fakeDevice(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg sync.WaitGroup
		n  atomic.Int32
	)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			i := int(n.Add(1)) - 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					hdr := make([]byte, 7)
					if _, err := io.ReadFull(c, hdr); err != nil {
						return
					}
					pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
					if _, err := io.ReadFull(c, pdu); err != nil {
						return
					}
					txn, unit := binary.BigEndian.Uint16(hdr), hdr[6]
					if i < len(badAnswers) {
						badAnswers[i].answer(c, txn, unit)
						return
					}
					frame(c, txn, unit, -1, goodPDU...)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestMalformedResponses polls a device that answers every way a broken device can:
// each answer is counted as an error of its kind, nothing is written and nothing
// panics; then the device answers properly and the readings arrive.
func TestMalformedResponses(t *testing.T) {
	dev := uniq("broken-1") // fresh metric series with -count
	addr := fakeDevice(t)
	b := openBroker(t)
	cfg := sensorsConfig(t, 20*time.Millisecond, DeviceConfig{Name: dev, URL: "tcp://" + addr, UnitID: 7,
		Registers: []RegisterConfig{
			{Name: "count", Table: "holding", Address: 3, Type: "uint16"},
			{Name: "flow", Table: "holding", Address: 4, Type: "float32", Unit: "l/s"},
		}})
	r := newReader(b, ConfigOf(cfg).Topic)
	start(t, b, cfg)
	got := r.waitFor(t, 20*time.Second, dev+"/count", dev+"/flow")
	if got[dev+"/count"].Value != 42 || got[dev+"/flow"].Value != 2.5 {
		t.Fatalf("readings after the device healed: %+v", got)
	}
	want := map[string]int{}
	for _, a := range badAnswers {
		want[a.kind]++
	}
	for kind, n := range want {
		if got := testutil.ToFloat64(pollErrors.WithLabelValues(dev, kind)); got != float64(n) {
			t.Errorf("errors{kind=%s} = %v, want %d", kind, got, n)
		}
	}
	if n := testutil.ToFloat64(pollErrors.WithLabelValues(dev, errDecode)); n != 0 {
		t.Errorf("errors{kind=decode} = %v", n)
	}
}

// TestDecodeNeverPanics feeds the decoder every wrong length and the floats JSON
// cannot carry.
func TestDecodeNeverPanics(t *testing.T) {
	for _, typ := range []string{"int16", "uint16", "int32", "uint32", "float32"} {
		for _, bo := range []string{"big", "little"} {
			for _, wo := range []string{"high_first", "low_first"} {
				r, err := newRegister(RegisterConfig{Name: "x", Table: "input", Type: typ, ByteOrder: bo, WordOrder: wo})
				if err != nil {
					t.Fatal(err)
				}
				for n := range 5 {
					_, err := r.decode(make([]uint16, n))
					if (err == nil) != (n == r.words) {
						t.Errorf("%s %s %s with %d words: err %v", typ, bo, wo, n, err)
					}
				}
			}
		}
	}
	f, _ := newRegister(RegisterConfig{Name: "f", Table: "holding", Type: "float32"})
	for _, w := range [][]uint16{{0x7FC0, 0}, {0x7F80, 0}, {0xFF80, 0}} { // NaN, +Inf, -Inf
		if v, err := f.decode(w); err == nil {
			t.Errorf("%04x: value %v, want an error", w, v)
		}
	}
	big, _ := newRegister(RegisterConfig{Name: "b", Table: "holding", Type: "float32", Scale: 1e300})
	if v, err := big.decode([]uint16{0x7F7F, 0xFFFF}); err == nil { // max float32 * 1e300 overflows
		t.Errorf("overflow: value %v, want an error", v)
	}
}

// TestPlan checks how registers are grouped into requests.
func TestPlan(t *testing.T) {
	reg := func(table string, addr int, typ string) RegisterConfig {
		return RegisterConfig{Name: table + typ + string(rune('a'+addr%26)) + string(rune('0'+addr/26%10)), Table: table, Address: addr, Type: typ}
	}
	rcs := []RegisterConfig{
		reg("holding", 10, "int32"), reg("holding", 12, "int16"), reg("holding", 11, "uint16"), // 10..12 one request
		reg("holding", 14, "uint16"),  // gap at 13: new request
		reg("input", 10, "float32"),   // other table
		reg("holding", 100, "uint16"), // 100..224 fills a request of 125
	}
	for a := 101; a < 225; a++ {
		rcs = append(rcs, reg("holding", a, "uint16"))
	}
	rcs = append(rcs, reg("holding", 225, "uint16"), reg("holding", 65534, "uint32"))
	got := plan(mustRegisters(t, rcs))
	want := []string{"holding registers 10..12", "holding registers 14..14", "holding registers 100..224",
		"holding registers 225..225", "holding registers 65534..65535", "input registers 10..11"}
	if len(got) != len(want) {
		t.Fatalf("%d requests %v, want %v", len(got), got, want)
	}
	total := 0
	for i, b := range got {
		if b.String() != want[i] {
			t.Errorf("request %d: %s, want %s", i, b, want[i])
		}
		total += len(b.regs)
	}
	if total != len(rcs) {
		t.Errorf("%d registers planned, want %d", total, len(rcs))
	}
}

// TestNewRejects checks that New names what is wrong.
func TestNewRejects(t *testing.T) {
	good := DeviceConfig{Name: "d", URL: "tcp://127.0.0.1:502", Registers: []RegisterConfig{{Name: "r", Table: "holding", Type: "int16"}}}
	cfg := *DefaultConfig()
	w := newTestWriter(t)
	if _, err := New(cfg, good, w, nil); err != nil {
		t.Fatalf("good device: %v", err)
	}
	noPort := good
	noPort.URL = "tcp://plc.local"
	if d, err := New(cfg, noPort, w, nil); err != nil || d.url != "tcp://plc.local:502" {
		t.Fatalf("url without port: %v %v", d, err)
	}
	for name, mut := range map[string]func(*DeviceConfig){
		"url scheme":  func(d *DeviceConfig) { d.URL = "rtu:///dev/ttyUSB0" },
		"unit id":     func(d *DeviceConfig) { d.UnitID = 256 },
		"table":       func(d *DeviceConfig) { d.Registers[0].Table = "coil" },
		"type":        func(d *DeviceConfig) { d.Registers[0].Type = "int64" },
		"byte order":  func(d *DeviceConfig) { d.Registers[0].ByteOrder = "middle" },
		"word order":  func(d *DeviceConfig) { d.Registers[0].WordOrder = "high" },
		"address":     func(d *DeviceConfig) { d.Registers[0].Address, d.Registers[0].Type = 65535, "int32" },
		"duplicate":   func(d *DeviceConfig) { d.Registers = append(d.Registers, d.Registers[0]) },
		"no register": func(d *DeviceConfig) { d.Registers = nil },
		"no name":     func(d *DeviceConfig) { d.Name = "" },
	} {
		d := good
		d.Registers = append([]RegisterConfig(nil), good.Registers...)
		mut(&d)
		if _, err := New(cfg, d, w, nil); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := New(cfg, good, nil, nil); err == nil {
		t.Error("nil writer accepted")
	}
}
