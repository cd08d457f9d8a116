package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaDefaultMaxMessageBytes is Kafka's default message.max.bytes, the
// batch limit used when a broker does not tell its topic's max.message.bytes.
const kafkaDefaultMaxMessageBytes = 1_000_012

// loadSpec is what one `katka bench produce` run generates: the shape of the
// load (topics, partitions, producer and consumer clients, keys) and its pace.
type loadSpec struct {
	topic       string
	topics      int
	partitions  int32
	replication int16
	recordSize  int
	records     int64
	duration    time.Duration
	rate        float64
	producers   int
	groups      int
	consumers   int
	acks        string
	compression string
	linger      time.Duration
	warmup      time.Duration
	maxBuffered int
	maxRequest  int32
	keys        int64
	keyDist     string
	topicConfig []string
	jsonOut     bool
	quiet       bool
	client      string
}

// topicNames returns the topics the load writes: --topic itself, or with
// --topics N > 1 the names <topic>-0 .. <topic>-(N-1).
func (s *loadSpec) topicNames() []string {
	if s.topics <= 1 {
		return []string{s.topic}
	}
	out := make([]string, s.topics)
	for i := range out {
		out[i] = s.topic + "-" + strconv.Itoa(i)
	}
	return out
}

// validate checks the flags before any connection is made.
func (s *loadSpec) validate() error {
	switch {
	case s.topics < 1:
		return fmt.Errorf("--topics %d must be at least 1", s.topics)
	case s.producers < 1:
		return fmt.Errorf("--producers %d must be at least 1", s.producers)
	case s.groups < 0 || s.consumers < 0:
		return fmt.Errorf("--groups %d and --consumers %d must not be negative", s.groups, s.consumers)
	case s.rate < 0:
		return fmt.Errorf("--rate %g must not be negative", s.rate)
	case s.records <= 0 && s.duration <= 0:
		return errors.New("give --records or --duration")
	case s.replication == 0 || s.replication < -1:
		return fmt.Errorf("--replication-factor %d must be -1 (the cluster's default) or at least 1", s.replication)
	case s.keys < 0:
		return fmt.Errorf("--keys %d must not be negative", s.keys)
	}
	if s.groups > 0 && s.recordSize < 16 {
		return fmt.Errorf("--record-size %d: end-to-end latency needs at least 16 bytes (send time and run id)", s.recordSize)
	}
	switch s.keyDist {
	case "none", "uniform", "zipf", "sequential":
	default:
		return fmt.Errorf("--key-distribution %q is not allowed (allowed: none, uniform, zipf, sequential)", s.keyDist)
	}
	switch s.client {
	case "", "franz-go":
	case "raw":
		if s.keyDist != "none" || s.compression != "none" {
			return errors.New("--client raw sends uncompressed records without keys: drop --key-distribution and --compression")
		}
	default:
		return fmt.Errorf("--client %q is not allowed (allowed: franz-go, raw)", s.client)
	}
	if s.keyDist != "none" && s.keys == 0 {
		s.keys = 1000
	}
	return nil
}

// histogram records durations in microseconds in log-linear buckets (64 per
// power of two, so a percentile is within 1.6%), lock-free, in constant
// memory whatever the number of samples.
type histogram struct {
	counts [64 * 48]atomic.Int64
	n, sum atomic.Int64
	max    atomic.Int64
}

func histBucket(us int64) int {
	if us < 64 {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 7
	return e*64 + int(us>>e)
}

func histValue(b int) int64 {
	if b < 64 {
		return int64(b)
	}
	e := b/64 - 1
	return int64(b%64+64) << e
}

func (h *histogram) add(d time.Duration) {
	us := d.Microseconds()
	h.counts[min(histBucket(us), len(h.counts)-1)].Add(1)
	h.n.Add(1)
	h.sum.Add(us)
	for {
		cur := h.max.Load()
		if us <= cur || h.max.CompareAndSwap(cur, us) {
			break
		}
	}
}

// quantile returns the q-quantile in milliseconds.
func (h *histogram) quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			return float64(min(histValue(b), h.max.Load())) / 1000
		}
	}
	return float64(h.max.Load()) / 1000
}

