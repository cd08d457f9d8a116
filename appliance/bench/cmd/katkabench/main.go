// Command katkabench is `make bench`: in one run on one machine it measures
// katka beside NATS JetStream (same record sizes, same durability), katka's
// MQTT ingest beside a plain paho subscriber, the raw limits of the disk,
// tidwall/wal and loopback TCP (a stream, and request/response ping-pong), katka's
// scale curves (partitions, connections, groups, latency, retention and
// compaction underneath), and katka's footprint (binary size, idle and
// peak RSS, start-up time on a 2 GiB log); it profiles produce and fetch and
// writes everything to appliance/bench/README.md.
//
// Every figure is the median of -runs runs with its min and max; every
// comparison is a ratio of two figures from the same run, computed run by
// run, so that load from other work on the machine cancels out as far as it
// can. Only 127.0.0.1 is ever contacted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// env is the configuration of one bench run.
type env struct {
	root   string // repository root
	bin    string // build output and caches (bin/)
	katka  string // bin/katka
	nats   string // nats-server binary
	work   string // scratch directory, removed at the end
	runs   int
	n100   int64         // records per run at 100 B
	n1k    int64         // records per run at 1 KiB
	limit  time.Duration // cap on one produce run (JetStream with sync always is slow)
	out    string        // README to write
	only   map[string]bool
	errors []string // failures that did not stop the run
	// scalePartitions are the partition counts of the scale series.
	scalePartitions []int
	// scaleRuns is how many runs the partition and cleanup points are the
	// median of; scaleN100 and scaleN1k are the records per partition point.
	scaleRuns           int
	scaleN100, scaleN1k int64
}

// benchGCPercent is the GOGC this process (the load generator: kgo, nats.go
// and paho clients of the compared systems) runs with unless GOGC is set, the
// same as `katka bench`: its live heap is a few MB, so at the default 100 it
// collects every few fetches or batches, and that GC, not the server, set the
// consume rates it measured.
const benchGCPercent = 400

// benchGC sets this process's GC to benchGCPercent unless GOGC is set.
func benchGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(benchGCPercent)
	}
}

// settle collects this process's garbage before a timed client run, as Go's
// testing package does before each benchmark: the clients of one run leave
// tens of MB (at GOGC 400) that the next run's first collection would sweep
// and return to the OS on its clock; the first consume after the produces
// read 1 KiB records at 207k-227k records/s where the second read 595k-997k.
func settle() { runtime.GC() }

// sections are the parts of the bench, selectable with -only.
var sections = []string{"compare", "mqtt", "raw", "footprint", "profile", "scale"}

func main() {
	var e env
	var only string
	flag.StringVar(&e.root, "root", ".", "repository root")
	flag.IntVar(&e.runs, "runs", 5, "runs per figure (median, min, max)")
	flag.Int64Var(&e.n100, "records-100", 300_000, "records per produce/consume run at 100 B")
	flag.Int64Var(&e.n1k, "records-1k", 100_000, "records per produce/consume run at 1 KiB")
	flag.DurationVar(&e.limit, "limit", 8*time.Second, "longest produce run; slower systems send fewer records")
	flag.StringVar(&e.out, "out", "appliance/bench/README.md", "results file (relative to -root)")
	flag.StringVar(&only, "only", strings.Join(sections, ","), "sections to run: "+strings.Join(sections, ","))
	scaleParts := flag.String("scale-partitions", "1,16,256,4096", "partition counts of the scale series")
	flag.IntVar(&e.scaleRuns, "scale-runs", 3, "runs per point of the scale section's partition and cleanup series (median)")
	flag.Int64Var(&e.scaleN100, "scale-records-100", 1_000_000, "records per partition-series point at 100 B")
	flag.Int64Var(&e.scaleN1k, "scale-records-1k", 300_000, "records per partition-series point at 1 KiB")
	flag.Parse()
	benchGC()
	if e.runs < 1 || e.scaleRuns < 1 {
		fmt.Fprintln(os.Stderr, "katkabench: -runs and -scale-runs must be at least 1")
		os.Exit(2)
	}
	for _, f := range strings.Split(*scaleParts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "katkabench: -scale-partitions %q: not a partition count\n", f)
			os.Exit(2)
		}
		e.scalePartitions = append(e.scalePartitions, n)
	}
	e.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		if !slices.Contains(sections, s) {
			fmt.Fprintf(os.Stderr, "katkabench: -only %q: unknown section (allowed: %s)\n", s, strings.Join(sections, ", "))
			os.Exit(2)
		}
		e.only[s] = true
	}
	if err := run(&e); err != nil {
		fmt.Fprintln(os.Stderr, "katkabench:", err)
		os.Exit(1)
	}
}

func run(e *env) error {
	start := time.Now()
	root, err := filepath.Abs(e.root)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	e.root, e.bin = root, filepath.Join(root, "bin")
	e.katka = filepath.Join(e.bin, "katka")
	if !filepath.IsAbs(e.out) {
		e.out = filepath.Join(root, e.out)
	}
	if _, err := os.Stat(e.katka); err != nil {
		return fmt.Errorf("bin/katka missing (run make build first): %w", err)
	}
	if e.nats, err = ensureNATS(e); err != nil {
		return err
	}
	e.work, err = os.MkdirTemp("", "katkabench-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(e.work)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	rep := &report{started: start.UTC(), machine: machineFacts(e), loadBefore: loadavg()}
	if e.only["compare"] {
		if rep.cmp, err = compare(ctx, e); err != nil {
			return err
		}
	}
	if e.only["mqtt"] && ctx.Err() == nil {
		if rep.mqtt, err = mqttBench(e); err != nil {
			e.errors = append(e.errors, err.Error())
		}
	}
	if e.only["raw"] && ctx.Err() == nil {
		if rep.raw, err = rawBench(e); err != nil {
			e.errors = append(e.errors, err.Error())
		}
		rep.loopback = loopbackBench(e)
		rep.echo = echoBench(e)
	}
	if e.only["footprint"] && ctx.Err() == nil {
		if rep.foot, err = footprint(ctx, e); err != nil {
			e.errors = append(e.errors, err.Error())
		}
	}
	if e.only["profile"] && ctx.Err() == nil {
		wp, err := wireProfiles(e)
		if err != nil {
			e.errors = append(e.errors, err.Error())
		}
		bp, err := profiles(e)
		if err != nil {
			e.errors = append(e.errors, err.Error())
		}
		rep.prof = append(wp, bp...)
	}
	if e.only["scale"] && ctx.Err() == nil {
		if rep.scale, err = scaleBench(ctx, e); err != nil {
			e.errors = append(e.errors, err.Error())
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	rep.loadAfter = loadavg()
	rep.took = time.Since(start)
	rep.errors = e.errors
	text := rep.markdown(e)
	if len(e.only) == 1 && e.only["scale"] {
		// The scale series alone: replace only its section of the README.
		old, err := os.ReadFile(e.out)
		if err != nil {
			return fmt.Errorf("read %s: %w", e.out, err)
		}
		text = spliceScale(string(old), rep.scaleMarkdown(e))
	}
	if err := os.WriteFile(e.out, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", e.out, err)
	}
	fmt.Print(rep.summary(e))
	fmt.Printf("\nwrote %s in %s\n", e.out, rep.took.Round(time.Second))
	return nil
}

// logf prints a progress line.
func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
