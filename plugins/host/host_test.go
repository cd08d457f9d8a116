package host_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/plugins/host"
	"github.com/katka-io/katka/plugins/plugintest"
	"github.com/katka-io/katka/plugins/sdk"
)

// plugins are built once per test binary into one directory.
var (
	buildOnce sync.Once
	pluginDir string
)

func plugins(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "katka-plugins-")
		if err != nil {
			t.Fatal(err)
		}
		pluginDir = dir
		plugintest.Build(t, dir, "./plugins/examples/filesink", "file-sink", sdk.KindSink)
		plugintest.Build(t, dir, "./plugins/examples/windowavg", "window-avg", sdk.KindProcessor)
		plugintest.Build(t, dir, "./plugins/examples/jsonroute", "json-route", sdk.KindPartitioner)
		plugintest.Build(t, dir, "./plugins/examples/filetail", "file-tail", sdk.KindSource)
		plugintest.Build(t, dir, "./plugins/host/testdata/hang", "hang", sdk.KindProcessor)
		plugintest.Build(t, dir, "./plugins/host/testdata/noop", "noop", sdk.KindProcessor)
		plugintest.Build(t, dir, "./plugins/host/testdata/badout", "badout", sdk.KindProcessor)
		plugintest.Build(t, dir, "./plugins/host/testdata/bigstate", "bigstate", sdk.KindProcessor)
		plugintest.Build(t, dir, "./plugins/host/testdata/bigpos", "bigpos", sdk.KindSource)
		plugintest.Build(t, dir, "./plugins/host/testdata/errpart", "errpart", sdk.KindPartitioner)
		plugintest.Build(t, dir, "./plugins/host/testdata/route", "route", sdk.KindProcessor)
		plugintest.Build(t, dir, "./plugins/host/testdata/envreport", "envreport", sdk.KindProcessor)
	})
	if pluginDir == "" {
		t.Fatal("plugins not built")
	}
	return pluginDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

func openBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(prometheus.NewRegistry()), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testConfig(dir string, inst ...config.PluginInstance) config.Plugins {
	c := config.Default().Plugins
	c.Dir = dir
	c.RestartMin = 50 * time.Millisecond
	c.RestartMax = 500 * time.Millisecond
	c.CallTimeout = 5 * time.Second
	c.Instances = inst
	return c
}

type running struct {
	h      *host.Host
	reg    *prometheus.Registry
	cancel context.CancelFunc
	wg     *sync.WaitGroup
}

func startHost(t testing.TB, b *broker.Broker, cfg config.Plugins) *running {
	t.Helper()
	return startHostLog(t, b, cfg, testLogger(t))
}

func startHostLog(t testing.TB, b *broker.Broker, cfg config.Plugins, log *slog.Logger) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := host.New(b, host.Options{Config: cfg, DefaultPartitions: 1, Registerer: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := h.Start(ctx, &wg); err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{h: h, reg: reg, cancel: cancel, wg: &wg}
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() { r.cancel(); r.wg.Wait() }

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func produce(t testing.TB, b *broker.Broker, topic string, p int32, values ...string) {
	t.Helper()
	recs := make([]broker.Record, len(values))
	for i, v := range values {
		recs[i] = broker.Record{Key: []byte("k"), Value: []byte(v)}
	}
	if _, err := b.Produce(context.Background(), topic, p, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProgress waits until remaining() is 0, checking every interval, and
// fails only when it has not gone down for stall: large transfers on a loaded
// box are slow but progressing, which a fixed deadline would fail.
func waitProgress(t testing.TB, stall, interval time.Duration, what string, remaining func() int) {
	t.Helper()
	best, since := -1, time.Now()
	for {
		r := remaining()
		if r == 0 {
			return
		}
		if best < 0 || r < best {
			best, since = r, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("no progress for %s waiting for %s: %d remaining", stall, what, r)
		}
		time.Sleep(interval)
	}
}

// readAll returns every record of every partition of topic.
func readAll(t testing.TB, b *broker.Broker, topic string) []broker.Record {
	t.Helper()
	info, err := b.Topic(topic)
	if err != nil {
		return nil
	}
	var out []broker.Record
	for p := range info.Partitions {
		off := int64(0)
		for {
			res, err := b.Fetch(context.Background(), topic, p, off, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) == 0 {
				break
			}
			out = append(out, res.Records...)
			off = res.Records[len(res.Records)-1].Offset + 1
		}
	}
	return out
}

// sinkLines reads every line of the file sink's files for topic.
func sinkLines(t testing.TB, dir, topic string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, topic+"*.jsonl"))
	var out []map[string]any
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue // rotated meanwhile: the next poll sees it under its new name
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				continue // a line being written
			}
			out = append(out, m)
		}
		fh.Close()
	}
	return out
}

