package kafka

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
)

// telemetry returns n JSON readings like a factory line's (the same for a
// given seed): about 120 bytes each, compressible as real telemetry is.
func telemetry(n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([][]byte, n)
	ts := int64(1_767_225_600_000)
	for i := range out {
		ts += int64(rng.IntN(20))
		out[i] = fmt.Appendf(nil, `{"ts":%d,"plant":"p%d","line":%d,"machine":"press-%02d","temp_c":%.2f,"rpm":%d,"status":"%s"}`,
			ts, 1+rng.IntN(3), 1+rng.IntN(8), rng.IntN(24), 60+rng.Float64()*25, 1400+rng.IntN(200), []string{"run", "run", "run", "idle", "alarm"}[rng.IntN(5)])
	}
	return out
}

// partitionBytes is the size of a partition's directory on disk.
func partitionBytes(t *testing.T, b *broker.Broker, topic string, partition int) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(b.DataDir(), topic, fmt.Sprint(partition)), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// batchCodecs records what kgo's OnFetchBatchRead hook reports: the codec of
// every fetched batch and their compressed and uncompressed bytes.
type batchCodecs struct {
	mu                   sync.Mutex
	codecs               map[uint8]int
	compressed, expanded int
}

// OnFetchBatchRead implements kgo.HookFetchBatchRead.
func (h *batchCodecs) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.codecs == nil {
		h.codecs = map[uint8]int{}
	}
	h.codecs[m.CompressionType]++
	h.compressed += m.CompressedBytes
	h.expanded += m.UncompressedBytes
}

// consumeCodecs reads n records of topic from the start with kgo, reporting
// every fetched batch to h.
func consumeCodecs(t *testing.T, e *testEnv, topic string, n int, h *batchCodecs) []*kgo.Record {
	t.Helper()
	cl := e.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(h))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: %d of %d records, timed out", topic, len(got), n)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		got = append(got, fs.Records()...)
	}
	return got
}

// produceAll produces vals to topic partition 0 in as few batches as kgo makes.
func produceAll(t *testing.T, cl *kgo.Client, topic string, vals [][]byte, ts time.Time) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(vals))
	for i, v := range vals {
		recs[i] = &kgo.Record{Topic: topic, Value: v, Timestamp: ts}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	return recs
}

// kgo's codec numbers in FetchBatchMetrics.CompressionType.
var kgoCodecs = map[string]struct {
	id    uint8
	codec kgo.CompressionCodec
}{
	"gzip":   {1, kgo.GzipCompression()},
	"snappy": {2, kgo.SnappyCompression()},
	"lz4":    {3, kgo.Lz4Compression()},
	"zstd":   {4, kgo.ZstdCompression()},
}

// TestProducedBatchesStoredAndServedCompressed: kgo batches compressed with
// each codec (plain and idempotent producers) are stored as sent, so the
// partition directory holds the compressed bytes, and fetched as stored: the
// consumer's OnFetchBatchRead hook sees every batch in the producer's codec,
// and the records come back in order, as written.
func TestProducedBatchesStoredAndServedCompressed(t *testing.T) {
	e := newEnv(t)
	vals := telemetry(5000, 1)
	raw := 0
	for _, v := range vals {
		raw += len(v)
	}
	for name, c := range kgoCodecs {
		for _, idem := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/idempotent=%v", name, idem), func(t *testing.T) {
				topic := fmt.Sprintf("cz-%s-%v", name, idem)
				if _, err := e.b.CreateTopic(topic, 1, broker.TopicConfig{}); err != nil {
					t.Fatal(err)
				}
				opts := []kgo.Opt{kgo.ProducerBatchCompression(c.codec), kgo.ProducerBatchMaxBytes(1 << 20), kgo.ProducerLinger(50 * time.Millisecond)}
				if !idem {
					opts = append(opts, kgo.DisableIdempotentWrite())
				}
				produceAll(t, e.client(t, opts...), topic, vals, time.Time{})
				if n := partitionBytes(t, e.b, topic, 0); n > int64(raw)/2 {
					t.Fatalf("%d bytes of %s-compressed JSON take %d bytes on disk, want at most half", raw, name, n)
				}
				var h batchCodecs
				got := consumeCodecs(t, e, topic, len(vals), &h)
				for i, r := range got {
					if string(r.Value) != string(vals[i]) || r.Offset != int64(i) {
						t.Fatalf("record %d: offset %d value %q", i, r.Offset, r.Value)
					}
				}
				if len(h.codecs) != 1 || h.codecs[c.id] == 0 || h.compressed*2 > h.expanded {
					t.Fatalf("fetched batches by codec %v (want only %d), %d compressed bytes for %d", h.codecs, c.id, h.compressed, h.expanded)
				}
			})
		}
	}
}

