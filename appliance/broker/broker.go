// Package broker holds topics and partitions and exposes the in-process Produce
// and Fetch API that the Kafka protocol layer, sensors, sync and plugins all use.
// Nothing else reaches into storage.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/katka-io/katka/appliance/storage"
)

// Record is one record; Offset is set on records returned by Fetch.
type Record = storage.Record

// ProducerBatch is the idempotent-producer identity kept on the last record of
// a producer's batch (see storage.ProducerBatch).
type ProducerBatch = storage.ProducerBatch

// Header is one record header.
type Header = storage.Header

// Acks says how durable a produce must be before it returns, as in Kafka.
type Acks int8

// Acknowledgement levels. On one node AcksLeader and AcksAll are the same: the
// produce returns once the records are fsynced (or written, with fsync: interval).
const (
	AcksNone   Acks = 0
	AcksLeader Acks = 1
	AcksAll    Acks = -1
)

// FsyncMode chooses when data reaches the disk.
type FsyncMode string

// Fsync modes: always acknowledges only fsynced data (group commit); interval
// acknowledges written data and fsyncs every FsyncInterval, so a power cut can lose
// up to that much acknowledged data.
const (
	FsyncAlways   FsyncMode = "always"
	FsyncInterval FsyncMode = "interval"
)

// Errors returned by the broker; the Kafka layer maps them to error codes.
var (
	ErrUnknownTopic      = errors.New("unknown topic")
	ErrUnknownPartition  = errors.New("unknown partition")
	ErrTopicExists       = errors.New("topic already exists")
	ErrInvalidTopic      = errors.New("invalid topic name")
	ErrInvalidPartitions = errors.New("invalid partition count")
	ErrOffsetOutOfRange  = errors.New("offset out of range")
	ErrCorrupt           = storage.ErrCorrupt
	ErrRecordTooLarge    = errors.New("record larger than the topic's max.message.bytes")
	ErrClosed            = errors.New("broker closed")
	// ErrPartitionLimit refuses a create that would pass the broker's
	// partition cap (Options.MaxPartitions, topics.max_partitions); the Kafka
	// layer answers it with POLICY_VIOLATION.
	ErrPartitionLimit = errors.New("partition limit of the broker reached")
)

// MaxTopicPartitions is the largest partition count of one topic, the same
// bound as config.MaxPartitions; a larger count is ErrInvalidPartitions
// (Kafka's INVALID_PARTITIONS).
const MaxTopicPartitions = 10000

// DefaultMaxPartitions is Options.MaxPartitions' default: the partitions of
// all topics together (topics.max_partitions).
const DefaultMaxPartitions = 4096

// TopicConfig holds the per-topic settings; zero values mean "use the default".
type TopicConfig struct {
	// RetentionMs is retention.ms; -1 keeps data forever.
	RetentionMs int64 `json:"retention_ms"`
	// RetentionBytes is retention.bytes per partition; -1 is unlimited.
	RetentionBytes int64 `json:"retention_bytes"`
	// MaxMessageBytes is max.message.bytes (the largest record batch accepted).
	MaxMessageBytes int64 `json:"max_message_bytes,omitempty"`
	// TimestampType is message.timestamp.type: CreateTime or LogAppendTime.
	TimestampType string `json:"timestamp_type,omitempty"`
	// CleanupPolicy is cleanup.policy: delete, compact, or "compact,delete".
	CleanupPolicy string `json:"cleanup_policy,omitempty"`
	// OnFull is what a produce does when the disk is full: reject or drop_oldest.
	OnFull string `json:"on_full,omitempty"`
	// DeleteRetentionMs is delete.retention.ms: how long a compacted topic keeps
	// a tombstone (null value) so consumers see the delete.
	DeleteRetentionMs int64 `json:"delete_retention_ms,omitempty"`
	// CompressionType is compression.type: producer (batches stored as sent),
	// uncompressed, gzip, snappy, lz4 or zstd, for the batches katka writes.
	CompressionType string `json:"compression_type,omitempty"`
	// SegmentBytes is segment.bytes; partitions open with it between
	// MinTopicSegmentBytes and the broker's segment size.
	SegmentBytes int64 `json:"segment_bytes,omitempty"`
	// Overrides are the Kafka topic configs set on the topic (Kafka's dynamic
	// topic configs, canonical values by name); every config not in it takes
	// the broker default. The typed fields above are resolved from both.
	// Shared between copies of a TopicConfig: never modify it in place.
	Overrides map[string]string `json:"overrides,omitempty"`
}

// minCleanableDirtyRatio is min.cleanable.dirty.ratio: the share of a
// compacted partition's sealed log that must be new before it is compacted
// again (Kafka's default 0.5).
func (c TopicConfig) minCleanableDirtyRatio() float64 {
	if v, ok := c.Overrides["min.cleanable.dirty.ratio"]; ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
			return f
		}
	}
	return 0.5
}

// Compacted reports whether the topic is compacted (keeps the latest record per key).
func (c TopicConfig) Compacted() bool { return strings.Contains(c.CleanupPolicy, "compact") }