func TestDiscoverAndChecksumMismatchRefused(t *testing.T) {
	src := plugins(t)
	dir := t.TempDir()
	// A copy of file-sink whose binary no longer matches its manifest.
	m, err := host.LoadManifest(filepath.Join(src, "file-sink", host.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := os.ReadFile(m.Path())
	os.MkdirAll(filepath.Join(dir, "file-sink"), 0o755)
	os.WriteFile(filepath.Join(dir, "file-sink", "file-sink"), append(bin, 0), 0o755)
	manifest, _ := os.ReadFile(filepath.Join(src, "file-sink", host.ManifestFile))
	os.WriteFile(filepath.Join(dir, "file-sink", host.ManifestFile), manifest, 0o644)
	// And a broken manifest that must not hide it.
	os.MkdirAll(filepath.Join(dir, "broken"), 0o755)
	os.WriteFile(filepath.Join(dir, "broken", host.ManifestFile), []byte("name: x\nkind: teleporter\n"), 0o644)

	ms, errs := host.Discover(dir)
	if len(ms) != 1 || ms[0].Name != "file-sink" || ms[0].Kind != sdk.KindSink {
		t.Fatalf("discovered %+v", ms)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `kind: "teleporter" is not allowed`) {
		t.Fatalf("manifest errors %v", errs)
	}
	err = ms[0].Verify()
	if !errors.Is(err, host.ErrChecksum) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("Verify = %v, want a checksum refusal", err)
	}
	t.Logf("refused: %v", err)

	// Under the host it is never started, and says why.
	b := openBroker(t)
	out := t.TempDir()
	r := startHost(t, b, testConfig(dir, config.PluginInstance{Name: "s", Plugin: "file-sink", Inputs: []string{"in"}, Settings: []string{"dir=" + out}}))
	waitFor(t, 5*time.Second, "a checksum error", func() bool {
		return testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "checksum")) >= 1
	})
	st := r.h.Status()
	if st[0].Up || !strings.Contains(st[0].LastError, "checksum mismatch") {
		t.Fatalf("status %+v", st)
	}
}

// counter returns a collector for one labelled series, for testutil.
func counter(reg *prometheus.Registry, name, reason string) prometheus.Collector {
	return collectorFunc(func() float64 {
		mfs, _ := reg.Gather()
		sum := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				ok := reason == ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == reason {
						ok = true
					}
				}
				if ok {
					if m.GetCounter() != nil {
						sum += m.GetCounter().GetValue()
					} else if m.GetGauge() != nil {
						sum += m.GetGauge().GetValue()
					}
				}
			}
		}
		return sum
	})
}

type collectorFunc func() float64

var gaugeDesc = prometheus.NewDesc("x", "x", nil, nil)

func (f collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- gaugeDesc }
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(gaugeDesc, prometheus.GaugeValue, f())
}