// latencySummary is a histogram's figures in milliseconds (JSON output).
type latencySummary struct {
	Count int64   `json:"count"`
	Avg   float64 `json:"avg_ms"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *histogram) summary() latencySummary {
	n := h.n.Load()
	if n == 0 {
		return latencySummary{}
	}
	return latencySummary{Count: n, Avg: float64(h.sum.Load()) / float64(n) / 1000, P50: h.quantile(0.50),
		P99: h.quantile(0.99), P999: h.quantile(0.999), Max: float64(h.max.Load()) / 1000}
}

func (s latencySummary) String() string {
	return fmt.Sprintf("avg %.2f ms, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", s.Avg, s.P50, s.P99, s.P999, s.Max)
}

// loadResult is the JSON output of a run (--json).
type loadResult struct {
	Topics         []string        `json:"topics"`
	Partitions     int32           `json:"partitions_per_topic"`
	Producers      int             `json:"producers"`
	Groups         int             `json:"groups"`
	Consumers      int             `json:"consumers_per_group"`
	RecordSize     int             `json:"record_size"`
	Client         string          `json:"client"`
	Acks           string          `json:"acks"`
	Compression    string          `json:"compression"`
	KeyDist        string          `json:"key_distribution"`
	Keys           int64           `json:"keys,omitempty"`
	TargetRate     float64         `json:"target_rate,omitempty"`
	WarmupSeconds  float64         `json:"warmup_seconds,omitempty"`
	BatchMaxBytes  int32           `json:"batch_max_bytes"`
	Sent           int64           `json:"records_sent"`
	Failed         int64           `json:"records_failed"`
	Seconds        float64         `json:"seconds"`
	RecordsPerSec  float64         `json:"records_per_sec"`
	MBPerSec       float64         `json:"mb_per_sec"`
	ProduceLatency latencySummary  `json:"produce_latency"`
	E2ELatency     *latencySummary `json:"end_to_end_latency,omitempty"`
	Consumed       int64           `json:"records_consumed,omitempty"`
	ConsumePerSec  float64         `json:"consume_records_per_sec,omitempty"`
	Error          string          `json:"error,omitempty"`
}

func newBenchProduceCmd() *cobra.Command {
	var kf kafkaFlags
	var s loadSpec
	var throughput int64
	var cpuProfile, tracePath string
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Generate load: produce fixed-size records (optionally at a fixed rate, over many topics, partitions and clients, with consumer groups reading along) and report rates and latencies",
		Long: `Generate load against any Kafka broker and report throughput and latency.

Records are spread over --topics topics of --partitions partitions each, sent by
--producers client connections; --rate paces the total (records/s), otherwise
they go as fast as the producers can. With --groups G, G consumer groups of
--consumers members each read the topics while they are written, and the time
from send to receipt (end-to-end latency) is reported. The batch limit is read
from the broker (the topic's max.message.bytes), so it works against a broker
with Kafka's default message.max.bytes of 1,000,012 bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if throughput > 0 && s.rate == 0 {
				s.rate = float64(throughput)
			}
			if err := s.validate(); err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			if tracePath != "" {
				stopTrace, err := startTrace(tracePath)
				if err != nil {
					return err
				}
				defer stopTrace()
			}
			res, err := runLoad(ctx, &kf, &s)
			if s.jsonOut {
				if err != nil {
					res.Error = err.Error()
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if eerr := enc.Encode(res); eerr != nil {
					return eerr
				}
			} else if res.Sent > 0 || res.Failed > 0 {
				fmt.Printf("%d records sent, %.1f records/s (%.2f MB/s), latency %s\n", res.Sent, res.RecordsPerSec, res.MBPerSec, res.ProduceLatency)
				if res.E2ELatency != nil {
					fmt.Printf("%d records consumed by %d group(s), %.1f records/s, end-to-end latency %s\n", res.Consumed, res.Groups, res.ConsumePerSec, *res.E2ELatency)
				}
			}
			return err
		},
	}
	kf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&s.topic, "topic", "bench", "topic to use (created if missing); with --topics N, the prefix of N topics")
	f.IntVar(&s.topics, "topics", 1, "number of topics (named <topic>-0 .. <topic>-N-1 when more than one)")
	f.Int32Var(&s.partitions, "partitions", 1, "partitions per topic if a topic is created")
	f.Int16Var(&s.replication, "replication-factor", -1, "replicas per partition if a topic is created (-1: the cluster's topics.default_replication_factor)")
	f.IntVar(&s.recordSize, "record-size", 100, "value size in bytes")
	f.Int64Var(&s.records, "records", 1_000_000, "records to produce in all (0 with --duration: until the duration is over)")
	f.DurationVar(&s.duration, "duration", 0, "produce for this long (with --rate: rate x duration records)")
	f.DurationVar(&s.warmup, "warmup", 0, "produce for this long first (at --rate, before --duration), leaving those records out of the latency figures, as OpenMessaging Benchmark discards its warm-up phase")
	f.Float64Var(&s.rate, "rate", 0, "fixed total rate in records/s, split over the producers (0: as fast as possible)")
	f.Int64Var(&throughput, "throughput", -1, "old name of --rate")
	_ = f.MarkHidden("throughput")
	f.IntVar(&s.producers, "producers", 1, "producer clients (each its own connections)")
	f.IntVar(&s.groups, "groups", 0, "consumer groups reading the topics while they are written (end-to-end latency)")
	f.IntVar(&s.consumers, "consumers", 1, "members per consumer group")
	f.StringVar(&s.acks, "acks", "all", "acknowledgement level: all, 1 or 0")
	f.StringVar(&s.compression, "compression", "none", "codec: none, gzip, snappy, lz4, zstd")
	f.DurationVar(&s.linger, "linger", 0, "how long the producer waits to fill a batch")
	f.IntVar(&s.maxBuffered, "max-buffered", 100_000, "records each producer may buffer before it blocks")
	f.Int32Var(&s.maxRequest, "max-request-bytes", 4<<20, "largest produce request a producer sends (at least one batch; franz-go's own default is 104857600)")
	f.Int64Var(&s.keys, "keys", 0, "distinct keys (with --key-distribution; default 1000 then)")
	f.StringVar(&s.keyDist, "key-distribution", "none", "record keys: none (null keys, the client's sticky partitioner), uniform, zipf (s=1.1) or sequential over --keys keys")
	f.StringArrayVar(&s.topicConfig, "topic-config", nil, "config key=value for topics the bench creates, repeatable (e.g. max.message.bytes=1000012)")
	f.BoolVar(&s.jsonOut, "json", false, "print the result as JSON on stdout (progress stays on stderr)")
	f.BoolVar(&s.quiet, "quiet", false, "no progress line")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the load generator) to this file")
	f.StringVar(&tracePath, "trace", "", "write a runtime execution trace of this process (the load generator) to this file, for go tool trace")
	f.StringVar(&s.client, "client", "franz-go", "producer client: franz-go (a kgo client per producer, idempotent with acks=all) or raw (one plaintext connection per producer writing one partition with hand-built produce requests, one in flight: light enough that a thousand connections load the broker, not this process)")
	return cmd
}