// Deletes reports whether retention.ms and retention.bytes delete old segments.
func (c TopicConfig) Deletes() bool { return strings.Contains(c.CleanupPolicy, "delete") }

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string      `json:"name"`
	ID         [16]byte    `json:"-"`
	Partitions int32       `json:"partitions"`
	Config     TopicConfig `json:"config"`
	Created    time.Time   `json:"created"`
}

// IDString returns the topic ID in hex.
func (t TopicInfo) IDString() string { return hex.EncodeToString(t.ID[:]) }

// PartitionInfo reports one partition's offsets and size.
type PartitionInfo struct {
	Partition      int32 `json:"partition"`
	LogStartOffset int64 `json:"log_start_offset"`
	HighWatermark  int64 `json:"high_watermark"`
	Bytes          int64 `json:"bytes"`
}

// FetchResult is what Fetch returns.
type FetchResult struct {
	// Records start at the requested offset (never a record below it).
	Records []Record
	// HighWatermark is the offset after the last record a consumer may read.
	HighWatermark int64
	// LogStartOffset is the first offset still in the log.
	LogStartOffset int64
}

// Options configures a broker.
type Options struct {
	DataDir                string
	Fsync                  FsyncMode
	FsyncInterval          time.Duration
	SegmentBytes           int
	CacheSegments          int
	RetentionCheckInterval time.Duration
	// Defaults apply to topics whose config leaves a field zero.
	Defaults TopicConfig
	// AutoCreate lets EnsureTopic-style callers create topics on first use.
	AutoCreate bool
	// DefaultPartitions is the partition count of auto-created topics.
	DefaultPartitions int32
	// QuotaBytes caps the bytes of all partition logs; 0 is no quota.
	QuotaBytes int64
	// MaxPartitions caps the partitions of all topics together; a create or
	// partition increase that would pass it fails with ErrPartitionLimit.
	// 0 means DefaultMaxPartitions. Topics already on disk always load.
	MaxPartitions int
	// MinFreeBytes is the free-space watermark of the data directory's disk;
	// below it the disk counts as full. 0 is no watermark.
	MinFreeBytes int64
	Logger       *slog.Logger
	// Metrics, if set, receives the broker's counters.
	Metrics *Metrics
	// SyncfsMin is the fewest partitions flushing at once for which the
	// broker flushes the data directory's filesystem with one syncfs instead
	// of one fdatasync each (storage.Syncer); 0 is storage.DefaultSyncfsMin,
	// negative never uses syncfs.
	SyncfsMin int
	// ReplicaGate, set in a cell, makes every partition (but katka's
	// internal topics') refuse writes until the cell sets its replica state
	// (SetReplicaState) or clears it (ClearReplicaState: one replica): a
	// node back from a restart never writes into a log it may no longer
	// lead before its copy of the cell's metadata says so.
	ReplicaGate bool
}

// Broker owns every topic in one data directory.
type Broker struct {
	opts Options
	log  *slog.Logger
	lock *storage.DirLock
	m    *Metrics
	// syncer flushes many partitions' writes with one syncfs (nil: each
	// partition fdatasyncs its own file).
	syncer *storage.Syncer

	mu     sync.RWMutex
	topics map[string]*topic
	closed bool
	// busy holds the names whose create, delete or change is under way
	// outside mu; the channel closes when it ends. Anyone else wanting the
	// name waits for it, so a name is never half created or half deleted.
	busy map[string]chan struct{}
	// nparts counts the partitions of every topic plus those being created.
	nparts int

	// Test hooks: onReserve runs after a name is marked busy and before the
	// slow work, onBusyWait when a caller starts waiting for a busy name,
	// onFetchWait when a fetch is about to wait for records.
	onReserve   func(name string)
	onBusyWait  func(name string)
	onFetchWait func()

	stop      chan struct{}
	wg        sync.WaitGroup
	clusterID string
	disk      diskGuard
	dropMu    sync.Mutex // one drop_oldest at a time
	// router, set in a cell, sends writes for partitions led elsewhere.
	router atomic.Pointer[routerRef]
}

type topic struct {
	info  TopicInfo
	dir   string
	parts []*partition
}

const topicMetaFile = "topic.json"

