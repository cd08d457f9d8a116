package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func init() { registerCommand(newBenchCmd) }

// benchFlags are shared by the bench subcommands.
type benchFlags struct {
	kafkaFlags
	topic      string
	partitions int32
	recordSize int
}

func (f *benchFlags) add(cmd *cobra.Command, defaultTopic string) {
	f.kafkaFlags.add(cmd)
	cmd.Flags().StringVar(&f.topic, "topic", defaultTopic, "topic to use (created if missing)")
	cmd.Flags().Int32Var(&f.partitions, "partitions", 1, "partition count if the topic is created")
	cmd.Flags().IntVar(&f.recordSize, "record-size", 100, "value size in bytes")
}

// ensureTopic creates the bench topic unless it exists.
func (f *benchFlags) ensureTopic(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	_, err := kadm.NewClient(cl).CreateTopic(ctx, f.partitions, -1, nil, f.topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", f.topic, err)
	}
	return nil
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure produce, consume and end-to-end performance over the Kafka protocol",
		// Every bench command is a load generator: it runs with GOGC 400.
		PersistentPreRun: func(*cobra.Command, []string) { benchGC() },
	}
	cmd.AddCommand(newBenchProduceCmd(), newBenchConsumeCmd(), newBenchE2ECmd())
	return cmd
}

// benchGCPercent is the GOGC the bench commands run with unless the GOGC
// environment variable says otherwise.
const benchGCPercent = 400

// benchGC sets the load generator's GC to benchGCPercent unless GOGC is set.
// Its live heap is a few MB (records in flight, the fetch being read), so at
// the default GOGC=100 it collects every few MB allocated: a consumer reading
// 1 MiB fetch responses collected every few fetches, and its GC and the
// scavenger's madvise and page faults on the freed buffers took more CPU than
// katka spent serving the fetch (bench consume of 1 KiB records ran at about
// half the rate of GOGC 400). A producer's cycles took a core's quarter and
// stalled the sender with assists, delaying sends and receipts on the clock
// the latencies are read from. Memory is no concern here; CPU and pauses are.
func benchGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(benchGCPercent)
	}
}

// latencies collects durations in microseconds and reports percentiles.
type latencies struct {
	mu sync.Mutex
	us []int64
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.us = append(l.us, d.Microseconds())
	l.mu.Unlock()
}

// summary returns avg, p50, p99, p99.9 and max in milliseconds.
func (l *latencies) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.us) == 0 {
		return "no latencies recorded"
	}
	s := slices.Clone(l.us)
	slices.Sort(s)
	var sum int64
	for _, v := range s {
		sum += v
	}
	pct := func(p float64) float64 {
		i := int(p * float64(len(s)-1))
		return float64(s[i]) / 1000
	}
	return fmt.Sprintf("latency avg %.2f ms, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms",
		float64(sum)/float64(len(s))/1000, pct(0.50), pct(0.99), pct(0.999), float64(s[len(s)-1])/1000)
}

// window is the per-second progress of one run.
type window struct {
	records, bytes atomic.Int64
	latSum, latMax atomic.Int64 // microseconds, this second
	latN           atomic.Int64
}

func (w *window) observe(n, bytes int64, lat time.Duration) {
	w.records.Add(n)
	w.bytes.Add(bytes)
	if lat > 0 {
		us := lat.Microseconds()
		w.latSum.Add(us)
		w.latN.Add(1)
		for {
			cur := w.latMax.Load()
			if us <= cur || w.latMax.CompareAndSwap(cur, us) {
				break
			}
		}
	}
}

// progress prints one line per second until stop is closed.
func progress(verb string, w *window, stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-tk.C:
			secs := now.Sub(last).Seconds()
			last = now
			n, b := w.records.Swap(0), w.bytes.Swap(0)
			line := fmt.Sprintf("%d records %s, %.1f records/s (%.2f MB/s)", n, verb, float64(n)/secs, float64(b)/secs/1e6)
			if ln := w.latN.Swap(0); ln > 0 {
				line += fmt.Sprintf(", %.2f ms avg latency, %.2f ms max latency", float64(w.latSum.Swap(0))/float64(ln)/1000, float64(w.latMax.Swap(0))/1000)
			}
			fmt.Fprintln(os.Stderr, line)
		}
	}
}

func parseCodec(s string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(s) {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--compression %q is not allowed (allowed: none, gzip, snappy, lz4, zstd)", s)
}

func newBenchConsumeCmd() *cobra.Command {
	var bf benchFlags
	var records int64
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Read a topic from the beginning and report the rate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			acl, err := bf.client()
			if err != nil {
				return err
			}
			rctx, rcancel := context.WithTimeout(ctx, bf.timeout)
			ranges, err := resolveRanges(rctx, kadm.NewClient(acl), bf.topic, -1, fromSpec{kind: "beginning"})
			rcancel()
			acl.Close()
			if err != nil {
				return err
			}
			parts := map[int32]kgo.Offset{}
			var available int64
			for p, r := range ranges {
				parts[p] = kgo.NewOffset().At(r.start)
				available += r.end - r.start
			}
			if records <= 0 || records > available {
				records = available
			}
			if records == 0 {
				return fmt.Errorf("topic %s is empty: run katka bench produce first", bf.topic)
			}
			cl, err := bf.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{bf.topic: parts}), kgo.FetchMaxBytes(50<<20))
			if err != nil {
				return err
			}
			defer cl.Close()
			var w window
			stop := make(chan struct{})
			var pw sync.WaitGroup
			pw.Add(1)
			go progress("read", &w, stop, &pw)
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			start := time.Now()
			var got, bytes, fetches int64
			for got < records {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					break
				}
				if err := fs.Err0(); err != nil {
					close(stop)
					pw.Wait()
					return fmt.Errorf("fetch: %w", err)
				}
				fetches++
				var n, b int64
				fs.EachRecord(func(r *kgo.Record) {
					n++
					b += int64(len(r.Key) + len(r.Value))
				})
				got += n
				bytes += b
				w.observe(n, b, 0)
			}
			elapsed := time.Since(start)
			close(stop)
			pw.Wait()
			fmt.Printf("%d records read, %.1f records/s (%.2f MB/s), %d polls, %.2f s\n", got, float64(got)/elapsed.Seconds(),
				float64(bytes)/elapsed.Seconds()/1e6, fetches, elapsed.Seconds())
			return nil
		},
	}
	bf.add(cmd, "bench")
	cmd.Flags().Int64Var(&records, "records", 0, "records to read (0: all that exist at start)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the consumer (this process) to this file")
	return cmd
}

