package can

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	canlib "go.einride.tech/can"
	"go.einride.tech/can/pkg/socketcan"

	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors"
)

// linkOf returns the state of the named link of r.
func linkOf(r *linkstate.Registry, name string) linkstate.Snapshot {
	for _, s := range r.Snapshot() {
		if s.Link == name {
			return s
		}
	}
	return linkstate.Snapshot{}
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSocketCANMissingInterface starts the input on an interface that does
// not exist: it logs one line naming the interface and keeps retrying
// (katka_can_interface_up 0) instead of stopping katka.
func TestSocketCANMissingInterface(t *testing.T) {
	iface := fmt.Sprintf("kcm%d", os.Getpid()%100000)
	b := openBroker(t)
	cfg := testConfig()
	ConfigOf(cfg).Interfaces = []string{iface}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	links := linkstate.NewRegistry(nil)
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b, Log: slog.New(slog.NewTextHandler(logs, nil)), Links: links}); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wg.Wait() }()
	want := "link unreachable; retrying"
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "interface="+iface) || !strings.Contains(logs.String(), "link=can/"+iface) {
		t.Fatalf("log does not name the interface:\n%s", logs.String())
	}
	// Retries every 100 ms doubling: a third failed open is a marker after
	// which a line per retry would show.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if s := linkOf(links, "can/"+iface); s.FailedAttempts >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 failed opens within 10s: %+v", links.Snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d WARN lines, want 1:\n%s", n, logs.String())
	}
}

// TestSocketCANReadsVcan sends frames on a vcan interface and reads their
// signals from the topic. It needs root and the kernel's vcan module; where a
// vcan interface cannot be created (the kernels of our build machines have no
// vcan module) it skips and says why.
func TestSocketCANReadsVcan(t *testing.T) {
	iface := fmt.Sprintf("kvc%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "link", "add", "dev", iface, "type", "vcan").CombinedOutput(); err != nil {
		t.Skipf("cannot create vcan interface %s (ip link add ... type vcan: %v: %s): the kernel has no vcan module or this is not root; the candump replay tests carry the decoding", iface, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", iface).Run() })
	if out, err := exec.Command("ip", "link", "set", iface, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s up: %v: %s", iface, err, out)
	}
	b := openBroker(t)
	cfg := testConfig()
	c := ConfigOf(cfg)
	c.Interfaces = []string{iface}
	runInputs(t, b, cfg)
	for deadline := time.Now().Add(10 * time.Second); testutilGauge(iface) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the input did not open the interface")
		}
	}
	conn, err := socketcan.DialContext(t.Context(), "can", iface)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx := socketcan.NewTransmitter(conn)
	const n = 1000
	for i := range n {
		var d [8]byte
		putLE(&d, 0, 16, uint64(i))
		if err := tx.TransmitFrame(t.Context(), canlib.Frame{ID: 0x100, Length: 8, Data: d}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[float64]bool{}
	for deadline := time.Now().Add(20 * time.Second); len(seen) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d EngineSpeed values", len(seen), n)
		}
		for _, r := range readAll(t, b, c.Topic) {
			var s signalRecord
			if err := json.Unmarshal(r.Value, &s); err == nil && s.Signal == "EngineSpeed" && s.Interface == iface {
				seen[*s.Value] = true
			}
		}
	}
}

// testutilGauge is katka_can_interface_up of iface.
func testutilGauge(iface string) float64 {
	return testutil.ToFloat64(interfaceUp.WithLabelValues(iface))
}