// prepareTopics creates the topics that are missing and returns the smallest
// max.message.bytes among them (the largest batch every topic takes).
func prepareTopics(ctx context.Context, kf *kafkaFlags, s *loadSpec) (int32, error) {
	cl, err := kf.client()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cfg, _, err := parseKV("topic-config", s.topicConfig)
	if err != nil {
		return 0, err
	}
	var configs map[string]*string
	if len(cfg) > 0 {
		configs = map[string]*string{}
		for k, v := range cfg {
			configs[k] = kadm.StringPtr(v)
		}
	}
	names := s.topicNames()
	cctx, cancel := context.WithTimeout(ctx, kf.timeout)
	defer cancel()
	resp, err := adm.CreateTopics(cctx, s.partitions, s.replication, configs, names...)
	if err != nil {
		return 0, fmt.Errorf("create topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	limit := int32(kafkaDefaultMaxMessageBytes)
	rcs, err := adm.DescribeTopicConfigs(cctx, names...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "describe topic configs: %v; batches are kept to Kafka's default %d bytes\n", err, limit)
		return limit, nil
	}
	found := false
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if v, err := strconv.ParseInt(*c.Value, 10, 32); err == nil && v > 0 {
				if !found || int32(v) < limit {
					limit = int32(v)
				}
				found = true
			}
		}
	}
	return limit, nil
}

