// Package sensors is the registry of katka's inputs, in the manner of Telegraf's
// plugins/inputs: each input lives in its own folder, registers a Factory by name in
// init(), and the sensors/all package imports every one of them. Inputs write through
// the broker's in-process API with a Writer, which picks each record's partition.
package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// Broker is the part of the broker's in-process API inputs use; *broker.Broker has it.
type Broker interface {
	// Topic describes a topic, or fails with broker.ErrUnknownTopic.
	Topic(name string) (broker.TopicInfo, error)
	// EnsureTopic returns the topic, creating it with n partitions (0: the default) if missing.
	EnsureTopic(name string, n int32) (broker.TopicInfo, error)
	// Produce appends records to one partition and returns once they are durable as acks asks.
	Produce(ctx context.Context, topic string, partition int32, recs []broker.Record, acks broker.Acks) (int64, error)
}

// BatchProducer is a Broker that can write a partition's records as few large
// record batches (up to broker.MaxWriterBatchBytes each) compressed with the
// topic's compression.type, as *broker.Broker's ProduceBatches does: the
// Writer uses it when the Broker has it, so that a zstd topic compresses a
// whole MQTT batch at once rather than 16 KiB at a time.
type BatchProducer interface {
	ProduceBatches(ctx context.Context, topic string, partition int32, recs []broker.Record, acks broker.Acks) (int64, error)
}

// Env is what a Factory gets besides the config: where to write and where to log.
type Env struct {
	// Broker receives the records.
	Broker Broker
	// Log is the logger; inputs add their own attributes.
	Log *slog.Logger
	// Partitioner, when set, returns the partitioner plugin instance of that
	// name (ok false: no such instance), for sensors.partitioner values other
	// than hash and round_robin.
	Partitioner func(name string) (fn PartitionFunc, ok bool, err error)
	// Links, when set, keeps the state of the inputs' links (an MQTT broker,
	// a Modbus device, a CAN interface) for /v1/status/links and katka_link_up;
	// inputs create their linkstate.Link with Links.New (a nil Links works).
	Links *linkstate.Registry
}

// PartitionFunc picks the partition of each of recs among n partitions of
// topic, one answer per record: a partitioner plugin behind the plugin host.
type PartitionFunc func(ctx context.Context, topic string, n int32, recs []broker.Record) ([]int32, error)

// Writer returns a Writer with the named partitioner: hash, round_robin or a
// partitioner plugin instance known to e.Partitioner.
func (e Env) Writer(partitioner string) (*Writer, error) {
	if partitioner != "" && partitioner != "hash" && partitioner != "round_robin" && e.Partitioner != nil {
		fn, ok, err := e.Partitioner(partitioner)
		if err != nil {
			return nil, fmt.Errorf("partitioner %q: %w", partitioner, err)
		}
		if ok {
			return &Writer{b: e.Broker, custom: fn}, nil
		}
	}
	return NewWriter(e.Broker, partitioner)
}

// Input is one running source of records.
type Input interface {
	// Run reads and writes records until ctx is done, then returns nil. It returns an
	// error only if it cannot run at all.
	Run(ctx context.Context) error
}

// Factory builds the inputs of one kind from the sensors config; it returns none when
// the kind is disabled and an error naming the problem when the config cannot work.
// Topics an input writes to should be ensured here, so a failure stops katka at start.
type Factory func(cfg config.Sensors, env Env) ([]Input, error)

var (
	regMu      sync.Mutex
	factories  = map[string]Factory{}
	collectors []prometheus.Collector
)

// Add registers an input kind under name; call it from the input package's init.
// Adding a name twice is a programming error and panics at start.
func Add(name string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := factories[name]; dup {
		panic("sensors: input " + name + " registered twice")
	}
	factories[name] = f
}

// Names lists the registered input kinds, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AddCollectors registers Prometheus collectors of an input package (from its init);
// Collectors returns them for the process's registry.
func AddCollectors(cs ...prometheus.Collector) {
	regMu.Lock()
	defer regMu.Unlock()
	collectors = append(collectors, cs...)
}

// Collectors returns the Prometheus collectors of every registered input, for the
// caller to register on its own registry (katka serve uses a private one).
func Collectors() []prometheus.Collector {
	regMu.Lock()
	defer regMu.Unlock()
	return slices.Clone(collectors)
}

// Named is a built input with the name of its kind.
type Named struct {
	Name string
	Input
}

