package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPluginsExamplesUnderServe runs all four example plugins under the real
// katka from one config (as configs/plugins-example.yaml wires them): the
// file-tail source feeds "lines" through the json-route partitioner, the
// window-avg processor averages it into lines.avg and the file sink archives
// both; katka plugin list and status report them.
func TestPluginsExamplesUnderServe(t *testing.T) {
	dir := examplePlugins(t)
	work := t.TempDir()
	input := filepath.Join(work, "line.log")
	archive := filepath.Join(work, "archive")
	os.WriteFile(input, nil, 0o644)
	cfg := fmt.Sprintf(`
sensors:
  simulated:
    enabled: false
topics:
  create:
    - name: lines
      partitions: 4
plugins:
  dir: %s
  restart_min: 50ms
  restart_max: 1s
  instances:
    - name: by-line
      plugin: json-route
      settings: ["field=line"]
    - name: line-log
      plugin: file-tail
      output: lines
      partitioner: by-line
      settings: ["path=%s", "poll_interval=50ms", "key=line-log"]
    - name: temp-avg
      plugin: window-avg
      inputs: [lines]
      output: lines.avg
      settings: ["window=1s", "grace=2s", "field=temp"]
    - name: archive
      plugin: file-sink
      inputs: [lines, lines.avg]
      settings: ["dir=%s"]
`, dir, input, archive)
	k := startKafkaKatkaWith(t, cfg)

	appendLines := func(from, to int) {
		f, err := os.OpenFile(input, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			fmt.Fprintf(f, `{"line":%d,"temp":%d}`+"\n", i%4, 20+i%3)
		}
		f.Close()
	}
	// The window's event time is when file-tail read each line, so the
	// expected windows come from the timestamps the lines got in "lines".
	// The first 300 lines are all handed to temp-avg before any later line
	// exists, and the later lines are read after every first window's end
	// plus grace: those windows then close with exactly the first lines.
	appendLines(0, 300)
	first := consumeN(t, k, "lines", 300)
	type window struct {
		count int64
		sum   float64
	}
	want := map[int64]*window{}
	minTS, maxTS := first[0].Timestamp.UnixMilli(), first[0].Timestamp.UnixMilli()
	for _, r := range first {
		var v struct{ Line, Temp int32 }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.Line != r.Partition {
			t.Fatalf("record %s in partition %d: json-route sends line %d to partition %d", r.Value, r.Partition, v.Line, v.Line)
		}
		ts := r.Timestamp.UnixMilli()
		minTS, maxTS = min(minTS, ts), max(maxTS, ts)
		start := ts - ts%1000
		if want[start] == nil {
			want[start] = &window{}
		}
		want[start].count++
		want[start].sum += float64(v.Temp)
	}
	// With grace 2s no first line is late however temp-avg interleaves the
	// four partitions, as long as file-tail read them within 2s.
	if maxTS-minTS >= 2000 {
		t.Fatalf("file-tail read the first 300 lines over %d ms; the test needs under 2000", maxTS-minTS)
	}
	waitUntil(t, 20*time.Second, "temp-avg to be handed the first 300 lines", func() bool {
		return metricValue(scrapeMetrics(t, k), "katka_plugin_records_in_total", `instance="temp-avg"`) >= 300
	})
	closeAt := time.UnixMilli(maxTS - maxTS%1000 + 1000 + 2000) // last first window's end + grace
	for now := time.Now(); now.Before(closeAt); now = time.Now() {
		time.Sleep(closeAt.Sub(now)) // event time: the later lines must be read after closeAt
	}
	appendLines(300, 400)
	later := 0
	for _, r := range consumeN(t, k, "lines", 400) {
		if !r.Timestamp.Before(closeAt) {
			later++
		}
	}
	if later != 100 {
		t.Fatalf("%d lines read after %s, want the 100 later ones", later, closeAt)
	}

	avg := consumeN(t, k, "lines.avg", len(want))
	for _, r := range avg {
		var o struct {
			Key         string  `json:"key"`
			WindowStart string  `json:"window_start"`
			Count       int64   `json:"count"`
			Sum         float64 `json:"sum"`
			Avg         float64 `json:"avg"`
		}
		if err := json.Unmarshal(r.Value, &o); err != nil {
			t.Fatalf("window output %s: %v", r.Value, err)
		}
		ws, err := time.Parse(time.RFC3339Nano, o.WindowStart)
		w := want[ws.UnixMilli()]
		if err != nil || w == nil || o.Key != "line-log" || o.Count != w.count || o.Sum != w.sum || o.Avg != w.sum/float64(w.count) {
			t.Fatalf("window output %s, want windows (start ms: count, sum) %v", r.Value, fmtWindows(want, func(w *window) (int64, float64) { return w.count, w.sum }))
		}
		t.Logf("window %s: %d lines, avg %v exact", o.WindowStart, o.Count, o.Avg)
	}
	waitUntil(t, 20*time.Second, "the archive to hold lines and lines.avg", func() bool {
		return countLines(filepath.Join(archive, "lines.jsonl")) >= 400 && countLines(filepath.Join(archive, "lines.avg.jsonl")) >= len(want)
	})

	// katka plugin list verifies the checksums; status reads /metrics.
	list, err := exec.Command(k.bin, "plugin", "list", "--config", k.config).CombinedOutput()
	if err != nil {
		t.Fatalf("katka plugin list: %v\n%s", err, list)
	}
	for _, want := range []string{"file-sink", "window-avg", "json-route", "file-tail"} {
		if !strings.Contains(string(list), want) {
			t.Fatalf("plugin list lacks %s:\n%s", want, list)
		}
	}
	if strings.Contains(string(list), "MISMATCH") {
		t.Fatalf("plugin list:\n%s", list)
	}
	status, err := exec.Command(k.bin, "plugin", "status", "--http-addr", k.HTTPAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("katka plugin status: %v\n%s", err, status)
	}
	for _, inst := range []string{"by-line", "line-log", "temp-avg", "archive"} {
		found := false
		for _, l := range strings.Split(string(status), "\n") {
			f := strings.Fields(l)
			if len(f) > 3 && f[0] == inst && f[3] == "yes" {
				found = true
			}
		}
		if !found {
			t.Fatalf("instance %s not up in plugin status:\n%s", inst, status)
		}
	}
	t.Logf("katka plugin list:\n%s\nkatka plugin status:\n%s", list, status)
	resp, err := http.Get("http://" + k.HTTPAddr + "/v1/status/plugins")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("GET /v1/status/plugins: %s", body)
	// snake_case names, as every katka endpoint answers.
	var sts []map[string]any
	if err := json.Unmarshal(body, &sts); err != nil || resp.StatusCode != 200 || len(sts) != 4 {
		t.Fatalf("GET /v1/status/plugins: %d %s (%v)", resp.StatusCode, body, err)
	}
	for _, s := range sts {
		keys := slices.Sorted(maps.Keys(s))
		if want := []string{"instance", "kind", "last_error", "pid", "plugin", "restarts", "up"}; !slices.Equal(keys, want) {
			t.Fatalf("GET /v1/status/plugins: fields %v, want %v: %s", keys, want, body)
		}
		if pid, _ := s["pid"].(float64); s["up"] != true || pid <= 0 {
			t.Fatalf("GET /v1/status/plugins: %s not up: %s", s["instance"], body)
		}
	}

	// Pdeathsig: the plugins die with katka, even when katka is SIGKILLed.
	var pids []int
	for _, comm := range []string{"file-sink", "window-avg", "json-route", "file-tail"} {
		pid := childPID(k.cmd.Process.Pid, comm)
		if pid == 0 {
			t.Fatalf("no %s process under katka", comm)
		}
		pids = append(pids, pid)
	}
	k.kill()
	waitUntil(t, 5*time.Second, "the plugins to die with katka", func() bool {
		for _, pid := range pids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
				return false
			}
		}
		return true
	})
}

