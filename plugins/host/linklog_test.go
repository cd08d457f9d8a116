package host_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/appliance/linkstate/logtest"
	"github.com/katka-io/katka/plugins/host"
)

// TestLinkLogPluginCrashLoopThenBack kills a running sink plugin while its
// binary no longer matches the manifest, so every restart is refused, then
// puts the right binary back: the log holds one WARN when it stops and one
// INFO "back after" once it runs again, however many restarts failed between
// (issue 18, point 9).
func TestLinkLogPluginCrashLoopThenBack(t *testing.T) {
	const (
		link = "link=plugin/s"
		lost = "WARN link lost; retrying"
		back = "INFO link back after "
	)
	src := plugins(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "file-sink"), 0o755)
	m, err := host.LoadManifest(filepath.Join(src, "file-sink", host.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(m.Path())
	manifest, _ := os.ReadFile(filepath.Join(src, "file-sink", host.ManifestFile))
	binPath := filepath.Join(dir, "file-sink", "file-sink")
	// put replaces the binary by a rename: the running process keeps its file.
	put := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(binPath+".new", b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(binPath+".new", binPath); err != nil {
			t.Fatal(err)
		}
	}
	put(good)
	os.WriteFile(filepath.Join(dir, "file-sink", host.ManifestFile), manifest, 0o644)

	b := openBroker(t)
	if _, err := b.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	rec := logtest.New()
	links := linkstate.NewRegistry(nil)
	h, err := host.New(b, host.Options{Config: testConfig(dir, config.PluginInstance{Name: "s", Plugin: "file-sink",
		Inputs: []string{"in"}, Settings: []string{"dir=" + t.TempDir()}}), DefaultPartitions: 1,
		Log: rec.Logger(), Links: links, StableAfter: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := h.Start(ctx, &wg); err != nil {
		cancel()
		t.Fatal(err)
	}
	defer func() { cancel(); wg.Wait() }()
	wait := func(what string) string {
		t.Helper()
		line, ok := rec.Wait(15*time.Second, what, link)
		if !ok {
			t.Fatalf("no line %q within 15s; log:\n%s", what, rec)
		}
		return line
	}

	wait("INFO link up")
	pid := h.Status()[0].PID
	put(append(append([]byte(nil), good...), 0)) // restarts are refused from now on
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill plugin pid %d: %v", pid, err)
	}
	t.Log(wait(lost))
	waitFor(t, 10*time.Second, "refused restarts", func() bool {
		s := links.Snapshot()
		return len(s) == 1 && s[0].State == linkstate.Down && s[0].FailedAttempts >= 4 && strings.Contains(s[0].LastError, "checksum")
	})
	put(good)
	t.Log(wait(back))

	if n := len(rec.Lines(lost, link)); n != 1 {
		t.Errorf("%d %q lines, want 1", n, lost)
	}
	if n := len(rec.Lines(back, link)); n != 1 {
		t.Errorf("%d %q lines, want 1", n, back)
	}
	if warns := append(rec.Lines("WARN"), rec.Lines("ERROR")...); len(warns) != 1 {
		t.Errorf("%d WARN and ERROR lines, want 1:\n%s", len(warns), strings.Join(warns, "\n"))
	}
	if t.Failed() {
		t.Logf("log:\n%s", rec)
	}
}
