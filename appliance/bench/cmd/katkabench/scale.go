package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// scalePoint is one point of a scale series: one fresh katka serve (default
// config, fsync always), one `bin/katka bench produce --json` (and, for the
// partition series, one `bench consume`), katka's peak RSS and CPU seconds.
// A point taken over several runs holds the median of each figure.
type scalePoint struct {
	x          int     // partitions, connections or groups
	label      string  // the row's name where x is not a count (cleanup series)
	produce    float64 // records/s
	consume    float64 // records/s (0: not measured)
	p50, p99   float64 // ms: end-to-end when groups read, else produce ack latency
	p999       float64
	e2e        bool
	rssMB      float64 // katka's peak RSS
	cpuPerM    float64 // katka's CPU seconds per million records produced
	sent, fail int64
	cleanup    string             // what retention or compaction did during the point
	metrics    map[string]float64 // katka's metrics of the topic at the end (cleanup points)
	err        string
	// runs is how many runs the point is the median of; prodRuns and
	// consRuns keep each run's rates for the range.
	runs               int
	prodRuns, consRuns samples
}

// scaleSeries is one series: its points and what it varies.
type scaleSeries struct {
	name, title, xName, what string
	points                   []scalePoint
}

// scaleResult is the scale section of the report.
type scaleResult struct {
	series  []scaleSeries
	maxRate float64 // the measured single-partition maximum the latency series is a fraction of
	cleanup *cleanupResult
	charts  []string
}

// benchOut is the part of `bench produce --json` the scale series reads.
type benchOut struct {
	Sent          int64   `json:"records_sent"`
	Failed        int64   `json:"records_failed"`
	RecordsPerSec float64 `json:"records_per_sec"`
	ConsumePerSec float64 `json:"consume_records_per_sec"`
	Produce       struct {
		P50  float64 `json:"p50_ms"`
		P99  float64 `json:"p99_ms"`
		P999 float64 `json:"p99_9_ms"`
	} `json:"produce_latency"`
	E2E *struct {
		P50  float64 `json:"p50_ms"`
		P99  float64 `json:"p99_ms"`
		P999 float64 `json:"p99_9_ms"`
	} `json:"end_to_end_latency"`
	Error string `json:"error"`
}

// cpuSeconds is the user+system CPU time of a process so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// scaleTopic is the topic every scale point writes.
const scaleTopic = "scale"

// pointSpec is how to take one scale point.
type pointSpec struct {
	series  string // series name, for the data dir and the progress line
	x       int    // the point's x
	label   string // the point's name where x is not a count
	run     int    // run number, for the data dir
	consume bool   // read the topic with bench consume after the produce
	check   bool   // run retention and compaction every second and report what they did
	// members keeps katka's initial rebalance delay of 3 s, so that the
	// several members of a group join in one rebalance; without it a group's
	// first rebalance is at once (every group of one member).
	members bool
	args    []string // bench produce flags
}

