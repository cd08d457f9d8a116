package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// cleanupCheck is storage.retention_check_interval in the cleanup series
// (katka's default is 30 s): retention and compaction run every second, so
// that they run several times during every point.
const cleanupCheck = time.Second

// How long the cleanup series produces: as fast as it can, then at a fixed
// rate with a group reading.
const (
	cleanupMaxTime = 4 * time.Second
	cleanupLatTime = 5 * time.Second
)

// cleanupKeys is how many distinct keys the cleanup series' records carry
// (uniformly spread), so that compaction keeps one record per key.
const cleanupKeys = 1000

// cleanupKind is one topic of the cleanup series.
type cleanupKind struct {
	name, what string
	config     []string // --topic-config values beside segment.bytes
	// ran names the counter of katka's /metrics that shows the cleanup ran
	// during a point (empty: none expected).
	ran string
}

// cleanupKinds are the plain topic and the two with cleanup underneath; the
// first is the one the others are compared with.
var cleanupKinds = []cleanupKind{
	{name: "plain", what: "`cleanup.policy=delete`, retention 7 days: nothing to delete"},
	{name: "retention", what: "`retention.bytes=33554432`: every check deletes the oldest segments beyond 32 MiB (about a second of the writes, " +
		"so that the reading group finds its next records deleted only if it falls that far behind)", config: []string{"retention.bytes=33554432"},
		ran: "katka_retention_deleted_segments_total"},
	{name: "compact", what: "`cleanup.policy=compact`: every check that finds a newly sealed segment compacts the sealed segments to the latest record of each key", config: []string{"cleanup.policy=compact"},
		ran: "katka_compaction_removed_records_total"},
}

// cleanupResult is the cleanup series: the key figures of the plain topic
// beside the same on a topic whose retention deletes segments all along and
// on a compacted one.
type cleanupResult struct {
	max, lat map[string]scalePoint // median points per kind: as fast as possible, and at half the plain maximum
	// maxRatio and p99Ratio are each kind's maximum rate and end-to-end p99
	// over the plain topic's of the same run.
	maxRatio, p99Ratio map[string]samples
	rates              samples // the fixed rate of the latency points, per run
	runs               int
}

// cleanupBench runs the cleanup series: for each run, every kind as fast as
// possible, then every kind at half of that run's plain maximum with one
// group reading; the kinds' order rotates from run to run.
func cleanupBench(ctx context.Context, e *env) *cleanupResult {
	res := &cleanupResult{max: map[string]scalePoint{}, lat: map[string]scalePoint{}, maxRatio: map[string]samples{}, p99Ratio: map[string]samples{}, runs: e.scaleRuns}
	maxRuns, latRuns := map[string][]scalePoint{}, map[string][]scalePoint{}
	maxBy, p99By := map[string]samples{}, map[string]samples{}
	args := func(k cleanupKind, more ...string) []string {
		a := []string{"--key-distribution", "uniform", "--keys", strconv.Itoa(cleanupKeys), "--topic-config", "segment.bytes=1048576"}
		for _, c := range k.config {
			a = append(a, "--topic-config", c)
		}
		return append(a, more...)
	}
	for run := range e.scaleRuns {
		if ctx.Err() != nil {
			break
		}
		for i := range cleanupKinds {
			k := cleanupKinds[(i+run)%len(cleanupKinds)]
			pt := scalePointRun(ctx, e, pointSpec{series: "cleanup-max", label: k.name, run: run, check: true,
				args: args(k, "--records", "0", "--duration", cleanupMaxTime.String())})
			maxRuns[k.name] = append(maxRuns[k.name], checkRan(e, k, pt))
		}
		rate := maxRuns[cleanupKinds[0].name][run].produce / 2
		res.rates = append(res.rates, rate)
		for i := range cleanupKinds {
			k := cleanupKinds[(i+run)%len(cleanupKinds)]
			var pt scalePoint
			if rate > 0 {
				pt = scalePointRun(ctx, e, pointSpec{series: "cleanup-latency", label: k.name, run: run, check: true,
					args: args(k, "--groups", "1", "--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--duration", cleanupLatTime.String(), "--warmup", latencyWarmup)})
			} else {
				pt = scalePoint{label: k.name, err: "no plain maximum in this run"}
			}
			latRuns[k.name] = append(latRuns[k.name], checkRan(e, k, pt))
		}
		for _, k := range cleanupKinds {
			maxBy[k.name] = append(maxBy[k.name], maxRuns[k.name][run].produce)
			p99By[k.name] = append(p99By[k.name], latRuns[k.name][run].p99)
		}
	}
	plain := cleanupKinds[0].name
	for _, k := range cleanupKinds {
		res.max[k.name], res.lat[k.name] = medianPoint(maxRuns[k.name]), medianPoint(latRuns[k.name])
		res.maxRatio[k.name] = ratio(maxBy[k.name], maxBy[plain])
		res.p99Ratio[k.name] = ratio(p99By[k.name], p99By[plain])
	}
	return res
}

// checkRan marks a point of kind k whose cleanup did not run as failed, in
// the table and in the run's failures: its figures would not be what they
// claim to be.
func checkRan(e *env, k cleanupKind, pt scalePoint) scalePoint {
	if k.ran == "" || pt.metrics == nil || pt.metrics[k.ran] > 0 {
		return pt
	}
	msg := fmt.Sprintf("%s stayed 0: the cleanup did not run during the point", k.ran)
	pt.err = strings.TrimSpace(pt.err + " " + msg)
	e.errors = append(e.errors, "scale cleanup "+k.name+": "+msg)
	return pt
}