// runLoad runs the load s describes and returns its figures.
func runLoad(ctx context.Context, kf *kafkaFlags, s *loadSpec) (loadResult, error) {
	res := loadResult{Topics: s.topicNames(), Partitions: s.partitions, Producers: s.producers, Groups: s.groups, Client: s.client,
		Consumers: s.consumers, RecordSize: s.recordSize, Acks: s.acks, Compression: s.compression, KeyDist: s.keyDist,
		Keys: s.keys, TargetRate: s.rate, WarmupSeconds: s.warmup.Seconds()}
	if s.groups == 0 {
		res.Consumers = 0
	}
	ack, err := parseAcks(s.acks)
	if err != nil {
		return res, err
	}
	codec, err := parseCodec(s.compression)
	if err != nil {
		return res, err
	}
	batchMax, err := prepareTopics(ctx, kf, s)
	if err != nil {
		return res, err
	}
	res.BatchMaxBytes = batchMax
	names := s.topicNames()

	var t produceTally
	t.measureFrom.Store(math.MaxInt64) // until the producers start: nothing sent yet is measured

	// Consumers first, each group waiting for its assignment, so that the
	// end-to-end latency measures the steady state, not a group joining.
	var e2e histogram
	var consumed atomic.Int64
	var cwg sync.WaitGroup
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	// Records carry their send time (bytes 0-7) and this run's id (8-15):
	// the groups read the topics from their start and count only this run's.
	runNum := uint64(time.Now().UnixNano())
	runID := strconv.FormatUint(runNum, 36)
	if s.groups > 0 {
		total := int(s.partitions) * len(names)
		slabs := &recordSlabs{}
		var readies []chan struct{}
		for g := 0; g < s.groups; g++ {
			var assigned atomic.Int64
			ready := make(chan struct{})
			var once sync.Once
			group := fmt.Sprintf("katka-bench-%s-%d", runID, g)
			for c := 0; c < max(1, s.consumers); c++ {
				cl, err := kf.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics(names...),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond), kgo.WithPools(slabs),
					kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
						n := 0
						for _, ps := range m {
							n += len(ps)
						}
						if assigned.Add(int64(n)) >= int64(total) {
							once.Do(func() { close(ready) })
						}
					}),
					kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
						n := 0
						for _, ps := range m {
							n += len(ps)
						}
						assigned.Add(-int64(n))
					}))
				if err != nil {
					return res, err
				}
				defer cl.Close()
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					for {
						fs := cl.PollFetches(cctx)
						if cctx.Err() != nil {
							return
						}
						now := time.Now().UnixNano()
						var n int64
						fs.EachRecord(func(r *kgo.Record) {
							if len(r.Value) >= 16 && binary.BigEndian.Uint64(r.Value[8:]) == runNum {
								if sent := int64(binary.BigEndian.Uint64(r.Value)); t.measured(sent) {
									e2e.add(time.Duration(now - sent))
								}
								n++
							}
							r.Recycle()
						})
						consumed.Add(n)
					}
				}()
			}
			readies = append(readies, ready)
		}
		// The groups join at once (a join may wait for the broker's initial
		// rebalance delay), then each must have every partition assigned.
		timeout := time.After(kf.timeout)
		for g, ready := range readies {
			select {
			case <-ready:
			case <-timeout:
				return res, fmt.Errorf("consumer group %d of %d: not all %d partitions assigned within %s", g, s.groups, total, kf.timeout)
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
	}

	stop := make(chan struct{})
	var pw sync.WaitGroup
	if !s.quiet {
		pw.Add(1)
		go progress("sent", &t.w, stop, &pw)
	}
	var deadline time.Time
	records := s.records
	if s.duration > 0 {
		if s.rate > 0 {
			records = int64(s.rate * (s.duration + s.warmup).Seconds())
		} else {
			deadline = time.Now().Add(s.duration + s.warmup)
			if s.records == 0 {
				records = math.MaxInt64
			}
		}
	}
	var start time.Time
	if s.client == "raw" {
		start, err = runRawProducers(ctx, kf, s, names, rawAcks(ack), records, deadline, runNum, &t)
	} else {
		start, err = runKgoProducers(ctx, kf, s, names, ack, codec, batchMax, records, deadline, runNum, &t)
	}
	if err != nil {
		close(stop)
		pw.Wait()
		return res, err
	}
	elapsed := time.Since(start)
	ok := t.sent.Load() - t.failed.Load()
	res.Sent, res.Failed = ok, t.failed.Load()
	res.Seconds = elapsed.Seconds()
	res.RecordsPerSec = float64(ok) / elapsed.Seconds()
	res.MBPerSec = float64(ok) * float64(s.recordSize) / elapsed.Seconds() / 1e6
	res.ProduceLatency = t.lat.summary()

	var cerr error
	if s.groups > 0 {
		// Every group must receive every record sent before the end counts.
		want := ok * int64(s.groups)
		wait := time.NewTimer(30 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
	waiting:
		for consumed.Load() < want {
			select {
			case <-tick.C:
			case <-wait.C:
				cerr = fmt.Errorf("consumers received %d of %d records within 30 s of the last send", consumed.Load(), want)
				break waiting
			case <-ctx.Done():
				break waiting
			}
		}
		tick.Stop()
		cdone := time.Since(start)
		res.Consumed = consumed.Load()
		res.ConsumePerSec = float64(res.Consumed) / cdone.Seconds()
		sum := e2e.summary()
		res.E2ELatency = &sum
	}
	ccancel()
	cwg.Wait()
	close(stop)
	pw.Wait()
	if n := t.failed.Load(); n > 0 || t.firstErr != nil {
		return res, fmt.Errorf("%d records failed: %v", n, t.firstErr)
	}
	return res, cerr
}

// rawAcks is the produce request's acks field for a client's acks level.
func rawAcks(a kgo.Acks) int16 {
	switch a {
	case kgo.NoAck():
		return 0
	case kgo.LeaderAck():
		return 1
	}
	return -1
}

// runKgoProducers is --client franz-go: s.producers kgo clients, each sending
// its share of records (paced by --rate) and counting in t. It returns when
// every record is acknowledged or failed; start is when sending began.
func runKgoProducers(ctx context.Context, kf *kafkaFlags, s *loadSpec, names []string, ack kgo.Acks, codec kgo.CompressionCodec,
	batchMax int32, records int64, deadline time.Time, runNum uint64, t *produceTally) (time.Time, error) {
	popts := []kgo.Opt{kgo.RequiredAcks(ack), kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(s.linger),
		kgo.MaxBufferedRecords(s.maxBuffered), kgo.ProducerBatchMaxBytes(batchMax)}
	if ack != kgo.AllISRAcks() {
		popts = append(popts, kgo.DisableIdempotentWrite())
	}
	// A produce request carries at most maxRequest bytes (and always one
	// whole batch). kgo's default is 100 MiB, which lets one request take
	// every partition's buffered batch: with 256 partitions of 1 KiB records
	// the load generator built requests of tens of MB by copying, and its own
	// CPU and page faults (670 MB RSS) set the rate, not the broker's. Kafka's
	// Java producer caps a request at max.request.size, 1 MiB by default.
	popts = append(popts, kgo.BrokerMaxWriteBytes(max(s.maxRequest, batchMax+64<<10)))
	producers := make([]*kgo.Client, s.producers)
	for i := range producers {
		cl, err := kf.client(popts...)
		if err != nil {
			return time.Time{}, err
		}
		defer cl.Close()
		producers[i] = cl
	}
	pool, err := newPayloadPool()
	if err != nil {
		return time.Time{}, err
	}
	// Each producer first sends one record of its share and waits for its
	// acknowledgement (a warm-up, as OpenMessaging's benchmark runs one):
	// connecting, metadata and the idempotent producer id would otherwise
	// count as the first records' latency. The timed run starts once all
	// have been acknowledged.
	var start time.Time
	begin := make(chan struct{})
	var warm, prodWG sync.WaitGroup
	for i, cl := range producers {
		share := shareOf(records, len(producers), i)
		rate := s.rate / float64(len(producers))
		warm.Add(1)
		prodWG.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			var zipf *mrand.Zipf
			if s.keyDist == "zipf" {
				zipf = mrand.NewZipf(rng, 1.1, 1, uint64(s.keys-1))
			}
			// Records and their values come in slabs of slabRecords: two
			// allocations per slab instead of two per record (a slab is
			// collected once kgo has let go of all its records).
			var slab []kgo.Record
			var vals []byte
			record := func(n int64) *kgo.Record {
				if len(slab) == 0 {
					slab = make([]kgo.Record, slabRecords)
					vals = make([]byte, slabRecords*s.recordSize)
				}
				r := &slab[0]
				slab = slab[1:]
				v := vals[:s.recordSize:s.recordSize]
				vals = vals[s.recordSize:]
				pool.fill(v, n)
				if s.recordSize >= 16 {
					binary.BigEndian.PutUint64(v[8:], runNum)
				}
				r.Topic, r.Value = names[int(n)%len(names)], v
				switch s.keyDist {
				case "uniform":
					r.Key = strconv.AppendInt(nil, rng.Int64N(s.keys), 10)
				case "zipf":
					r.Key = strconv.AppendUint(nil, zipf.Uint64(), 10)
				case "sequential":
					r.Key = strconv.AppendInt(nil, (int64(i)*share+n)%s.keys, 10)
				}
				return r
			}
			var inflight sync.WaitGroup
			// One promise for all records: a record's send time is its
			// Timestamp (set from the same clock reading as the send time in
			// its value), so no closure is allocated per record.
			promise := func(r *kgo.Record, err error) {
				defer inflight.Done()
				if err != nil {
					t.fail(1, err)
					return
				}
				d := time.Since(r.Timestamp)
				if t.measured(r.Timestamp.UnixNano()) {
					t.lat.add(d)
				}
				t.w.observe(1, int64(len(r.Value)+len(r.Key)), d)
			}
			// send stamps r with t0, read just before Produce (which would
			// otherwise read the clock again for the timestamp).
			send := func(r *kgo.Record, t0 time.Time) {
				r.Timestamp = t0
				if s.recordSize >= 8 {
					binary.BigEndian.PutUint64(r.Value, uint64(t0.UnixNano()))
				}
				inflight.Add(1)
				t.sent.Add(1)
				cl.Produce(ctx, r, promise)
			}
			n := int64(0)
			if share > 0 {
				send(record(0), time.Now())
				inflight.Wait()
				n = 1
			}
			warm.Done()
			<-begin
			for ; n < share && ctx.Err() == nil; n++ {
				r := record(n)
				t0 := time.Now()
				if !deadline.IsZero() && t0.After(deadline) {
					break
				}
				if rate > 0 {
					// Spread the producers' sends over the interval, so that they
					// do not all send at the same instant. Sleep only when a
					// whole pacing step ahead (as Kafka's ThroughputThrottler
					// does): a sleep per record at hundreds of thousands of
					// records/s costs more CPU than producing them.
					due := start.Add(time.Duration((float64(n-1) + float64(i)/float64(len(producers))) / rate * float64(time.Second)))
					if d := due.Sub(t0); d >= pacingStep {
						time.Sleep(d)
						t0 = time.Now()
					}
				}
				send(r, t0)
			}
			inflight.Wait()
		})
	}
	warm.Wait()
	start = time.Now()
	t.measureFrom.Store(start.Add(s.warmup).UnixNano())
	close(begin)
	prodWG.Wait()
	return start, nil
}