// scalePointRun starts a fresh katka, runs bench produce with the spec's
// flags (and bench consume when it says so) and measures the point.
func scalePointRun(ctx context.Context, e *env, sp pointSpec) scalePoint {
	pt := scalePoint{x: sp.x, label: sp.label, runs: 1}
	name := fmt.Sprintf("%s=%d", sp.series, sp.x)
	if sp.label != "" {
		name = sp.series + "=" + sp.label
	}
	dir := filepath.Join(e.work, fmt.Sprintf("scale-%s-%d-%s-%d", sp.series, sp.x, sp.label, sp.run))
	o := katkaOpts{fsync: "always", retentionCheck: defaultRetentionCheck}
	if sp.check {
		o.retentionCheck = cleanupCheck
	}
	if sp.members {
		o.rebalanceDelay = defaultRebalanceDelay
	}
	k, err := startKatkaWith(e, dir, o)
	if err != nil {
		pt.err = err.Error()
		return pt
	}
	defer func() {
		k.stop()
		os.RemoveAll(dir)
	}()
	cpu0 := cpuSeconds(k.pid())
	all := append([]string{"bench", "produce", "--brokers", k.kafka, "--topic", scaleTopic, "--json", "--quiet", "--timeout", "3m"}, sp.args...)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, e.katka, all...).Output()
	var r benchOut
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		pt.err = fmt.Sprintf("bench produce: %v %v", err, jerr)
		return pt
	}
	pt.sent, pt.fail, pt.produce = r.Sent, r.Failed, r.RecordsPerSec
	pt.p50, pt.p99, pt.p999 = r.Produce.P50, r.Produce.P99, r.Produce.P999
	if r.E2E != nil {
		pt.e2e = true
		pt.p50, pt.p99, pt.p999 = r.E2E.P50, r.E2E.P99, r.E2E.P999
		pt.consume = r.ConsumePerSec
	}
	if r.Error != "" {
		pt.err = r.Error
	}
	if sp.check {
		if pt.metrics, err = cleanupMetrics(k); err != nil {
			pt.err = strings.TrimSpace(pt.err + " " + err.Error())
		} else {
			pt.cleanup = cleanupDone(pt.metrics)
		}
	}
	if sp.consume {
		cout, cerr := exec.CommandContext(cctx, e.katka, "bench", "consume", "--brokers", k.kafka, "--topic", scaleTopic).Output()
		if f := strings.Fields(string(cout)); cerr == nil && len(f) > 4 {
			pt.consume, _ = strconv.ParseFloat(f[3], 64)
		} else if cerr != nil {
			pt.err = strings.TrimSpace(pt.err + " consume: " + cerr.Error())
		}
	}
	if v, err := statusMB(k.pid(), "VmHWM"); err == nil {
		pt.rssMB = v
	}
	if pt.sent > 0 {
		pt.cpuPerM = (cpuSeconds(k.pid()) - cpu0) / (float64(pt.sent) / 1e6)
	}
	pt.prodRuns, pt.consRuns = samples{pt.produce}, samples{pt.consume}
	logf("scale %s: produce %.0f rec/s, consume %.0f rec/s, p99 %.2f ms, peak RSS %.0f MB %s %s", name, pt.produce, pt.consume, pt.p99, pt.rssMB, pt.cleanup, pt.err)
	return pt
}

// medianPoint folds the runs of one point into one: the median of every
// figure (each on its own), the rates of all runs for their range, the
// records of all runs, and the errors of any.
func medianPoint(runs []scalePoint) scalePoint {
	if len(runs) == 0 {
		return scalePoint{}
	}
	if len(runs) == 1 {
		return runs[0]
	}
	out := scalePoint{x: runs[0].x, label: runs[0].label, runs: len(runs)}
	med := func(f func(scalePoint) float64) float64 {
		var s samples
		for _, r := range runs {
			s = append(s, f(r))
		}
		return s.median()
	}
	out.produce = med(func(p scalePoint) float64 { return p.produce })
	out.consume = med(func(p scalePoint) float64 { return p.consume })
	out.p50 = med(func(p scalePoint) float64 { return p.p50 })
	out.p99 = med(func(p scalePoint) float64 { return p.p99 })
	out.p999 = med(func(p scalePoint) float64 { return p.p999 })
	out.rssMB = med(func(p scalePoint) float64 { return p.rssMB })
	out.cpuPerM = med(func(p scalePoint) float64 { return p.cpuPerM })
	var errs []string
	for _, r := range runs {
		out.e2e = out.e2e || r.e2e
		out.sent += r.sent
		out.fail += r.fail
		out.prodRuns = append(out.prodRuns, r.produce)
		out.consRuns = append(out.consRuns, r.consume)
		if r.cleanup != "" {
			out.cleanup = r.cleanup // the last run's
		}
		if r.err != "" {
			errs = append(errs, r.err)
		}
	}
	out.err = strings.Join(errs, "; ")
	return out
}

