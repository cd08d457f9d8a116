package modbus

import (
	"os"
	"testing"
	"time"
)

// demoDevice holds the registers of the sample config in README.md:
//
//	holding 0      int16   215          oil_temp  (scale 0.1: 21.5 C)
//	holding 1..2   float32 1234.5       energy    (word_order low_first: 0x5000, 0x449A)
//	input   10     uint16  1450         speed     (rpm)
//	input   20..21 int32   -40000       position  (byte_order little: 0xFFFF, 0xC063)
func demoDevice() *handler {
	return &handler{
		holding: map[uint16]uint16{0: 215, 1: 0x5000, 2: 0x449A},
		input:   map[uint16]uint16{10: 1450, 20: 0xFFFF, 21: 0xC063},
	}
}

// TestDemoServer serves demoDevice on $KATKA_MODBUS_DEMO_ADDR (e.g.
// 127.0.0.1:5020) for $KATKA_MODBUS_DEMO_FOR (default 1m), for trying the README's
// sample config with `katka serve --config`; skipped when the address is not set.
func TestDemoServer(t *testing.T) {
	addr := os.Getenv("KATKA_MODBUS_DEMO_ADDR")
	if addr == "" {
		t.Skip("set KATKA_MODBUS_DEMO_ADDR=127.0.0.1:5020 to serve the README's demo device")
	}
	d := time.Minute
	if s := os.Getenv("KATKA_MODBUS_DEMO_FOR"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("KATKA_MODBUS_DEMO_FOR: %v", err)
		}
	}
	startServer(t, addr, demoDevice())
	t.Logf("demo Modbus TCP device on %s for %s", addr, d)
	time.Sleep(d)
}