// Open locks the data directory, opens every topic in it (repairing damage) and
// starts the background fsync and retention loops.
func Open(opts Options) (*Broker, error) {
	if opts.Fsync == "" {
		opts.Fsync = FsyncAlways
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = time.Second
	}
	if opts.RetentionCheckInterval <= 0 {
		opts.RetentionCheckInterval = 30 * time.Second
	}
	if opts.MaxPartitions <= 0 {
		opts.MaxPartitions = DefaultMaxPartitions
	}
	if opts.DefaultPartitions <= 0 {
		opts.DefaultPartitions = 1
	}
	if opts.Defaults.RetentionMs == 0 {
		opts.Defaults.RetentionMs = -1
	}
	if opts.Defaults.RetentionBytes == 0 {
		opts.Defaults.RetentionBytes = -1
	}
	if opts.Defaults.MaxMessageBytes == 0 {
		opts.Defaults.MaxMessageBytes = 1048588
	}
	if opts.Defaults.TimestampType == "" {
		opts.Defaults.TimestampType = "CreateTime"
	}
	if opts.Defaults.CleanupPolicy == "" {
		opts.Defaults.CleanupPolicy = "delete"
	}
	if opts.Defaults.DeleteRetentionMs == 0 {
		opts.Defaults.DeleteRetentionMs = 86400000
	}
	if opts.Defaults.OnFull == "" {
		opts.Defaults.OnFull = OnFullReject
	}
	if opts.Defaults.CompressionType == "" {
		opts.Defaults.CompressionType = "producer"
	}
	if opts.Defaults.SegmentBytes <= 0 {
		opts.Defaults.SegmentBytes = int64(opts.SegmentBytes)
		if opts.SegmentBytes <= 0 {
			opts.Defaults.SegmentBytes = storage.DefaultSegmentBytes
		}
	}
	opts.Defaults.Overrides = nil
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lock, err := storage.LockDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	b := &Broker{opts: opts, log: lg, lock: lock, m: opts.Metrics, topics: map[string]*topic{}, busy: map[string]chan struct{}{}, stop: make(chan struct{})}
	if b.m == nil {
		b.m = NewMetrics(nil)
	}
	b.m.broker = b
	b.m.limits.mu.Lock()
	b.m.limits.log = lg
	b.m.limits.mu.Unlock()
	b.disk.quota, b.disk.minFree = opts.QuotaBytes, opts.MinFreeBytes
	if opts.SyncfsMin >= 0 {
		if b.syncer, err = storage.NewSyncer(opts.DataDir, opts.SyncfsMin); err != nil {
			lock.Unlock()
			return nil, err
		}
	}
	if err := b.loadClusterID(); err != nil {
		b.syncer.Close()
		lock.Unlock()
		return nil, err
	}
	if err := b.load(); err != nil {
		b.closeTopics()
		b.syncer.Close()
		lock.Unlock()
		return nil, err
	}
	if opts.Fsync == FsyncInterval {
		b.every(opts.FsyncInterval, b.syncPartitions)
	}
	b.every(time.Second, b.checkpointHW) // replicated partitions only
	b.every(opts.RetentionCheckInterval, func() {
		b.ApplyRetention(time.Now())
		b.CompactTopics(time.Now())
	})
	return b, nil
}