// scaleBench runs the scale series: partitions (100 B and 1 KiB), producer
// connections, consumer groups, latency at fractions of the maximum rate,
// the same under retention and compaction, and 1,024 slow producers.
func scaleBench(ctx context.Context, e *env) (*scaleResult, error) {
	res := &scaleResult{}
	point := func(sp pointSpec) scalePoint { return scalePointRun(ctx, e, sp) }
	for _, size := range sizes {
		n, name := e.scaleN100, "partitions"
		if size == 1024 {
			n, name = e.scaleN1k, "partitions-1k"
		}
		parts := scaleSeries{name: name, title: "partitions, " + sizeName(size), xName: "partitions",
			what: fmt.Sprintf("aggregate produce of %s records of %s by one producer (acks=all), then consume of all of them by one consumer; "+
				"each point is the median of %d runs, each on a fresh katka, with the range of the rates in brackets", thousands(float64(n)), sizeName(size), e.scaleRuns)}
		for _, p := range e.scalePartitions {
			var runs []scalePoint
			for run := range e.scaleRuns {
				if ctx.Err() != nil {
					break
				}
				runs = append(runs, point(pointSpec{series: name, x: p, run: run, consume: true, args: []string{"--partitions", strconv.Itoa(p),
					"--records", strconv.FormatInt(n, 10), "--record-size", strconv.Itoa(size)}}))
			}
			parts.points = append(parts.points, medianPoint(runs))
		}
		res.series = append(res.series, parts)
	}

	n, nText := strconv.FormatInt(e.n100, 10), thousands(float64(e.n100))
	conns := scaleSeries{name: "producers", xName: "producer connections", what: "aggregate produce of " + nText + " records of 100 B over 16 partitions, acks=all; one run per point"}
	for _, c := range []int{1, 16, 256, 1024} {
		conns.points = append(conns.points, point(pointSpec{series: "producers", x: c, args: []string{"--partitions", "16", "--producers", strconv.Itoa(c),
			"--records", n, "--max-buffered", "10000"}}))
	}
	res.series = append(res.series, conns)

	groups := scaleSeries{name: "groups", xName: "consumer groups", what: "groups reading one 16-partition topic while " + nText + " records of 100 B are produced; consume = records received by all groups per second; one run per point"}
	for _, g := range []int{1, 8, 64} {
		groups.points = append(groups.points, point(pointSpec{series: "groups", x: g, args: []string{"--partitions", "16", "--groups", strconv.Itoa(g), "--records", n}}))
	}
	res.series = append(res.series, groups)

	if pts := res.series[0].points; len(pts) > 0 && pts[0].produce > 0 {
		res.maxRate = pts[0].produce
		lat := scaleSeries{name: "latency", xName: "% of the maximum rate", what: fmt.Sprintf("end-to-end latency, one partition, one producer, one group, 100 B, for 5 s at a fixed rate after a 1 s warm-up left out of the figures "+
			"(maximum: %s records/s, the 1-partition 100 B point above); one run per point", thousands(res.maxRate))}
		for _, pct := range []int{10, 50, 90} {
			rate := res.maxRate * float64(pct) / 100
			lat.points = append(lat.points, point(pointSpec{series: "latency", x: pct, args: []string{"--groups", "1", "--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--duration", "5s", "--warmup", latencyWarmup}}))
		}
		res.series = append(res.series, lat)
	}

	res.cleanup = cleanupBench(ctx, e)

	many := scaleSeries{name: "connections", xName: "producer connections at 100 records/s each", what: "1,024 producer connections each sending 100 records/s (100 B, acks=all) for 10 s (after a 1 s warm-up left out of the latency) to a 16-partition topic, " +
		"one group of 4 consumers reading; the producers are `--client raw` (one plain connection per producer, hand-built produce requests, one in flight), " +
		"because 1,024 franz-go clients in one process make the load generator, not katka, the bottleneck; one run"}
	many.points = append(many.points, point(pointSpec{series: "connections", x: 1024, members: true, args: []string{"--client", "raw", "--partitions", "16", "--producers", "1024",
		"--rate", "102400", "--duration", "10s", "--warmup", latencyWarmup, "--groups", "1", "--consumers", "4"}}))
	res.series = append(res.series, many)

	res.charts = scaleCharts(e, res)
	return res, nil
}

// latencyWarmup is how long a fixed-rate point produces before its latency
// is measured (bench produce --warmup), as OpenMessaging Benchmark discards
// a warm-up phase: in the first second the load generator's own heap and
// buffers grow, and at 435k records/s that second alone set the end-to-end
// p99 (57-96 ms in it, 6-9 ms in each later second).
const latencyWarmup = "1s"