// Build runs every registered Factory in name order and returns the inputs to run.
func Build(cfg config.Sensors, env Env) ([]Named, error) {
	if env.Broker == nil {
		return nil, errors.New("sensors: no broker")
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	var out []Named
	for _, name := range Names() {
		regMu.Lock()
		f := factories[name]
		regMu.Unlock()
		ins, err := f(cfg, env)
		if err != nil {
			return nil, fmt.Errorf("sensors.%s: %w", name, err)
		}
		for _, in := range ins {
			out = append(out, Named{Name: name, Input: in})
		}
	}
	return out, nil
}

// Start builds every enabled input and runs each in its own goroutine until ctx is
// done; wg tracks them so a shutdown can wait for their last writes.
func Start(ctx context.Context, wg *sync.WaitGroup, cfg config.Sensors, env Env) error {
	ins, err := Build(cfg, env)
	if err != nil {
		return err
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				env.Log.Error("input stopped", "input", in.Name, "err", err)
			}
		}()
	}
	return nil
}

// Writer writes records to topics, choosing each record's partition with the
// configured partitioner, and returns once they are durable (acks all).
type Writer struct {
	b          Broker
	roundRobin bool
	custom     PartitionFunc // a partitioner plugin, or nil
	next       atomic.Uint32
}

// NewWriter returns a Writer over b; partitioner is "hash" (murmur2 of the key as a
// Kafka Java client, round robin for records without a key) or "round_robin".
func NewWriter(b Broker, partitioner string) (*Writer, error) {
	switch partitioner {
	case "", "hash":
		return &Writer{b: b}, nil
	case "round_robin":
		return &Writer{b: b, roundRobin: true}, nil
	}
	return nil, fmt.Errorf("partitioner %q is not known (allowed: hash, round_robin, or a partitioner plugin instance)", partitioner)
}

// Partition returns the partition of a record with key among n partitions.
func (w *Writer) Partition(key []byte, n int32) int32 {
	if n <= 1 {
		return 0
	}
	if key == nil || w.roundRobin {
		return int32(w.next.Add(1) % uint32(n))
	}
	return broker.HashPartition(key, n)
}

// produce writes recs to one partition of topic, durably.
func (w *Writer) produce(ctx context.Context, topic string, p int32, recs []broker.Record) error {
	var err error
	if bp, ok := w.b.(BatchProducer); ok {
		_, err = bp.ProduceBatches(ctx, topic, p, recs, broker.AcksAll)
	} else {
		_, err = w.b.Produce(ctx, topic, p, recs, broker.AcksAll)
	}
	return err
}

// Write writes recs to topic, creating it with createPartitions partitions (0: the
// broker's default) if it is missing. Records of one partition keep their order and
// go in one write (ProduceBatches, or Produce); the partitions are written concurrently so they share fsyncs.
// On error some partitions may hold their records: a retry can duplicate them.
func (w *Writer) Write(ctx context.Context, topic string, createPartitions int32, recs []broker.Record) error {
	if len(recs) == 0 {
		return nil
	}
	info, err := w.b.Topic(topic)
	if errors.Is(err, broker.ErrUnknownTopic) {
		info, err = w.b.EnsureTopic(topic, createPartitions)
	}
	if err != nil {
		return fmt.Errorf("write to %s: %w", topic, err)
	}
	n := info.Partitions
	if n <= 1 {
		if err := w.produce(ctx, topic, 0, recs); err != nil {
			return fmt.Errorf("write to %s: %w", topic, err)
		}
		return nil
	}
	byPart := make(map[int32][]broker.Record)
	if w.custom != nil {
		parts, err := w.custom(ctx, topic, n, recs)
		if err == nil && len(parts) != len(recs) {
			err = fmt.Errorf("partitioner answered %d partitions for %d records", len(parts), len(recs))
		}
		if err != nil {
			return fmt.Errorf("write to %s: %w", topic, err)
		}
		for i, p := range parts {
			if p < 0 || p >= n {
				return fmt.Errorf("write to %s: partitioner chose partition %d of %d", topic, p, n)
			}
			byPart[p] = append(byPart[p], recs[i])
		}
	} else {
		for _, r := range recs {
			p := w.Partition(r.Key, n)
			byPart[p] = append(byPart[p], r)
		}
	}
	if len(byPart) == 1 {
		for p, rs := range byPart {
			if err := w.produce(ctx, topic, p, rs); err != nil {
				return fmt.Errorf("write to %s: %w", topic, err)
			}
		}
		return nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for p, rs := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.produce(ctx, topic, p, rs); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write to %s: %w", topic, err)
	}
	return nil
}
