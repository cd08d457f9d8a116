package can

import (
	"os"
	"testing"
)

func TestParseDBC(t *testing.T) {
	db, err := loadDBC("testdata/test.dbc")
	if err != nil {
		t.Fatal(err)
	}
	if len(db.byID) != 5 || db.signals != 13 {
		t.Fatalf("%d messages, %d signals; want 5, 13", len(db.byID), db.signals)
	}
	j := db.byID[frameKey(0x18FEF100, true)]
	if j == nil || j.name != "CruiseJ1939" {
		t.Fatalf("extended message: %+v", j)
	}
	bat := db.byID[0x200]
	if bat.mux == nil || bat.mux.name != "Mux" || bat.length != 3 {
		t.Fatalf("multiplexed message: %+v", bat)
	}
	imu := db.byID[0x300]
	if !imu.signals[0].float32 || !imu.signals[0].signed {
		t.Fatalf("float signal: %+v", imu.signals[0])
	}
	if l := db.byID[0x100].signals[3].labels[1]; l != "On" {
		t.Fatalf("value description of Running 1: %q", l)
	}
}

func TestParseDBCRejects(t *testing.T) {
	for name, text := range map[string]string{
		"syntax":                    "BO_ x",
		"beyond bit 63":             "BO_ 1 M: 8 E\n SG_ S : 60|8@1+ (1,0) [0|1] \"\" E\n",
		"big endian beyond the end": "BO_ 1 M: 8 E\n SG_ S : 60|8@0+ (1,0) [0|1] \"\" E\n",
		"twice":                     "BO_ 1 M: 8 E\nBO_ 1 N: 8 E\n",
	} {
		if _, err := parseDBC(name, []byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := loadDBC(os.DevNull + ".missing"); err == nil {
		t.Error("missing file accepted")
	}
}
