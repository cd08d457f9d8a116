package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
type scalePoint struct {
	x          int     // partitions, connections or groups
	produce    float64 // records/s
	consume    float64 // records/s (0: not measured)
	p50, p99   float64 // ms: end-to-end when groups read, else produce ack latency
	p999       float64
	e2e        bool
	rssMB      float64 // katka's peak RSS
	cpuPerM    float64 // katka's CPU seconds per million records produced
	sent, fail int64
	err        string
}

// scaleSeries is one series: its points and what it varies.
type scaleSeries struct {
	name, xName, what string
	points            []scalePoint
}

// scaleResult is the scale section of the report.
type scaleResult struct {
	series  []scaleSeries
	maxRate float64 // the measured single-partition maximum the latency series is a fraction of
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

// scalePointRun starts a fresh katka, runs bench produce with args (and bench
// consume when consume is set) and measures the point.
func scalePointRun(ctx context.Context, e *env, name string, x int, consume bool, args ...string) scalePoint {
	pt := scalePoint{x: x}
	dir := filepath.Join(e.work, fmt.Sprintf("scale-%s-%d", name, x))
	k, err := startKatka(e, dir, "always")
	if err != nil {
		pt.err = err.Error()
		return pt
	}
	defer func() {
		k.stop()
		os.RemoveAll(dir)
	}()
	cpu0 := cpuSeconds(k.pid())
	all := append([]string{"bench", "produce", "--brokers", k.kafka, "--topic", "scale", "--json", "--quiet", "--timeout", "3m"}, args...)
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
	if consume {
		cout, cerr := exec.CommandContext(cctx, e.katka, "bench", "consume", "--brokers", k.kafka, "--topic", "scale").Output()
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
	logf("scale %s=%d: produce %.0f rec/s, consume %.0f rec/s, p99 %.2f ms, peak RSS %.0f MB %s", name, x, pt.produce, pt.consume, pt.p99, pt.rssMB, pt.err)
	return pt
}

// scaleBench runs the scale series: partitions, producer connections,
// consumer groups and latency at fractions of the maximum rate.
func scaleBench(ctx context.Context, e *env) (*scaleResult, error) {
	res := &scaleResult{}
	n := strconv.FormatInt(e.n100, 10)
	parts := scaleSeries{name: "partitions", xName: "partitions", what: "aggregate produce (then consume) of " + n + " records of 100 B, one producer, acks=all"}
	for _, p := range e.scalePartitions {
		parts.points = append(parts.points, scalePointRun(ctx, e, "partitions", p, true, "--partitions", strconv.Itoa(p), "--records", n))
	}
	res.series = append(res.series, parts)

	conns := scaleSeries{name: "producers", xName: "producer connections", what: "aggregate produce of " + n + " records of 100 B over 16 partitions, acks=all"}
	for _, c := range []int{1, 16, 256, 1024} {
		conns.points = append(conns.points, scalePointRun(ctx, e, "producers", c, false, "--partitions", "16", "--producers", strconv.Itoa(c),
			"--records", n, "--max-buffered", "10000"))
	}
	res.series = append(res.series, conns)

	groups := scaleSeries{name: "groups", xName: "consumer groups", what: "groups reading one 16-partition topic while " + n + " records of 100 B are produced; consume = records received by all groups per second"}
	for _, g := range []int{1, 8, 64} {
		groups.points = append(groups.points, scalePointRun(ctx, e, "groups", g, false, "--partitions", "16", "--groups", strconv.Itoa(g), "--records", n))
	}
	res.series = append(res.series, groups)

	if len(parts.points) > 0 && parts.points[0].produce > 0 {
		res.maxRate = parts.points[0].produce
		lat := scaleSeries{name: "latency", xName: "% of the maximum rate", what: fmt.Sprintf("end-to-end latency, one partition, one producer, one group, 100 B, for 5 s at a fixed rate (maximum: %.0f records/s, the 1-partition point above)", res.maxRate)}
		for _, pct := range []int{10, 50, 90} {
			rate := res.maxRate * float64(pct) / 100
			lat.points = append(lat.points, scalePointRun(ctx, e, "latency", pct, false, "--groups", "1", "--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--duration", "5s"))
		}
		res.series = append(res.series, lat)
	}

	many := scaleSeries{name: "connections", xName: "producer connections at 100 records/s each", what: "1,024 producer connections each sending 100 records/s (100 B, acks=all) for 10 s to a 16-partition topic, one group reading"}
	many.points = append(many.points, scalePointRun(ctx, e, "connections", 1024, false, "--partitions", "16", "--producers", "1024",
		"--rate", "102400", "--duration", "10s", "--groups", "1", "--max-buffered", "1000"))
	res.series = append(res.series, many)

	res.charts = scaleCharts(e, res)
	return res, nil
}

// scaleCharts draws each series as a PNG next to the README.
func scaleCharts(e *env, res *scaleResult) []string {
	var out []string
	dir := filepath.Dir(e.out)
	for _, s := range res.series {
		if len(s.points) < 2 {
			continue
		}
		p := plot.New()
		p.Title.Text = "katka: " + s.name
		p.X.Label.Text = s.xName
		var lines []any
		if s.name == "latency" {
			p.Y.Label.Text = "end-to-end latency (ms)"
			for _, q := range []struct {
				name string
				v    func(scalePoint) float64
			}{{"p50", func(p scalePoint) float64 { return p.p50 }}, {"p99", func(p scalePoint) float64 { return p.p99 }}, {"p99.9", func(p scalePoint) float64 { return p.p999 }}} {
				xy := make(plotter.XYs, len(s.points))
				for i, pt := range s.points {
					xy[i].X, xy[i].Y = float64(pt.x), q.v(pt)
				}
				lines = append(lines, q.name, xy)
			}
		} else {
			p.Y.Label.Text = "records/s"
			if s.name != "latency" {
				p.X.Scale = plot.LogScale{}
				p.X.Tick.Marker = plot.LogTicks{Prec: -1}
			}
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
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			e.errors = append(e.errors, "chart "+s.name+": "+err.Error())
			continue
		}
		name := "scale-" + s.name + ".png"
		if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			e.errors = append(e.errors, "chart "+s.name+": "+err.Error())
			continue
		}
		out = append(out, name)
	}
	return out
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
	p("Each point is one fresh `katka serve` (default config: `fsync: always`, 1 MiB segments) and one `bin/katka bench produce --json` ")
	p("run against it (franz-go clients, 100 B records, acks=all) on the same machine; one run per point, so read ratios, not absolutes. ")
	p("RSS is katka's peak (VmHWM); CPU is katka's user+system seconds per million records produced. ")
	p("Latency is end-to-end (send to receipt by the group) where groups read, else the producer's acknowledgement latency. ")
	p("The figures below are from this run, misses included.\n\n")
	for _, ser := range s.series {
		p("### %s\n\n%s.\n\n", ser.name, ser.what)
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
			}
			lat := ""
			if pt.e2e {
				lat = " (end-to-end)"
			}
			note := pt.err
			if pt.fail > 0 {
				note = fmt.Sprintf("%d records failed; %s", pt.fail, note)
			}
			p("| %d | %s | %s | %s | %s | %.2f%s | %.2f | %.2f | %.0f | %.1f | %s |\n", pt.x, thousands(pt.produce), rel(pt.produce, p0),
				cons, rel(pt.consume, c0), pt.p50, lat, pt.p99, pt.p999, pt.rssMB, pt.cpuPerM, note)
		}
		p("\n")
		for _, c := range s.charts {
			if c == "scale-"+ser.name+".png" {
				p("![%s](%s)\n\n", ser.name, c)
			}
		}
	}
}