// cleanupMetrics reads katka's /metrics for the scale topic.
func cleanupMetrics(k *katkaServer) (map[string]float64, error) {
	return scrapeTopic("http://"+k.http+"/metrics", scaleTopic)
}

// cleanupDone says what retention and compaction did to the scale topic and
// where its log starts and ends, from its metrics.
func cleanupDone(m map[string]float64) string {
	var parts []string
	if n := m["katka_retention_deleted_segments_total"]; n > 0 {
		parts = append(parts, fmt.Sprintf("retention deleted %s segments (%.0f MB)", thousands(n), m["katka_retention_deleted_bytes_total"]/1e6))
	}
	if n := m["katka_compaction_removed_records_total"]; n > 0 {
		parts = append(parts, fmt.Sprintf("compaction removed %s records (%.0f MB)", thousands(n), m["katka_compaction_reclaimed_bytes_total"]/1e6))
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing deleted or compacted")
	}
	parts = append(parts, fmt.Sprintf("at the end the log held offsets %s to %s, %.1f MB on disk",
		thousands(m["katka_partition_log_start_offset"]), thousands(m["katka_partition_high_watermark"]), m["katka_partition_bytes"]/1e6))
	return strings.Join(parts, "; ")
}

// scrapeTopic sums, per metric name, the samples of url's Prometheus text
// whose labels include topic.
func scrapeTopic(url, topic string) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	want := `topic="` + topic + `"`
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(","+labels+",", ","+want+",") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			m[name] += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// section renders the cleanup series for the README, with its chart if drawn.
func (c *cleanupResult) section(b *strings.Builder, chart string) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("### cleanup: retention and compaction underneath\n\n")
	p("The key figures of one partition of 100 B records with %s uniformly spread keys (acks=all, fsync always, 1 MiB segments), "+
		"on a plain topic and on the same with retention deleting or compaction compacting underneath. ", thousands(cleanupKeys))
	p("Every katka here runs retention and compaction every %s (`storage.retention_check_interval`, default 30 s), so they run several times during each point. ", cleanupCheck)
	p("Per run: each topic produced as fast as one producer can for %s, then each topic at half of that run's plain maximum (%s records/s, median of the runs) for %s (after a %s warm-up left out of the latency) with one group reading; ",
		cleanupMaxTime, thousands(c.rates.median()), cleanupLatTime, latencyWarmup)
	p("every point on a fresh katka, the topics' order rotating from run to run. Figures are medians of %d runs; ratios are taken run by run against the plain topic, then their median (min-max). The topics:\n\n", c.runs)
	for _, k := range cleanupKinds {
		p("- **%s**: %s.\n", k.name, k.what)
	}
	p("\n| topic | max produce rec/s | vs plain | e2e p50 ms at half the plain max | e2e p99 ms | e2e p99.9 ms | p99 vs plain | peak RSS MB (max run) | CPU s / M records (max run) | what the cleanup did (katka's /metrics at the end of the last run) |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range cleanupKinds {
		mx, lt := c.max[k.name], c.lat[k.name]
		note := "as fast as possible: " + mx.cleanup + ". At half the plain max: " + lt.cleanup + "."
		if errs := strings.TrimSpace(mx.err + " " + lt.err); errs != "" {
			note += "; " + errs
		}
		maxVs, p99Vs := "reference", "reference"
		if k.name != cleanupKinds[0].name {
			maxVs, p99Vs = c.maxRatio[k.name].times(), c.p99Ratio[k.name].times()
		}
		p("| %s | %s | %s | %.2f | %.2f | %.2f | %s | %.0f | %.1f | %s |\n", k.name, rateRange(mx), maxVs,
			lt.p50, lt.p99, lt.p999, p99Vs, mx.rssMB, mx.cpuPerM, note)
	}
	p("\n")
	if chart != "" {
		p("![cleanup](%s)\n\n", chart)
	}
}

// cleanupChart draws each kind's maximum rate and end-to-end p99 over the
// plain topic's (medians of the run-by-run ratios) as grouped bars.
func cleanupChart(e *env, c *cleanupResult) (string, error) {
	p := plot.New()
	p.Title.Text = "katka: retention and compaction underneath (vs the plain topic)"
	p.Y.Label.Text = "ratio to the plain topic"
	var names []string
	var maxV, p99V plotter.Values
	for _, k := range cleanupKinds {
		names = append(names, k.name)
		maxV = append(maxV, c.maxRatio[k.name].median())
		p99V = append(p99V, c.p99Ratio[k.name].median())
	}
	w := vg.Points(30)
	for i, bars := range []struct {
		name string
		v    plotter.Values
	}{{"max produce rate", maxV}, {"end-to-end p99 at half the plain max", p99V}} {
		bc, err := plotter.NewBarChart(bars.v, w)
		if err != nil {
			return "", err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		bc.Offset = w * vg.Length(2*i-1) / 2
		p.Add(bc)
		p.Legend.Add(bars.name, bc)
	}
	roomForLegend(p)
	p.Legend.Left = true
	p.NominalX(names...)
	name := "scale-cleanup.png"
	if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(filepath.Dir(e.out), name)); err != nil {
		return "", err
	}
	return name, nil
}
