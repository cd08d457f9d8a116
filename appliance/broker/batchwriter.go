package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/katka-io/katka/appliance/recordbatch"
	"github.com/katka-io/katka/appliance/storage"
)

// MaxWriterBatchBytes bounds the records (uncompressed) that ProduceBatches
// puts in one record batch: large enough that a compression.type codec sees
// hundreds of telemetry records at once, small enough that a consumer never
// decompresses more than this for one batch.
const MaxWriterBatchBytes = 256 << 10

// ProduceBatches is Produce for katka's own writers (MQTT, sensors): the
// records go in as few record batches as MaxWriterBatchBytes and the topic's
// max.message.bytes allow (Produce cuts batches at 16 KiB, Kafka's batch.size),
// each compressed with the topic's compression.type codec when that makes it
// smaller, all appended in one write and made durable with one fsync as acks
// asks. Timestamps, limits and errors are Produce's. In a cell a partition
// led by another node is written there (SetRouter).
func (b *Broker) ProduceBatches(ctx context.Context, topicName string, partition int32, recs []Record, acks Acks) (int64, error) {
	if base, routed, err := b.route(ctx, topicName, partition, recs, acks); routed {
		return base, err
	}
	return b.produceBatches(ctx, topicName, partition, recs, acks)
}

func (b *Broker) produceBatches(ctx context.Context, topicName string, partition int32, recs []Record, acks Acks) (int64, error) {
	t, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return p.log.EndOffset(), nil
	}
	cfg := t.info.Config
	now := time.Now()
	logAppend := cfg.TimestampType == "LogAppendTime"
	limit := MaxWriterBatchBytes
	if cfg.MaxMessageBytes > 0 {
		limit = int(min(int64(limit), cfg.MaxMessageBytes-storage.BatchHeaderLen))
	}
	codec, _ := storage.CodecByName(cfg.CompressionType)
	var (
		batches      [][]byte
		size, need   int
		from, inSize int
	)
	flush := func(to int) error {
		batch := encodeWriterBatch(recs[from:to], logAppend)
		if codec != 0 {
			z, err := storage.RecompressBatch(batch, codec)
			if err != nil {
				return err
			}
			if len(z) < len(batch) {
				batch = z
			}
		}
		batches = append(batches, batch)
		need += len(batch) + 32
		from, inSize = to, 0
		return nil
	}
	for i := range recs {
		if logAppend || recs[i].Timestamp.IsZero() {
			recs[i].Timestamp = now
		}
		n := len(recs[i].Key) + len(recs[i].Value)
		for _, h := range recs[i].Headers {
			n += len(h.Key) + len(h.Value)
		}
		if max := cfg.MaxMessageBytes; max > 0 && int64(n) > max {
			return 0, fmt.Errorf("produce to %s-%d: %w: %d bytes, limit %d", topicName, partition, ErrRecordTooLarge, n, max)
		}
		size += n
		if i > from && inSize+n+16 > limit {
			if err := flush(i); err != nil {
				return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
			}
		}
		inSize += n + 16
	}
	if err := flush(len(recs)); err != nil {
		return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
	}
	if err := b.makeRoom(t, int64(need)); err != nil {
		return 0, err
	}
	p.roleMu.RLock()
	if err := p.checkLeader(acks); err != nil {
		p.roleMu.RUnlock()
		return 0, err
	}
	base, end, err := p.log.AppendBatchesEpoch(batches, p.leaderEpoch())
	p.roleMu.RUnlock()
	if err != nil {
		if err := p.goneErr(nil); err != nil {
			return 0, err
		}
		b.m.produceError(topicName)
		return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
	}
	b.disk.used.Add(int64(need))
	b.m.recordsIn(topicName, len(recs), size)
	if p.interval {
		p.raise(end)
	}
	if err := b.acknowledge(ctx, p, end, acks); err != nil {
		return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
	}
	return base, nil
}

// encodeWriterBatch encodes recs (timestamps set) as one uncompressed record
// batch v2 with base offset 0 (the log assigns it) and no producer id.
func encodeWriterBatch(recs []Record, logAppend bool) []byte {
	h := recordbatch.Header{
		LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp:  recs[0].Timestamp.UnixMilli(),
		ProducerID:      -1,
		ProducerEpoch:   -1,
		BaseSequence:    -1,
		NumRecords:      int32(len(recs)),
	}
	h.MaxTimestamp = h.FirstTimestamp
	for i := range recs {
		h.MaxTimestamp = max(h.MaxTimestamp, recs[i].Timestamp.UnixMilli())
	}
	if logAppend {
		h.Attributes |= recordbatch.AttrLogAppendTime
	}
	dst := recordbatch.AppendHeader(make([]byte, 0, recordbatch.HeaderLen+len(recs)*64), &h)
	for i := range recs {
		r := &recs[i]
		dst = recordbatch.AppendRecord(dst, int64(i), r.Timestamp.UnixMilli()-h.FirstTimestamp, r.Key, r.Value, r.Headers)
	}
	recordbatch.Seal(dst)
	return dst
}
