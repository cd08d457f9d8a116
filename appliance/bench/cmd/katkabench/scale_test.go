package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedianPoint(t *testing.T) {
	runs := []scalePoint{
		{x: 16, produce: 300, consume: 900, p99: 30, rssMB: 50, sent: 10, runs: 1, err: "first"},
		{x: 16, produce: 100, consume: 0, p99: 10, rssMB: 70, sent: 10, fail: 2, runs: 1}, // consume failed
		{x: 16, produce: 200, consume: 700, p99: 20, rssMB: 60, sent: 10, runs: 1, cleanup: "last"},
	}
	got := medianPoint(runs)
	if got.x != 16 || got.runs != 3 || got.produce != 200 || got.p99 != 20 || got.rssMB != 60 {
		t.Errorf("medians: got x %d, runs %d, produce %v, p99 %v, rss %v; want 16, 3, 200, 20, 60", got.x, got.runs, got.produce, got.p99, got.rssMB)
	}
	if got.consume != 800 {
		t.Errorf("consume: got %v, want 800 (the median of the runs that measured it)", got.consume)
	}
	if got.sent != 30 || got.fail != 2 || got.err != "first" || got.cleanup != "last" {
		t.Errorf("sums: got sent %d, fail %d, err %q, cleanup %q", got.sent, got.fail, got.err, got.cleanup)
	}
	if r := rateRange(got); r != "200 (100-300)" {
		t.Errorf("rateRange: got %q, want %q", r, "200 (100-300)")
	}
	if one := medianPoint(runs[:1]); rateRange(one) != "300" {
		t.Errorf("rateRange of one run: got %q, want %q", rateRange(one), "300")
	}
}

func TestScrapeTopic(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `# HELP katka_partition_bytes Bytes on disk of a partition's log.
# TYPE katka_partition_bytes gauge
katka_partition_bytes{partition="0",topic="scale"} 1000
katka_partition_bytes{partition="1",topic="scale"} 500
katka_partition_bytes{partition="0",topic="scale2"} 7
katka_retention_deleted_segments_total{topic="scale"} 3
katka_up 1
`)
	}))
	defer srv.Close()
	m, err := scrapeTopic(srv.URL+"/metrics", "scale")
	if err != nil {
		t.Fatal(err)
	}
	if m["katka_partition_bytes"] != 1500 || m["katka_retention_deleted_segments_total"] != 3 || len(m) != 2 {
		t.Errorf("got %v, want partition bytes 1500 (scale2 left out) and 3 segments", m)
	}
	if _, err := scrapeTopic(srv.URL+"/missing", "scale"); err == nil {
		t.Error("no error from a metrics page that is not there")
	}
}

func TestCheckRan(t *testing.T) {
	retention := cleanupKinds[1]
	var e env
	ok := checkRan(&e, retention, scalePoint{metrics: map[string]float64{retention.ran: 4}})
	if ok.err != "" || len(e.errors) != 0 {
		t.Errorf("retention that ran: err %q, run errors %v", ok.err, e.errors)
	}
	bad := checkRan(&e, retention, scalePoint{metrics: map[string]float64{}})
	if !strings.Contains(bad.err, "did not run") || len(e.errors) != 1 {
		t.Errorf("retention that did not run: err %q, run errors %v", bad.err, e.errors)
	}
	if plain := checkRan(&e, cleanupKinds[0], scalePoint{metrics: map[string]float64{}}); plain.err != "" {
		t.Errorf("plain topic: err %q, want none (nothing to clean)", plain.err)
	}
}

func TestEchoRoundTrips(t *testing.T) {
	rate, err := echoRoundTrips(8, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rate <= 0 {
		t.Errorf("got %v round trips/s, want some", rate)
	}
}

func TestSpliceScale(t *testing.T) {
	section := scaleBegin + "new\n" + scaleEnd
	for _, c := range []struct{ readme, want string }{
		{"a\n" + scaleBegin + "old\n" + scaleEnd + "b\n", "a\n" + section + "b\n"},
		{"a\n## Where the CPU goes\n", "a\n" + section + "## Where the CPU goes\n"},
	} {
		if got := spliceScale(c.readme, section); got != c.want {
			t.Errorf("spliceScale(%q): got %q, want %q", c.readme, got, c.want)
		}
	}
}

func TestScaleCharts(t *testing.T) {
	e := &env{out: filepath.Join(t.TempDir(), "README.md")}
	res := &scaleResult{
		series: []scaleSeries{
			{name: "partitions", points: []scalePoint{{x: 1, produce: 500_000, consume: 900_000}, {x: 16, produce: 400_000}, {x: 256, err: "failed"}}},
			{name: "latency", points: []scalePoint{{x: 10, p50: 2, p99: 4, p999: 9}, {x: 50, p50: 3, p99: 8, p999: 20}, {x: 90}}},
			{name: "groups", points: []scalePoint{{x: 1, err: "failed"}, {x: 8, err: "failed"}}}, // nothing to draw
			{name: "connections", points: []scalePoint{{x: 1024, produce: 100_000}}},             // one point: no chart
		},
		cleanup: &cleanupResult{maxRatio: map[string]samples{"plain": {1}, "retention": {0.9}, "compact": {0.8}},
			p99Ratio: map[string]samples{"plain": {1}, "retention": {1.2}, "compact": {3}}},
	}
	got := scaleCharts(e, res)
	want := []string{"scale-partitions.png", "scale-latency.png", "scale-cleanup.png"}
	if !slices.Equal(got, want) || len(e.errors) > 0 {
		t.Fatalf("got charts %v (errors %v), want %v", got, e.errors, want)
	}
	for _, name := range want {
		if fi, err := os.Stat(filepath.Join(filepath.Dir(e.out), name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestBenchGC: the load generator runs with GOGC benchGCPercent unless GOGC
// is set (it ran at 100, and its consumer's GC set the consume rates).
func TestBenchGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	for _, c := range []struct {
		gogc string
		want int
	}{{"", benchGCPercent}, {"150", 100}} {
		t.Setenv("GOGC", c.gogc)
		debug.SetGCPercent(100)
		benchGC()
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("GOGC=%q: GC percent %d, want %d", c.gogc, got, c.want)
		}
	}
}