// scaleCharts draws each series as a PNG next to the README.
func scaleCharts(e *env, res *scaleResult) []string {
	var out []string
	dir := filepath.Dir(e.out)
	for _, s := range res.series {
		if len(s.points) < 2 {
			continue
		}
		p := plot.New()
		p.Title.Text = "katka: " + s.heading()
		p.X.Label.Text = s.xName
		var lines []any
		if s.name == "latency" {
			p.Y.Label.Text = "end-to-end latency (ms, log scale)"
			for _, q := range []struct {
				name string
				v    func(scalePoint) float64
			}{{"p50", func(p scalePoint) float64 { return p.p50 }}, {"p99", func(p scalePoint) float64 { return p.p99 }}, {"p99.9", func(p scalePoint) float64 { return p.p999 }}} {
				var xy plotter.XYs
				for _, pt := range s.points {
					if v := q.v(pt); v > 0 { // a failed point is in the table, not drawn
						xy = append(xy, plotter.XY{X: float64(pt.x), Y: v})
					}
				}
				lines = append(lines, q.name, xy)
			}
		} else {
			p.Y.Label.Text = "records/s"
			p.Y.Tick.Marker = thousandsTicks{}
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.LogTicks{Prec: -1}
			prod, cons := plotter.XYs{}, plotter.XYs{}
			for _, pt := range s.points {
				if pt.produce > 0 { // a failed point is in the table, not drawn
					prod = append(prod, plotter.XY{X: float64(pt.x), Y: pt.produce})
				}
				if pt.consume > 0 {
					cons = append(cons, plotter.XY{X: float64(pt.x), Y: pt.consume})
				}
			}
			lines = append(lines, "produce", prod)
			if len(cons) > 0 {
				lines = append(lines, "consume", cons)
			}
		}
		if xy, _ := lines[1].(plotter.XYs); len(xy) == 0 {
			continue // nothing measured to draw
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			e.errors = append(e.errors, "chart "+s.name+": "+err.Error())
			continue
		}
		if s.name == "latency" {
			// Latencies span milliseconds to seconds: a log axis shows both.
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
			p.Y.Min, p.Y.Max = max(p.Y.Min/2, 0.1), p.Y.Max*3
			p.Legend.Top, p.Legend.Left = true, true
		} else {
			roomForLegend(p)
		}
		name := "scale-" + s.name + ".png"
		if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			e.errors = append(e.errors, "chart "+s.name+": "+err.Error())
			continue
		}
		out = append(out, name)
	}
	if res.cleanup != nil {
		name, err := cleanupChart(e, res.cleanup)
		if err != nil {
			e.errors = append(e.errors, "chart cleanup: "+err.Error())
		} else {
			out = append(out, name)
		}
	}
	return out
}

// roomForLegend starts the y axis at 0 and leaves its top quarter free for
// the legend.
func roomForLegend(p *plot.Plot) {
	p.Y.Min, p.Y.Max = 0, p.Y.Max*1.35
	p.Legend.Top = true
}

// thousandsTicks are gonum's default ticks labelled like the tables
// (225,000 rather than 225000.00).
type thousandsTicks struct{}

// Ticks implements plot.Ticker.
func (thousandsTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = thousands(ts[i].Value)
		}
	}
	return ts
}

// heading is the series' title, or its name.
func (s scaleSeries) heading() string {
	if s.title != "" {
		return s.title
	}
	return s.name
}

// rateRange formats a point's produce rate, with the range of its runs when
// it is the median of several.
func rateRange(pt scalePoint) string {
	if pt.runs > 1 && len(pt.prodRuns.valid()) > 1 {
		return pt.prodRuns.rate()
	}
	return thousands(pt.produce)
}

// Markers around the scale section, so that -only scale can replace it alone.
const (
	scaleBegin = "<!-- scale:begin -->\n"
	scaleEnd   = "<!-- scale:end -->\n"
)

// spliceScale puts section in place of the scale section of readme (or before
// "## Where the CPU goes" when it has none).
func spliceScale(readme, section string) string {
	if i := strings.Index(readme, scaleBegin); i >= 0 {
		if j := strings.Index(readme[i:], scaleEnd); j >= 0 {
			return readme[:i] + section + readme[i+j+len(scaleEnd):]
		}
	}
	if i := strings.Index(readme, "## Where the CPU goes"); i >= 0 {
		return readme[:i] + section + readme[i:]
	}
	return readme + "\n" + section
}