// load opens every topic found in the data directory and removes topics whose
// deletion was interrupted.
func (b *Broker) load() error {
	ents, err := os.ReadDir(b.opts.DataDir)
	if err != nil {
		return fmt.Errorf("read data dir %s: %w", b.opts.DataDir, err)
	}
	t0 := time.Now()
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(b.opts.DataDir, e.Name())
		if strings.HasPrefix(e.Name(), ".deleted-") {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove deleted topic %s: %w", dir, err)
			}
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, topicMetaFile))
		if errors.Is(err, os.ErrNotExist) {
			b.log.Warn("ignoring directory without topic metadata", "dir", dir)
			continue
		}
		if err != nil {
			return fmt.Errorf("read topic metadata %s: %w", dir, err)
		}
		var meta topicMeta
		if err := json.Unmarshal(raw, &meta); err != nil {
			return fmt.Errorf("parse topic metadata %s: %w", filepath.Join(dir, topicMetaFile), err)
		}
		info, err := meta.info()
		if err != nil {
			return fmt.Errorf("topic metadata %s: %w", dir, err)
		}
		info.Config = b.loadConfig(meta)
		t := &topic{info: info, dir: dir}
		for p := int32(0); p < info.Partitions; p++ {
			part, err := b.openPartition(t, p)
			if err != nil {
				return err
			}
			t.parts = append(t.parts, part)
		}
		b.topics[info.Name] = t
		b.nparts += len(t.parts)
	}
	if b.nparts > b.opts.MaxPartitions {
		b.log.Warn("the topics on disk have more partitions than topics.max_partitions allows; new topics and partitions are refused until some are deleted", "partitions", b.nparts, "max_partitions", b.opts.MaxPartitions)
	}
	b.log.Info("broker opened", "data_dir", b.opts.DataDir, "topics", len(b.topics), "partitions", b.nparts, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

type topicMeta struct {
	Name       string      `json:"name"`
	ID         string      `json:"id"`
	Partitions int32       `json:"partitions"`
	Config     TopicConfig `json:"config"`
	Created    time.Time   `json:"created"`
	// HasOverrides marks metadata whose Config.Overrides lists the configs
	// set on the topic; older metadata holds only resolved typed fields.
	HasOverrides bool `json:"has_overrides,omitempty"`
}

func (m topicMeta) info() (TopicInfo, error) {
	info := TopicInfo{Name: m.Name, Partitions: m.Partitions, Config: m.Config, Created: m.Created}
	id, err := hex.DecodeString(m.ID)
	if err != nil || len(id) != 16 {
		return info, fmt.Errorf("bad topic id %q", m.ID)
	}
	copy(info.ID[:], id)
	if err := ValidTopicName(m.Name); err != nil {
		return info, err
	}
	if m.Partitions < 1 {
		return info, fmt.Errorf("%w: %d", ErrInvalidPartitions, m.Partitions)
	}
	return info, nil
}

func (b *Broker) openPartition(t *topic, p int32) (*partition, error) {
	dir := filepath.Join(t.dir, strconv.Itoa(int(p)))
	l, _, err := storage.Open(dir, storage.Options{
		SegmentBytes:  b.segmentBytes(t.info.Config),
		CacheSegments: b.opts.CacheSegments,
		Logger:        b.log.With("topic", t.info.Name, "partition", p),
		OnFsync:       b.m.observeFsync,
		OnRecovery:    b.m.observeRecovery,
		Syncer:        b.syncer,
	})
	if err != nil {
		return nil, fmt.Errorf("open partition %s-%d: %w", t.info.Name, p, err)
	}
	part := &partition{topic: t.info.Name, id: p, log: l, notify: make(chan struct{}), interval: b.opts.Fsync == FsyncInterval}
	part.hw.Store(l.EndOffset())
	if err := part.loadHW(); err != nil {
		l.Close()
		return nil, err
	}
	if b.opts.ReplicaGate && CellReplicated(t.info.Name) {
		part.repl.Store(gatedState())
	}
	return part, nil
}

// writeMeta persists a topic's metadata atomically.
func writeMeta(dir string, info TopicInfo) error {
	raw, err := json.MarshalIndent(topicMeta{Name: info.Name, ID: info.IDString(), Partitions: info.Partitions, Config: info.Config, Created: info.Created, HasOverrides: true}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, topicMetaFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("write topic metadata: %w", err)
	}
	_, err = f.Write(append(raw, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write topic metadata %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write topic metadata: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error { return storage.SyncDir(dir) }

// ValidTopicName checks a name the way Kafka does: 1 to 249 characters from
// [a-zA-Z0-9._-], and not "." or "..".
func ValidTopicName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 249 {
		return fmt.Errorf("%w %q: must be 1 to 249 characters and not . or ..", ErrInvalidTopic, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w %q: only a-z, A-Z, 0-9, '.', '_' and '-' are allowed", ErrInvalidTopic, name)
		}
	}
	return nil
}

// resolve turns the config a caller asks for into the topic's config: its
// Overrides plus any typed field the caller set (non-zero) become the
// topic's overrides, every other field takes the broker default. Call it on
// a requested config only, never on a resolved one (whose fields are all set).
func (b *Broker) resolve(c TopicConfig) TopicConfig {
	out := b.opts.Defaults
	if c.OnFull != "" {
		out.OnFull = c.OnFull
	}
	out.Overrides = typedOverrides(c)
	applyOverrides(&out)
	return out
}

// loadConfig resolves a topic's config read from its metadata against the
// broker defaults of this run. Metadata written before overrides were kept
// has resolved fields only: all of them count as set, so the topic keeps the
// values it had.
func (b *Broker) loadConfig(m topicMeta) TopicConfig {
	if !m.HasOverrides {
		return b.resolve(m.Config)
	}
	return b.resolve(TopicConfig{OnFull: m.Config.OnFull, Overrides: m.Config.Overrides})
}

// reserve waits until no create, delete or change of name is under way, then,
// under b.mu, runs check with the topic (nil if there is none). check returns
// the partitions the work adds; if they fit under the broker's cap the name is
// marked busy and they are counted. The caller does its slow work without b.mu
// and ends with finish. check may change b.topics (it holds b.mu).
func (b *Broker) reserve(name string, check func(t *topic) (add int, err error)) (*topic, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, ErrClosed
		}
		if ch, ok := b.busy[name]; ok {
			wait := b.onBusyWait
			b.mu.Unlock()
			if wait != nil {
				wait(name)
			}
			select {
			case <-ch:
				continue
			case <-b.stop:
				return nil, ErrClosed
			}
		}
		t := b.topics[name]
		add, err := check(t)
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		if add > 0 && b.nparts+add > b.opts.MaxPartitions {
			n := b.nparts
			b.mu.Unlock()
			return nil, fmt.Errorf("%w: %d partitions exist, %d more would pass topics.max_partitions %d", ErrPartitionLimit, n, add, b.opts.MaxPartitions)
		}
		b.nparts += add
		b.busy[name] = make(chan struct{})
		hook := b.onReserve
		b.mu.Unlock()
		if hook != nil {
			hook(name)
		}
		return t, nil
	}
}

// finish ends what reserve started: under b.mu it runs publish (which may
// change b.topics), gives back free partitions and clears the busy mark, then
// wakes those waiting for the name.
func (b *Broker) finish(name string, free int, publish func()) {
	b.mu.Lock()
	if publish != nil {
		publish()
	}
	b.nparts -= free
	ch := b.busy[name]
	delete(b.busy, name)
	b.mu.Unlock()
	close(ch)
}

// CreateTopic creates a topic with n partitions; zero fields of cfg take the
// broker defaults. The metadata is durable before it returns. Names starting
// with "." are refused (katka keeps its deleted-topic directories under such
// names); "__" names are for in-process writers, the Kafka layer refuses them.
// A create of a name being deleted waits for the delete to end. The directories
// and logs are made without the lock other topics need.
func (b *Broker) CreateTopic(name string, n int32, cfg TopicConfig) (TopicInfo, error) {
	return b.CreateTopicID(name, n, cfg, [16]byte{})
}

// CreateTopicID is CreateTopic with the topic id given (all zero: a new
// random one): in a cell every node holds a topic under the id the
// controller committed, so clients may address it by id on any node.
func (b *Broker) CreateTopicID(name string, n int32, cfg TopicConfig, id [16]byte) (TopicInfo, error) {
	if err := ValidTopicName(name); err != nil {
		return TopicInfo{}, err
	}
	if strings.HasPrefix(name, ".") {
		return TopicInfo{}, fmt.Errorf("%w %q: names starting with '.' are reserved for katka", ErrInvalidTopic, name)
	}
	if n < 1 || n > MaxTopicPartitions {
		return TopicInfo{}, fmt.Errorf("create topic %s: %w: %d (allowed: 1..%d)", name, ErrInvalidPartitions, n, MaxTopicPartitions)
	}
	if _, err := b.reserve(name, func(t *topic) (int, error) {
		if t != nil {
			return 0, fmt.Errorf("create topic %s: %w", name, ErrTopicExists)
		}
		return int(n), nil
	}); err != nil {
		if errors.Is(err, ErrPartitionLimit) {
			err = fmt.Errorf("create topic %s with %d partitions: %w", name, n, err)
		}
		return TopicInfo{}, err
	}
	t, err := b.makeTopic(name, n, cfg, id)
	if err != nil {
		b.finish(name, int(n), nil)
		return TopicInfo{}, err
	}
	b.finish(name, 0, func() { b.topics[name] = t })
	b.log.Info("topic created", "topic", name, "partitions", n)
	return t.info, nil
}

// makeTopic creates a topic's directory, partition logs and metadata; the
// caller holds the name busy.
func (b *Broker) makeTopic(name string, n int32, cfg TopicConfig, id [16]byte) (*topic, error) {
	info := TopicInfo{Name: name, ID: id, Partitions: n, Config: b.resolve(cfg), Created: time.Now().UTC()}
	if info.ID == ([16]byte{}) {
		if _, err := rand.Read(info.ID[:]); err != nil {
			return nil, fmt.Errorf("create topic %s: topic id: %w", name, err)
		}
	}
	dir := filepath.Join(b.opts.DataDir, name)
	if err := os.Mkdir(dir, 0o750); errors.Is(err, os.ErrExist) {
		// Not a known topic, yet its directory exists: a create cut short by a
		// crash (no metadata, so nothing was ever written to it), or a topic
		// whose metadata cannot be read. Only the first is cleared away.
		if _, serr := os.Stat(filepath.Join(dir, topicMetaFile)); !errors.Is(serr, os.ErrNotExist) {
			return nil, fmt.Errorf("create topic %s: directory %s already holds topic metadata", name, dir)
		}
		b.log.Warn("removing the directory of an unfinished topic create", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("create topic %s: %w", name, err)
		}
		err = os.Mkdir(dir, 0o750)
		if err != nil {
			return nil, fmt.Errorf("create topic %s: %w", name, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	t := &topic{info: info, dir: dir}
	undo := func() {
		for _, q := range t.parts {
			q.close()
		}
		os.RemoveAll(dir)
	}
	for p := int32(0); p < n; p++ {
		part, err := b.openPartition(t, p)
		if err != nil {
			undo()
			return nil, err
		}
		t.parts = append(t.parts, part)
	}
	// The metadata file is written last: a topic directory without it is ignored.
	if err := writeMeta(dir, info); err != nil {
		undo()
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	if err := syncDir(b.opts.DataDir); err != nil {
		undo()
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	return t, nil
}

// EnsureTopic returns the topic, creating it with n partitions (or the default
// count when n is 0) if it does not exist.
func (b *Broker) EnsureTopic(name string, n int32) (TopicInfo, error) {
	if info, err := b.Topic(name); err == nil {
		return info, nil
	}
	if n <= 0 {
		n = b.opts.DefaultPartitions
	}
	info, err := b.CreateTopic(name, n, TopicConfig{})
	if errors.Is(err, ErrTopicExists) {
		return b.Topic(name)
	}
	return info, err
}

// AutoCreate reports whether topics may be created on first use.
func (b *Broker) AutoCreate() bool { return b.opts.AutoCreate }

// DefaultPartitions is the partition count for auto-created topics.
func (b *Broker) DefaultPartitions() int32 { return b.opts.DefaultPartitions }

// MaxPartitions is the cap on the partitions of all topics together.
func (b *Broker) MaxPartitions() int { return b.opts.MaxPartitions }

// PartitionCount is the number of partitions of all topics, counting those
// being created.
func (b *Broker) PartitionCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.nparts
}

// DeleteTopic removes a topic and its data. The topic disappears at once for
// readers and writers (their handles answer ErrUnknownTopic), but its name
// stays busy until the directory is renamed aside and the data directory
// fsynced, so a create of the same name waits and never sees old data. A
// crash midway never leaves half a topic: the renamed directory is removed at
// the next start.
func (b *Broker) DeleteTopic(name string) error {
	t, err := b.reserve(name, func(t *topic) (int, error) {
		if t == nil {
			return 0, fmt.Errorf("delete topic %s: %w", name, ErrUnknownTopic)
		}
		delete(b.topics, name)
		return 0, nil
	})
	if err != nil {
		return err
	}
	for _, p := range t.parts {
		p.retire()
	}
	aside := filepath.Join(b.opts.DataDir, fmt.Sprintf(".deleted-%s-%d", name, time.Now().UnixNano()))
	err = os.Rename(t.dir, aside)
	if err == nil {
		err = syncDir(b.opts.DataDir)
	}
	if err != nil && !fileExists(aside) {
		// The directory is still in place: bring the topic back as it was.
		back, rerr := b.reopenTopic(t)
		if rerr != nil {
			b.log.Error("reopening a topic whose delete failed; it comes back at the next start", "topic", name, "err", rerr)
			b.finish(name, len(t.parts), nil)
		} else {
			b.finish(name, 0, func() { b.topics[name] = back })
		}
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	b.finish(name, len(t.parts), func() { b.m.forgetTopic(name) })
	if err != nil {
		// Renamed, but the rename may not be durable: after a power cut the
		// topic may come back whole (never half).
		b.log.Warn("deleted topic's directory rename not fsynced", "topic", name, "err", err)
	}
	if err := os.RemoveAll(aside); err != nil {
		b.log.Warn("removing deleted topic data", "dir", aside, "err", err)
	}
	b.log.Info("topic deleted", "topic", name)
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// reopenTopic opens t's partitions again (after a failed delete).
func (b *Broker) reopenTopic(t *topic) (*topic, error) {
	nt := &topic{info: t.info, dir: t.dir}
	for p := int32(0); p < t.info.Partitions; p++ {
		part, err := b.openPartition(nt, p)
		if err != nil {
			for _, q := range nt.parts {
				q.close()
			}
			return nil, err
		}
		nt.parts = append(nt.parts, part)
	}
	return nt, nil
}

// CreatePartitions grows a topic to total partitions. The topic stays readable
// and writable meanwhile; the new logs are made without the broker lock.
func (b *Broker) CreatePartitions(name string, total int32) error {
	var add int
	t, err := b.reserve(name, func(t *topic) (int, error) {
		if t == nil {
			return 0, fmt.Errorf("create partitions %s: %w", name, ErrUnknownTopic)
		}
		if total <= t.info.Partitions || total > MaxTopicPartitions {
			return 0, fmt.Errorf("create partitions %s: %w: %d (topic has %d; allowed up to %d)", name, ErrInvalidPartitions, total, t.info.Partitions, MaxTopicPartitions)
		}
		add = int(total - t.info.Partitions)
		return add, nil
	})
	if err != nil {
		if errors.Is(err, ErrPartitionLimit) {
			err = fmt.Errorf("create partitions %s: %w", name, err)
		}
		return err
	}
	var added []*partition
	fail := func(err error) error {
		for _, q := range added {
			q.close()
		}
		b.finish(name, add, nil)
		return err
	}
	for p := t.info.Partitions; p < total; p++ {
		part, err := b.openPartition(t, p)
		if err != nil {
			return fail(err)
		}
		added = append(added, part)
	}
	info := t.info
	info.Partitions = total
	if err := writeMeta(t.dir, info); err != nil {
		return fail(fmt.Errorf("create partitions %s: %w", name, err))
	}
	nt := &topic{info: info, dir: t.dir, parts: append(append([]*partition(nil), t.parts...), added...)}
	b.finish(name, 0, func() { b.topics[name] = nt })
	return nil
}

// Topic returns one topic's description.
func (b *Broker) Topic(name string) (TopicInfo, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t, ok := b.topics[name]
	if !ok {
		return TopicInfo{}, fmt.Errorf("topic %s: %w", name, ErrUnknownTopic)
	}
	return t.info, nil
}

// Topics lists all topics sorted by name.
func (b *Broker) Topics() []TopicInfo {
	b.mu.RLock()
	out := make([]TopicInfo, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, t.info)
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Partitions reports the offsets and size of every partition of a topic.
func (b *Broker) Partitions(name string) ([]PartitionInfo, error) {
	b.mu.RLock()
	t, ok := b.topics[name]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("topic %s: %w", name, ErrUnknownTopic)
	}
	out := make([]PartitionInfo, len(t.parts))
	for i, p := range t.parts {
		out[i] = p.info()
	}
	return out, nil
}

func (b *Broker) partition(name string, p int32) (*topic, *partition, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, nil, ErrClosed
	}
	t, ok := b.topics[name]
	if !ok {
		return nil, nil, fmt.Errorf("topic %s: %w", name, ErrUnknownTopic)
	}
	if p < 0 || int(p) >= len(t.parts) {
		return nil, nil, fmt.Errorf("partition %s-%d: %w", name, p, ErrUnknownPartition)
	}
	return t, t.parts[p], nil
}

// Produce appends recs to one partition and returns the offset of the first once
// they are as durable as acks asks: with fsync always, acks 1 and all wait for the
// fsync (shared with concurrent producers); acks 0 returns after the write.
// Records with a zero Timestamp get the append time; LogAppendTime topics
// overwrite every timestamp. In a cell a partition led by another node is
// written there (SetRouter).
func (b *Broker) Produce(ctx context.Context, topicName string, partition int32, recs []Record, acks Acks) (int64, error) {
	if base, routed, err := b.route(ctx, topicName, partition, recs, acks); routed {
		return base, err
	}
	t, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	logAppend := t.info.Config.TimestampType == "LogAppendTime"
	size := 0
	for i := range recs {
		if logAppend || recs[i].Timestamp.IsZero() {
			recs[i].Timestamp = now
		}
		n := len(recs[i].Key) + len(recs[i].Value)
		for _, h := range recs[i].Headers {
			n += len(h.Key) + len(h.Value)
		}
		if max := t.info.Config.MaxMessageBytes; max > 0 && int64(n) > max {
			return 0, fmt.Errorf("produce to %s-%d: %w: %d bytes, limit %d", topicName, partition, ErrRecordTooLarge, n, max)
		}
		size += n
	}
	// Entries carry about 30 bytes of framing each.
	need := int64(size + 32*len(recs))
	if err := b.makeRoom(t, need); err != nil {
		return 0, err
	}
	// Written as batches compressed per the topic's compression.type
	// (producer and uncompressed: uncompressed).
	codec, _ := storage.CodecByName(t.info.Config.CompressionType)
	p.roleMu.RLock()
	if err := p.checkLeader(acks); err != nil {
		p.roleMu.RUnlock()
		return 0, err
	}
	base, end, err := p.append(recs, storage.BatchFormat{Codec: codec, LogAppendTime: logAppend, LeaderEpoch: p.leaderEpoch()})
	p.roleMu.RUnlock()
	if err == nil {
		b.disk.used.Add(need)
	}
	if err != nil {
		if err := p.goneErr(nil); err != nil {
			return 0, err
		}
		b.m.produceError(topicName)
		return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
	}
	b.m.recordsIn(topicName, len(recs), size)
	if err := b.acknowledge(ctx, p, end, acks); err != nil {
		return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
	}
	return base, nil
}

// acknowledge waits until a write ending at end is as durable as acks asks:
// nothing for acks 0 (made visible soon), this node's fsync for acks 1 and
// all (none with fsync: interval), and on a replicated partition's leader
// every in-sync replica for acks all.
func (b *Broker) acknowledge(ctx context.Context, p *partition, end int64, acks Acks) error {
	if acks == AcksNone && !p.interval {
		go p.syncTo(end) // make them visible soon; nobody waits
		return nil
	}
	if !p.interval {
		if err := p.syncTo(end); err != nil {
			if err := p.goneErr(nil); err != nil {
				return err
			}
			b.m.produceError(p.topic)
			return err
		}
	}
	if acks == AcksAll {
		return b.waitReplicated(ctx, p, end)
	}
	return nil
}

// Fetch returns records from offset, waiting up to maxWait for at least one if
// none is available yet. maxBytes bounds the encoded size, but one record is
// returned whatever its size. An offset outside the log gives ErrOffsetOutOfRange;
// a damaged record gives an error wrapping ErrCorrupt, never its bytes.
func (b *Broker) Fetch(ctx context.Context, topicName string, partition int32, offset int64, maxBytes int, maxWait time.Duration) (FetchResult, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return FetchResult{}, err
	}
	var timer *time.Timer
	for {
		ch := p.waitCh()
		if err := p.goneErr(nil); err != nil {
			return FetchResult{}, err
		}
		hw := p.hw.Load()
		start := p.log.StartOffset()
		res := FetchResult{HighWatermark: hw, LogStartOffset: start}
		if offset < start || offset > p.fetchable(hw) {
			return res, fmt.Errorf("fetch %s-%d at %d: %w (log start %d, high watermark %d)", topicName, partition, offset, ErrOffsetOutOfRange, start, hw)
		}
		if offset < hw {
			recs, err := p.log.Read(offset, hw, maxBytes)
			if err != nil {
				if errors.Is(err, storage.ErrOutOfRange) { // retention moved the start meanwhile
					continue
				}
				if err := p.goneErr(nil); err != nil {
					return FetchResult{}, err
				}
				if errors.Is(err, ErrCorrupt) {
					b.m.corruptRead(topicName)
				}
				return res, fmt.Errorf("fetch %s-%d: %w", topicName, partition, err)
			}
			res.Records = recs
			b.m.recordsOut(topicName, recs)
			return res, nil
		}
		if maxWait <= 0 {
			return res, nil
		}
		if timer == nil {
			timer = time.NewTimer(maxWait)
			defer timer.Stop()
		}
		if b.onFetchWait != nil {
			b.onFetchWait()
		}
		select {
		case <-ch:
		case <-timer.C:
			return res, nil
		case <-ctx.Done():
			return res, nil
		case <-b.stop:
			return res, ErrClosed
		}
	}
}

// Notify returns a channel that is closed when the partition's high watermark
// next moves, so callers can wait on many partitions at once (Kafka MinBytes).
func (b *Broker) Notify(topicName string, partition int32) (<-chan struct{}, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return nil, err
	}
	return p.waitCh(), nil
}

// OffsetForTime returns the first offset whose record timestamp is at or after
// ts, or the high watermark if there is none (Kafka ListOffsets by timestamp).
func (b *Broker) OffsetForTime(ctx context.Context, topicName string, partition int32, ts time.Time) (int64, time.Time, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, time.Time{}, err
	}
	hw := p.hw.Load()
	off := p.log.StartOffset()
	// Skip sealed segments whose last record is older than ts.
	for _, s := range p.log.Segments() {
		if s.Sealed && !s.LastTimestamp.IsZero() && s.LastTimestamp.Before(ts) {
			continue
		}
		if s.BaseOffset > off {
			off = s.BaseOffset
		}
		break
	}
	for off < hw {
		if err := ctx.Err(); err != nil {
			return 0, time.Time{}, err
		}
		recs, err := p.log.Read(off, hw, 1<<20)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				off++
				continue
			}
			return 0, time.Time{}, p.goneErr(err)
		}
		for _, r := range recs {
			if !r.Timestamp.Before(ts) {
				return r.Offset, r.Timestamp, nil
			}
		}
		off = recs[len(recs)-1].Offset + 1
	}
	return hw, time.Time{}, nil
}

// Close stops the background loops, flushes every partition and releases the
// data directory.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.stop)
	var busy []chan struct{}
	for _, ch := range b.busy {
		busy = append(busy, ch)
	}
	b.mu.Unlock()
	// Creates, deletes and changes under way finish (new ones are refused).
	for _, ch := range busy {
		<-ch
	}
	b.wg.Wait()
	b.checkpointHW()
	err := b.closeTopics()
	if serr := b.syncer.Close(); err == nil {
		err = serr
	}
	if uerr := b.lock.Unlock(); err == nil {
		err = uerr
	}
	return err
}

