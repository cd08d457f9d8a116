// Package pyupper holds a katka processor plugin written in Python; this test
// runs it under the Go plugin host.
package pyupper

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/plugins/host"
	"github.com/katka-io/katka/plugins/sdk"
)

func TestPythonProcessor(t *testing.T) {
	if _, err := exec.Command("/usr/bin/python3", "-c", "import grpc").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3-grpcio is missing and CI=true (apt-get install python3-grpcio)")
		}
		t.Skip("python3-grpcio is not installed (apt-get install python3-grpcio)")
	}
	dir, _ := filepath.Abs(".")
	m := host.Manifest{Name: "py-upper", Kind: sdk.KindProcessor, Version: "0.1.0", Command: "pyupper.py", Dir: dir}
	sum, err := host.FileSHA256(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	m.SHA256 = sum
	c, err := host.Dial(m, 20*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs := make([]broker.Record, 150)
	for i := range recs {
		recs[i] = broker.Record{Key: []byte("k"), Value: []byte("hello"), Timestamp: time.Now()}
	}
	out, err := c.Process(context.Background(), recs)
	if err != nil || len(out) != 150 {
		t.Fatalf("Process = %d records, %v", len(out), err)
	}
	for _, r := range out {
		if string(r.Value) != "HELLO" || string(r.Key) != "k" {
			t.Fatalf("got %q=%q, want k=HELLO", r.Key, r.Value)
		}
	}
}
