package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPluginsCrash runs the real katka with the file sink and the window
// processor on one input topic, produces records through the Kafka listener
// while SIGKILLing each plugin 10 times, and checks that katka served produce
// and fetch throughout, that the plugins came back every time, that the
// sink's files hold every record (duplicates counted), and that the window
// output is exact (duplicated windows counted, none wrong or missing).
// 100,000 records (about 20 s); 20,000 with -short.
func TestPluginsCrash(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 20000
	}
	const kills = 10
	dir := examplePlugins(t)
	out := t.TempDir()
	k := startKafkaKatkaWith(t, fmt.Sprintf(`
sensors:
  simulated:
    enabled: false
storage:
  segment_bytes: 1MiB
topics:
  create:
    - name: readings
      partitions: 1
plugins:
  dir: %s
  restart_min: 50ms
  restart_max: 400ms
  call_timeout: 5s
  instances:
    - name: archive
      plugin: file-sink
      inputs: [readings]
      settings: ["dir=%s", "rotate_bytes=1048576"]
    - name: avg
      plugin: window-avg
      inputs: [readings]
      output: readings.avg
      settings: ["window=1s", "grace=0s", "field=v"]
`, dir, out))
	katkaPID := k.cmd.Process.Pid

	// Record i: key k<i%10>, value {"i":i,"v":i%1000}, timestamp base + 10ms*i.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cl := k.client(t, kgo.DefaultProduceTopic("readings"), kgo.MaxBufferedRecords(20000))
	ctx := kafkaCtx(t, 4*time.Minute)
	var produced atomic.Int64
	var prodErr atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		per := n / 200 // 200 chunks over about 10 s: the kills hit a flowing stream
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%10)), Value: []byte(fmt.Sprintf(`{"i":%d,"v":%d}`, i, i%1000)),
				Timestamp: base.Add(time.Duration(i) * 10 * time.Millisecond)}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					prodErr.Store(err)
				}
				produced.Add(1)
			})
			if i%per == per-1 {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if err := cl.Flush(ctx); err != nil {
			prodErr.Store(err)
		}
	}()

	// Kill each plugin 10 times; each time it must come back with a new pid,
	// and katka must answer a fetch meanwhile.
	fetcher := k.client(t, kgo.ConsumeTopics("readings"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for round := range kills {
		for _, comm := range []string{"file-sink", "window-avg"} {
			var pid int
			waitUntil(t, 20*time.Second, comm+" running", func() bool { pid = childPID(katkaPID, comm); return pid != 0 })
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s: %v", comm, err)
			}
			waitUntil(t, 20*time.Second, comm+" restarted", func() bool {
				p := childPID(katkaPID, comm)
				return p != 0 && p != pid
			})
		}
		t.Logf("round %d: both plugins killed and back, %d records produced so far", round+1, produced.Load())
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		fs := fetcher.PollRecords(fctx, 100)
		cancel()
		if errs := fs.Errors(); len(errs) > 0 || fs.NumRecords() == 0 {
			t.Fatalf("round %d: fetch while plugins restart: %d records, errors %v", round, fs.NumRecords(), errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	if err, _ := prodErr.Load().(error); err != nil {
		t.Fatalf("produce failed while plugins restarted: %v", err)
	}
	if !k.alive() {
		t.Fatal("katka died")
	}

	// The sink's files hold every record.
	seen := make([]int, n)
	// Each check parses every line written so far: check once a second, and
	// fail only when the sink stops making progress.
	waitProgress(t, 30*time.Second, time.Second, "every record in the sink's files", func() int {
		clear(seen)
		missing := n
		files, _ := filepath.Glob(filepath.Join(out, "readings*.jsonl"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				var l struct{ Value string }
				var v struct{ I int }
				if json.Unmarshal(sc.Bytes(), &l) != nil || json.Unmarshal([]byte(l.Value), &v) != nil || v.I < 0 || v.I >= n {
					continue
				}
				if seen[v.I] == 0 {
					missing--
				}
				seen[v.I]++
			}
			fh.Close()
		}
		return missing
	})
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}

	// The window output is exact: every closed window once or more, all right.
	type win struct {
		key   string
		start string
	}
	type agg struct{ sum, count float64 }
	want := map[win]agg{}
	last := base.Add(time.Duration(n-1) * 10 * time.Millisecond)
	for i := range n {
		ts := base.Add(time.Duration(i) * 10 * time.Millisecond)
		start := ts.Truncate(time.Second)
		if !start.Add(time.Second).After(last) { // closed: end <= watermark
			w := win{fmt.Sprintf("k%d", i%10), start.Format(time.RFC3339Nano)}
			a := want[w]
			a.sum += float64(i % 1000)
			a.count++
			want[w] = a
		}
	}
	got := map[win]int{}
	outDups := 0
	avgCl := k.client(t, kgo.ConsumeTopics("readings.avg"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	waitProgress(t, 30*time.Second, 100*time.Millisecond, "every window in readings.avg", func() int {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := avgCl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var o struct {
				WindowStart string `json:"window_start"`
				Count       float64
				Sum, Avg    float64
			}
			if err := json.Unmarshal(r.Value, &o); err != nil {
				t.Fatalf("bad window output %q: %v", r.Value, err)
			}
			w := win{string(r.Key), o.WindowStart}
			a, ok := want[w]
			if !ok || a.count != o.Count || a.sum != o.Sum || o.Avg != a.sum/a.count {
				t.Fatalf("window %v: got count %v sum %v avg %v, want %+v (known %v)", w, o.Count, o.Sum, o.Avg, a, ok)
			}
			if got[w]++; got[w] > 1 {
				outDups++
			}
		})
		return len(want) - len(got)
	})
	// Records move in batches: on average at least 100 per call.
	resp, err := http.Get("http://" + k.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range []struct{ inst, method string }{{"archive", "write"}, {"avg", "process"}} {
		in := metricValue(string(metrics), "katka_plugin_records_in_total", `instance="`+c.inst+`"`)
		calls := metricValue(string(metrics), "katka_plugin_call_duration_seconds_count", `instance="`+c.inst+`"`, `method="`+c.method+`"`)
		t.Logf("%s: %.0f records in %.0f %s calls (%.0f per call)", c.inst, in, calls, c.method, in/calls)
		if calls == 0 || in/calls < 100 {
			t.Errorf("%s: %.0f records in %.0f calls: batches under 100 records", c.inst, in, calls)
		}
	}
	t.Logf("plugins crash: %d records, %d kills of each plugin, sink: 0 missing, %d duplicates; window-avg: %d windows exact, 0 missing, %d duplicated outputs",
		n, kills, dups, len(want), outDups)
}

// metricValue sums the series of name whose labels contain every one of labels.
func metricValue(text, name string, labels ...string) float64 {
	sum := 0.0
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		ok := true
		for _, want := range labels {
			ok = ok && strings.Contains(l, want)
		}
		if i := strings.LastIndexByte(l, ' '); ok && i > 0 {
			v, _ := strconv.ParseFloat(l[i+1:], 64)
			sum += v
		}
	}
	return sum
}