// TestCompressionTypeTopicRecompresses: on a topic whose compression.type is
// zstd, uncompressed and lz4 batches are stored (and served) as zstd, as Kafka
// recompresses them; records katka writes itself (broker.Produce) into it are
// zstd batches too, and broker.Fetch still reads them all.
func TestCompressionTypeTopicRecompresses(t *testing.T) {
	e := newEnv(t)
	adm := kadm.NewClient(e.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"compression.type": kadm.StringPtr("zstd")}, "cz-topic"); err != nil || r.Err != nil {
		t.Fatalf("create: %v %+v", err, r)
	}
	vals := telemetry(3000, 2)
	raw := 0
	for _, v := range vals {
		raw += len(v)
	}
	produceAll(t, e.client(t, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(50*time.Millisecond)), "cz-topic", vals[:1000], time.Time{})
	produceAll(t, e.client(t, kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.ProducerLinger(50*time.Millisecond)), "cz-topic", vals[1000:2000], time.Time{})
	recs := make([]broker.Record, 1000)
	for i := range recs {
		recs[i] = broker.Record{Value: vals[2000+i]}
	}
	if _, err := e.b.Produce(ctx, "cz-topic", 0, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	if n := partitionBytes(t, e.b, "cz-topic", 0); n > int64(raw)/4 {
		t.Fatalf("%d bytes of JSON take %d bytes on disk in a zstd topic, want at most a quarter", raw, n)
	}
	var h batchCodecs
	got := consumeCodecs(t, e, "cz-topic", len(vals), &h)
	for i, r := range got {
		if string(r.Value) != string(vals[i]) {
			t.Fatalf("record %d: %q", i, r.Value)
		}
	}
	if len(h.codecs) != 1 || h.codecs[4] == 0 {
		t.Fatalf("fetched batches by codec %v, want only zstd (4)", h.codecs)
	}
	// The in-process reader decodes the stored batches.
	res, err := e.b.Fetch(ctx, "cz-topic", 0, 1500, 1<<20, 0)
	if err != nil || len(res.Records) == 0 || res.Records[0].Offset != 1500 || string(res.Records[0].Value) != string(vals[1500]) {
		t.Fatalf("broker.Fetch at 1500: %v, %d records", err, len(res.Records))
	}
}

// TestLogAppendTimeCompressedBatch: on a LogAppendTime topic a zstd batch is
// stored compressed with its timestamp type and max timestamp set to the
// append time (CRC recomputed): the consumer sees LogAppendTime records
// stamped with the append time, in zstd batches.
func TestLogAppendTimeCompressedBatch(t *testing.T) {
	e := newEnv(t)
	adm := kadm.NewClient(e.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")}, "cz-lat"); err != nil || r.Err != nil {
		t.Fatalf("create: %v %+v", err, r)
	}
	vals := telemetry(2000, 3)
	before := time.Now().Add(-time.Millisecond)
	produceAll(t, e.client(t, kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerLinger(50*time.Millisecond)), "cz-lat", vals, time.UnixMilli(1000))
	after := time.Now().Add(time.Millisecond)
	var h batchCodecs
	got := consumeCodecs(t, e, "cz-lat", len(vals), &h)
	for i, r := range got {
		if r.Attrs.TimestampType() != 1 || r.Timestamp.Before(before) || r.Timestamp.After(after) || string(r.Value) != string(vals[i]) {
			t.Fatalf("record %d: timestamp type %d at %v, want LogAppendTime between %v and %v", i, r.Attrs.TimestampType(), r.Timestamp, before, after)
		}
	}
	if len(h.codecs) != 1 || h.codecs[4] == 0 {
		t.Fatalf("fetched batches by codec %v, want only zstd (4)", h.codecs)
	}
}