// pacingStep is how far ahead of its schedule a fixed-rate producer must be
// before it sleeps; below it, records go out at once.
const pacingStep = time.Millisecond

// payloadPool is one block of random bytes that record values are copied out
// of at varying offsets: values stay incompressible without the cost of
// reading the system's random source for every record (Kafka's
// producer-perf-test likewise reuses one random payload).
type payloadPool struct{ buf []byte }

// newPayloadPool fills a 1 MiB pool from crypto/rand.
func newPayloadPool() (*payloadPool, error) {
	p := &payloadPool{buf: make([]byte, 1<<20)}
	if _, err := rand.Read(p.buf); err != nil {
		return nil, fmt.Errorf("random payload: %w", err)
	}
	return p, nil
}

// fill fills v with the bytes of record n.
func (p *payloadPool) fill(v []byte, n int64) {
	size := len(v)
	if size >= len(p.buf) {
		for i := 0; i < size; i += copy(v[i:], p.buf) {
		}
		return
	}
	off := int((uint64(n) * 7919) % uint64(len(p.buf)-size))
	copy(v, p.buf[off:off+size])
}

// slabRecords is how many records (and values) a producer allocates at once.
const slabRecords = 1024

// recordSlabs is a kgo.PoolRecords: the consumers decode fetched records
// into recycled slices (each record is recycled once counted) instead of a
// new slice per fetched batch, 250 B of garbage per record consumed.
type recordSlabs struct{ p sync.Pool }

// GetRecords implements kgo.PoolRecords.
func (s *recordSlabs) GetRecords(n int) []kgo.Record {
	if v, _ := s.p.Get().(*[]kgo.Record); v != nil && cap(*v) >= n {
		return (*v)[:0]
	}
	return make([]kgo.Record, 0, n)
}

// PutRecords implements kgo.PoolRecords.
func (s *recordSlabs) PutRecords(r []kgo.Record) {
	box := new([]kgo.Record)
	*box = r
	s.p.Put(box)
}