// startCPUProfile writes a CPU profile of this process to path until the
// returned stop is called.
func startCPUProfile(path string) (func(), error) {
	return startRecording(path, "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startTrace writes a runtime execution trace (go tool trace) of this
// process to path until the returned stop is called.
func startTrace(path string) (func(), error) {
	return startRecording(path, "trace", trace.Start, trace.Stop)
}

// startRecording creates path and starts a recording (what) into it.
func startRecording(path, what string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return func() { stop(); f.Close() }, nil
}

func newBenchE2ECmd() *cobra.Command {
	var bf benchFlags
	var rate int64
	var duration, linger time.Duration
	var acks string
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "Produce at a fixed rate and measure the time until each record is consumed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ack, err := parseAcks(acks)
			if err != nil {
				return err
			}
			if bf.recordSize < 8 {
				return fmt.Errorf("--record-size %d: at least 8 bytes are needed for the send time", bf.recordSize)
			}
			if rate <= 0 {
				return fmt.Errorf("--rate %d must be positive", rate)
			}
			ctx, cancel := signalContext()
			defer cancel()
			popts := []kgo.Opt{kgo.DefaultProduceTopic(bf.topic), kgo.RequiredAcks(ack), kgo.ProducerLinger(linger)}
			if ack != kgo.AllISRAcks() {
				popts = append(popts, kgo.DisableIdempotentWrite())
			}
			prod, err := bf.client(popts...)
			if err != nil {
				return err
			}
			defer prod.Close()
			if err := bf.ensureTopic(ctx, prod); err != nil {
				return err
			}
			rctx, rcancel := context.WithTimeout(ctx, bf.timeout)
			ranges, err := resolveRanges(rctx, kadm.NewClient(prod), bf.topic, -1, fromSpec{kind: "end"})
			rcancel()
			if err != nil {
				return err
			}
			parts := map[int32]kgo.Offset{}
			for p, r := range ranges {
				parts[p] = kgo.NewOffset().At(r.start)
			}
			cons, err := bf.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{bf.topic: parts}), kgo.FetchMaxWait(time.Second))
			if err != nil {
				return err
			}
			defer cons.Close()

			total := int64(duration.Seconds() * float64(rate))
			lat := &latencies{us: make([]int64, 0, total)}
			var w window
			var received atomic.Int64
			cctx, ccancel := context.WithCancel(ctx)
			defer ccancel()
			consumed := make(chan error, 1)
			go func() {
				for received.Load() < total {
					fs := cons.PollFetches(cctx)
					if cctx.Err() != nil {
						consumed <- cctx.Err()
						return
					}
					if err := fs.Err0(); err != nil {
						consumed <- fmt.Errorf("fetch: %w", err)
						return
					}
					now := time.Now()
					fs.EachRecord(func(r *kgo.Record) {
						if len(r.Value) < 8 {
							return
						}
						d := now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(r.Value))))
						lat.add(d)
						w.observe(1, int64(len(r.Value)), d)
						received.Add(1)
					})
				}
				consumed <- nil
			}()

			stop := make(chan struct{})
			var pw sync.WaitGroup
			pw.Add(1)
			go progress("end-to-end", &w, stop, &pw)
			var failed atomic.Int64
			start := time.Now()
			for i := int64(0); i < total && ctx.Err() == nil; i++ {
				if due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
					time.Sleep(time.Until(due))
				}
				v := make([]byte, bf.recordSize)
				binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
				prod.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						failed.Add(1)
						fmt.Fprintln(os.Stderr, "produce:", err)
					}
				})
			}
			prod.Flush(ctx)
			var cerr error
			select {
			case cerr = <-consumed:
			case <-time.After(30 * time.Second):
				cerr = fmt.Errorf("only %d of %d records arrived within 30s", received.Load(), total)
			case <-ctx.Done():
			}
			ccancel()
			close(stop)
			pw.Wait()
			fmt.Printf("%d records end-to-end at %d records/s, %s\n", received.Load(), rate, lat.summary())
			if n := failed.Load(); n > 0 {
				return fmt.Errorf("%d records failed to produce", n)
			}
			return cerr
		},
	}
	bf.add(cmd, "bench-e2e")
	f := cmd.Flags()
	f.Int64Var(&rate, "rate", 1000, "records per second")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to produce")
	f.DurationVar(&linger, "linger", 0, "how long the producer waits to fill a batch")
	f.StringVar(&acks, "acks", "all", "acknowledgement level: all, 1 or 0")
	return cmd
}
