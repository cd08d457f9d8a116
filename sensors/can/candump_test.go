package can

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCandump(t *testing.T) {
	fr, err := parseCandump("(1436509052.249713) vcan0 044#2A366C2BBA")
	if err != nil {
		t.Fatal(err)
	}
	if fr.iface != "vcan0" || fr.f.ID != 0x44 || fr.f.IsExtended || fr.f.Length != 5 || fr.f.Data[0] != 0x2A || fr.f.Data[4] != 0xBA ||
		!fr.ts.Equal(time.Unix(1436509052, 249713000)) {
		t.Fatalf("parsed %+v", fr)
	}
	if got := formatCandump(fr); got != "(1436509052.249713) vcan0 044#2A366C2BBA" {
		t.Fatalf("format: %q", got)
	}
	fr, err = parseCandump("(1.5) can1 18FEF100#0102030405060708 R")
	if err != nil || !fr.f.IsExtended || fr.f.ID != 0x18FEF100 || fr.f.Length != 8 || fr.ts.Nanosecond() != 500000000 {
		t.Fatalf("extended: %+v %v", fr, err)
	}
	if fr, err = parseCandump("(2.000001) can0 123#"); err != nil || fr.f.Length != 0 {
		t.Fatalf("empty data: %+v %v", fr, err)
	}
	for _, line := range []string{"(1.0) can0 123#R", "(1.0) can0 123##1DEAD", "(1.0) can0 20000080#0000000000000000"} {
		if _, err := parseCandump(line); !errors.Is(err, errSkip) {
			t.Errorf("%q: %v, want skipped", line, err)
		}
	}
	for _, line := range []string{
		"1.0 can0 123#00", "(1.0 can0 123#00", "(x.0) can0 123#00", "(1.0) can0", "(1.0) can0 12#00",
		"(1.0) can0 123#0", "(1.0) can0 123#GG", "(1.0) can0 123#001122334455667788", "(1.0) can0 40000000#00",
		"(1.0) can0 800#00", "(-1.0) can0 123#00", "(1.0123456789) can0 123#00", "(1.0) can0 1234#00",
	} {
		if _, err := parseCandump(line); err == nil || errors.Is(err, errSkip) {
			t.Errorf("%q: %v, want an error", line, err)
		}
	}
}

// FuzzParseCandump checks that no line makes the parser panic and that what
// it accepts prints back to a line it parses the same.
func FuzzParseCandump(f *testing.F) {
	f.Add("(1436509052.249713) vcan0 044#2A366C2BBA")
	f.Add("(1.5) can1 18FEF100#0102030405060708 R")
	f.Fuzz(func(t *testing.T, line string) {
		fr, err := parseCandump(line)
		if err != nil || strings.ContainsAny(fr.iface, " \n") {
			return
		}
		again, err := parseCandump(formatCandump(fr))
		if err != nil || again.f != fr.f || again.ts.Truncate(time.Microsecond) != fr.ts.Truncate(time.Microsecond) {
			t.Fatalf("%q -> %q: %+v %v", line, formatCandump(fr), again, err)
		}
	})
}