func (b *Broker) closeTopics() error {
	var errs []error
	for _, t := range b.topics {
		for _, p := range t.parts {
			if err := p.close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// syncPartitions flushes every partition (run each FsyncInterval with fsync: interval).
// Partitions flush side by side (at most syncWorkers at once), so that the
// syncer makes one syncfs of many of them instead of one fdatasync after
// another: 4,096 partitions flushed in turn took longer than the interval.
func (b *Broker) syncPartitions() {
	parts := b.allPartitions()
	next := make(chan *partition)
	var wg sync.WaitGroup
	for range min(len(parts), syncWorkers) {
		wg.Go(func() {
			for p := range next {
				if err := p.syncTo(p.log.EndOffset()); err != nil && !errors.Is(err, storage.ErrClosed) {
					b.log.Error("interval fsync failed", "topic", p.topic, "partition", p.id, "err", err)
				}
			}
		})
	}
	for _, p := range parts {
		next <- p
	}
	close(next)
	wg.Wait()
}

// syncWorkers is how many partitions the interval flush syncs at once.
const syncWorkers = 64

// every runs f each interval until the broker closes.
func (b *Broker) every(interval time.Duration, f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-tk.C:
			}
			f()
		}
	}()
}

func (b *Broker) allPartitions() []*partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []*partition
	for _, t := range b.topics {
		out = append(out, t.parts...)
	}
	return out
}