// scaleMarkdown renders the scale series for the README, between markers.
func (r *report) scaleMarkdown(e *env) string {
	var b strings.Builder
	b.WriteString(scaleBegin)
	if r.scale != nil {
		r.scaleSection(&b, e)
	}
	b.WriteString(scaleEnd)
	return b.String()
}

// scaleSection renders the scale series for the README.
func (r *report) scaleSection(b *strings.Builder, e *env) {
	s := r.scale
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Scale: throughput, latency and memory as partitions, clients and groups grow\n\n")
	p("Each point is one fresh `katka serve` (default config: `fsync: always`, 1 MiB segments; `groups.initial_rebalance_delay: 0s` where every group has one member, ")
	p("as the delay only holds the start back) and one `bin/katka bench produce --json` ")
	p("run against it (franz-go clients unless said otherwise, 100 B records unless said otherwise, acks=all) on the same machine. ")
	p("Each series says how its points are taken: the partition and cleanup series are the median of %d runs per point (the rates' range in brackets), ", e.scaleRuns)
	p("the others one run per point, so read their ratios more than their absolutes. ")
	p("RSS is katka's peak (VmHWM); CPU is katka's user+system seconds per million records produced. ")
	p("Latency is end-to-end (send to receipt by the group) where groups read, else the producer's acknowledgement latency. ")
	p("The figures below are from this run, misses included.\n\n")
	cleanupDone := s.cleanup == nil
	for _, ser := range s.series {
		if ser.name == "connections" && !cleanupDone {
			s.cleanup.section(b, chartOf(s.charts, "scale-cleanup.png"))
			cleanupDone = true
		}
		p("### %s\n\n%s.\n\n", ser.heading(), ser.what)
		if ser.name == "connections" {
			p("A 2-core machine has a ceiling for small request/response pairs even without a broker: see the loopback echo figures under \"Raw limits\" above. ")
			p("At 102,400 requests/s of one record each it is above that ceiling, so the raw client's produce requests carry several records each ")
			p("(whatever was queued while the previous request was in flight) and the latency below is mostly that queueing.\n\n")
		}
		p("| %s | produce rec/s | vs first | consume rec/s | vs first | p50 ms | p99 ms | p99.9 ms | peak RSS MB | CPU s / M records | note |\n", ser.xName)
		p("|---|---|---|---|---|---|---|---|---|---|---|\n")
		var p0, c0 float64
		for i, pt := range ser.points {
			if i == 0 {
				p0, c0 = pt.produce, pt.consume
			}
			rel := func(v, base float64) string {
				if base <= 0 || v <= 0 {
					return ""
				}
				return fmt.Sprintf("%.0f%%", 100*v/base)
			}
			cons := ""
			if pt.consume > 0 {
				cons = thousands(pt.consume)
				if pt.runs > 1 && len(pt.consRuns.valid()) > 1 {
					cons = pt.consRuns.rate()
				}
			}
			lat := ""
			if pt.e2e {
				lat = " (end-to-end)"
			}
			note := pt.err
			if pt.fail > 0 {
				note = fmt.Sprintf("%d records failed; %s", pt.fail, note)
			}
			p("| %d | %s | %s | %s | %s | %.2f%s | %.2f | %.2f | %.0f | %.1f | %s |\n", pt.x, rateRange(pt), rel(pt.produce, p0),
				cons, rel(pt.consume, c0), pt.p50, lat, pt.p99, pt.p999, pt.rssMB, pt.cpuPerM, note)
		}
		p("\n")
		if c := chartOf(s.charts, "scale-"+ser.name+".png"); c != "" {
			p("![%s](%s)\n\n", ser.heading(), c)
		}
	}
	if !cleanupDone {
		s.cleanup.section(b, chartOf(s.charts, "scale-cleanup.png"))
	}
}

// chartOf returns name if it is among the charts drawn, else "".
func chartOf(charts []string, name string) string {
	if slices.Contains(charts, name) {
		return name
	}
	return ""
}