func TestConfigErrorsNameTheField(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	_, err := host.New(b, host.Options{Config: testConfig(dir,
		config.PluginInstance{Name: "a", Plugin: "nope", Inputs: []string{"in"}},
		config.PluginInstance{Name: "b", Plugin: "file-sink"},
		config.PluginInstance{Name: "c", Plugin: "file-tail"},
	)})
	for _, want := range []string{
		`plugins.instances[0].plugin: no plugin "nope"`,
		"plugins.instances[1].inputs: plugin file-sink is a sink and needs at least one input topic",
		"plugins.instances[2].output: plugin file-tail is a source and needs an output topic",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}

// TestSinkSurvivesKills writes records to the file sink while its process is
// SIGKILLed; every record ends up in the files (duplicates allowed).
func TestSinkSurvivesKills(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	if _, err := b.CreateTopic("in", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	r := startHost(t, b, testConfig(dir, config.PluginInstance{Name: "archive", Plugin: "file-sink", Inputs: []string{"in"},
		Settings: []string{"dir=" + out, "rotate_bytes=20000"}}))
	const n = 6000
	kills := 0
	for i := 0; i < n; i += 200 {
		vals := make([]string, 200)
		for j := range vals {
			vals[j] = fmt.Sprintf("v%d", i+j)
		}
		produce(t, b, "in", int32(i/200%3), vals...)
		if i%1200 == 600 {
			waitFor(t, 10*time.Second, "the sink up", func() bool { return r.h.Status()[0].Up })
			syscall.Kill(r.h.Status()[0].PID, syscall.SIGKILL)
			kills++
		}
		time.Sleep(10 * time.Millisecond)
	}
	seen := map[string]int{}
	waitFor(t, 20*time.Second, "all records in the sink's files", func() bool {
		clear(seen)
		for _, l := range sinkLines(t, out, "in") {
			seen[l["value"].(string)]++
		}
		return len(seen) == n
	})
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	files, _ := filepath.Glob(filepath.Join(out, "in*.jsonl"))
	waitFor(t, 10*time.Second, "a restart per kill", func() bool {
		return testutil.ToFloat64(counter(r.reg, "katka_plugin_restarts_total", "")) >= float64(kills)
	})
	restarts := testutil.ToFloat64(counter(r.reg, "katka_plugin_restarts_total", ""))
	t.Logf("%d records, %d kills, %v restarts, %d duplicates, %d files (rotated)", n, kills, restarts, dups, len(files))
	if kills == 0 || restarts < float64(kills) || len(files) < 2 {
		t.Fatalf("kills %d restarts %v files %d", kills, restarts, len(files))
	}
}

// TestHungPluginIsKilledAndRestarted: the hang processor blocks on a record;
// the call times out, the process is killed and restarted, and every record
// still comes out.
func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	cfg := testConfig(dir, config.PluginInstance{Name: "h", Plugin: "hang", Inputs: []string{"in"}, Output: "out",
		Settings: []string{"marker=" + filepath.Join(t.TempDir(), "hung")}})
	cfg.CallTimeout = 2 * time.Second
	if _, err := b.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produce(t, b, "in", 0, "a", "b")
	logs := &syncBuffer{}
	r := startHostLog(t, b, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	waitFor(t, 10*time.Second, "first records through", func() bool { return len(readAll(t, b, "out")) == 2 })
	pid := r.h.Status()[0].PID
	produce(t, b, "in", 0, "c", "hang", "d")
	waitFor(t, 15*time.Second, "records after the hang", func() bool { return len(readAll(t, b, "out")) == 5 })
	if got := testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "timeout")); got != 1 {
		t.Fatalf("timeouts = %v, want 1", got)
	}
	st := r.h.Status()[0]
	if st.Restarts != 1 || st.PID == pid || !strings.Contains(st.LastError, "timed out") {
		t.Fatalf("status %+v (old pid %d)", st, pid)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("hung plugin pid %d still alive", pid)
	}
	// The plugin's own log line (sdk.Logger on its stderr) is in katka's log.
	if l := logs.String(); !strings.Contains(l, `msg="hanging now" plugin=h offset=3`) || !strings.Contains(l, "timed out after 2s") {
		t.Fatalf("log lacks the plugin's line or the timeout:\n%s", l)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent log writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// TestSourceThroughPartitioner tails a file with the file-tail source and
// routes the lines with the json-route partitioner by their "line" field.
func TestSourceThroughPartitioner(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	if _, err := b.CreateTopic("lines", 4, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "input.log")
	var sb strings.Builder
	for i := range 500 {
		fmt.Fprintf(&sb, `{"line":%d,"i":%d}`+"\n", i%7, i)
	}
	os.WriteFile(file, []byte(sb.String()), 0o644)
	r := startHost(t, b, testConfig(dir,
		config.PluginInstance{Name: "route", Plugin: "json-route", Settings: []string{"field=line"}},
		config.PluginInstance{Name: "tail", Plugin: "file-tail", Output: "lines", Partitioner: "route", Settings: []string{"path=" + file, "poll_interval=50ms"}},
	))
	waitFor(t, 15*time.Second, "500 lines", func() bool { return len(readAll(t, b, "lines")) >= 500 })
	for p := range int32(4) {
		res, err := b.Fetch(context.Background(), "lines", p, 0, 1<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Records {
			var v struct{ Line int }
			json.Unmarshal(r.Value, &v)
			if int32(v.Line%4) != p {
				t.Fatalf("line %d in partition %d", v.Line, p)
			}
		}
	}
	if n := len(readAll(t, b, "lines")); n != 500 {
		t.Fatalf("%d records, want 500", n)
	}
	// Internal producers can use the same partitioner instance.
	got, err := r.h.Partition(context.Background(), "route", "x", 5, []broker.Record{{Value: []byte(`{"line":7}`)}, {Value: []byte(`{"line":3}`)}})
	if err != nil || len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("Partition = %v, %v", got, err)
	}
	if _, err := r.h.Partition(context.Background(), "tail", "x", 5, nil); err == nil {
		t.Fatal("a source accepted as partitioner")
	}
}

func manifest(t testing.TB, name string) host.Manifest {
	t.Helper()
	m, err := host.LoadManifest(filepath.Join(plugins(t), name, host.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBadPluginOutputIsDroppedNotFatal: output to an invalid topic is dropped
// and counted; a partition out of range falls back to the partitioner.
func TestBadPluginOutputIsDroppedNotFatal(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	if _, err := b.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("out", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produce(t, b, "in", 0, "a", "b", "c")
	r := startHost(t, b, testConfig(dir, config.PluginInstance{Name: "bad", Plugin: "badout", Inputs: []string{"in"}, Output: "out"}))
	waitFor(t, 10*time.Second, "6 good records", func() bool { return len(readAll(t, b, "out")) == 6 })
	waitFor(t, 5*time.Second, "3 bad_output errors", func() bool {
		return testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "bad_output")) == 3
	})
	if st := r.h.Status()[0]; !st.Up || st.Restarts != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestConfigValidation checks the plugins section's validation (config.Validate).
func TestConfigValidation(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Plugins.CallTimeout = 0
	c.Plugins.RestartMax = time.Millisecond
	c.Plugins.BatchMaxRecords = 0
	c.Plugins.StateTopic = "a b"
	c.Plugins.Instances = []config.PluginInstance{
		{Name: "a", Plugin: "p", Inputs: []string{"x/y"}, Settings: []string{"novalue"}, Partitioner: "zzz"},
		{Name: "a", Plugin: ""},
	}
	err := c.Validate()
	for _, want := range []string{
		"plugins.call_timeout: 0s must be positive",
		"plugins.restart_max: 1ms is less than restart_min 100ms",
		"plugins.batch_max_records: 0 is out of range (allowed: 1..100000)",
		`plugins.state_topic: topic name "a b" contains ' '`,
		`plugins.instances[0].inputs[0]: topic name "x/y" contains '/'`,
		`plugins.instances[0].settings[0]: "novalue" is not key=value`,
		`plugins.instances[0].partitioner: "zzz" is not allowed (allowed: hash, round_robin, or the name of a partitioner instance)`,
		`plugins.instances[1].name: "a" is already listed at plugins.instances[0]`,
		"plugins.instances[1].plugin: must not be empty",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error lacks %q:\n%v", want, err)
		}
	}
}