// CorruptOffset returns the offset of the damaged record an error reports.
func CorruptOffset(err error) (int64, bool) {
	var ce *storage.CorruptError
	if errors.As(err, &ce) {
		return ce.Offset, true
	}
	return 0, false
}

// DeleteRecords moves a partition's log start offset to before (Kafka
// DeleteRecords; -1 means the high watermark) and returns the new log start
// offset. Offsets past the high watermark give ErrOffsetOutOfRange.
func (b *Broker) DeleteRecords(topicName string, partition int32, before int64) (int64, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, err
	}
	hw := p.hw.Load()
	if before == -1 {
		before = hw
	}
	if before < 0 || before > hw {
		return 0, fmt.Errorf("delete records %s-%d before %d: %w (high watermark %d)", topicName, partition, before, ErrOffsetOutOfRange, hw)
	}
	if err := p.log.AdvanceStart(before); err != nil {
		return 0, p.goneErr(fmt.Errorf("delete records %s-%d: %w", topicName, partition, err))
	}
	return p.log.StartOffset(), nil
}

// PartitionInfo reports one partition's offsets and size without listing the topic.
func (b *Broker) PartitionInfo(topicName string, partition int32) (PartitionInfo, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return PartitionInfo{}, err
	}
	return p.info(), nil
}

// ClusterID returns this data directory's cluster id: random, created on first
// start and kept in <data>/cluster-id, so Kafka clients see a stable id.
func (b *Broker) ClusterID() string { return b.clusterID }

// loadClusterID reads or creates the cluster id file.
func (b *Broker) loadClusterID() error {
	path := filepath.Join(b.opts.DataDir, "cluster-id")
	raw, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(raw))) > 0 {
		b.clusterID = strings.TrimSpace(string(raw))
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read cluster id: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("cluster id: %w", err)
	}
	// Kafka cluster ids are 22 characters of URL-safe base64 of 16 random bytes.
	b.clusterID = base64.RawURLEncoding.EncodeToString(id[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.clusterID+"\n"), 0o640); err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	if f, err := os.Open(tmp); err == nil {
		f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	return syncDir(b.opts.DataDir)
}