// TestPluginsConfigErrorStopsServe: an instance naming no installed plugin
// stops katka at start, naming the field.
func TestPluginsConfigErrorStopsServe(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "katka.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("sensors:\n  simulated:\n    enabled: false\nplugins:\n  dir: %s\n  instances:\n    - name: x\n      plugin: nope\n      inputs: [a]\n", dir)), 0o644)
	out, err := exec.Command(requireBinary(t), "serve", "--config", cfg, "--data-dir", t.TempDir(), "--http-addr", "", "--kafka-addr", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `plugins.instances[0].plugin: no plugin "nope"`) {
		t.Fatalf("katka serve: %v\n%s", err, out)
	}
}

// scrapeMetrics returns katka's /metrics text.
func scrapeMetrics(t *testing.T, k *kafkaKatka) string {
	t.Helper()
	resp, err := http.Get("http://" + k.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fmtWindows renders expected windows as "start: count, sum" sorted by start.
func fmtWindows[W any](ws map[int64]W, f func(W) (int64, float64)) string {
	var parts []string
	for _, start := range slices.Sorted(maps.Keys(ws)) {
		c, s := f(ws[start])
		parts = append(parts, fmt.Sprintf("%d: %d, %v", start, c, s))
	}
	return strings.Join(parts, "; ")
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

// TestSensorsThroughPartitionerPlugin runs the simulated input under the real
// katka with sensors.partitioner naming a json-route instance: every counter
// reading lands on partition value mod 4, as the plugin decides, not where
// the key's hash would put it.
func TestSensorsThroughPartitionerPlugin(t *testing.T) {
	dir := examplePlugins(t)
	k := startKafkaKatkaWith(t, fmt.Sprintf(`
sensors:
  partitioner: by-value
  simulated:
    enabled: true
    topic: counts
    partitions: 4
    interval: 20ms
    sensors:
      - id: c
        kind: counter
        min: 0
        max: 1000
plugins:
  dir: %s
  instances:
    - name: by-value
      plugin: json-route
      settings: ["field=value"]
`, dir))
	recs := consumeN(t, k, "counts", 40)
	parts := map[int32]int{}
	for _, r := range recs {
		var v struct{ Value float64 }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("record %s: %v", r.Value, err)
		}
		if want := int32(v.Value) % 4; r.Partition != want {
			t.Fatalf("reading %s in partition %d, json-route on value gives %d", r.Value, r.Partition, want)
		}
		parts[r.Partition]++
	}
	if len(parts) != 4 {
		t.Fatalf("readings spread over partitions %v, want all 4", parts)
	}
	t.Logf("%d counter readings placed by the json-route plugin: %v per partition", len(recs), parts)
}
