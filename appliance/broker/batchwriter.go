package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

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
// asks. Timestamps, limits and errors are Produce's.
func (b *Broker) ProduceBatches(ctx context.Context, topicName string, partition int32, recs []Record, acks Acks) (int64, error) {
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
	base, end, err := p.log.AppendBatches(batches)
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
		p.advance(end)
		return base, nil
	}
	if acks == AcksNone {
		go p.syncTo(end)
		return base, nil
	}
	if err := p.syncTo(end); err != nil {
		if err := p.goneErr(nil); err != nil {
			return 0, err
		}
		b.m.produceError(topicName)
		return 0, fmt.Errorf("produce to %s-%d: %w", topicName, partition, err)
	}
	return base, nil
}

// encodeWriterBatch encodes recs (timestamps set) as one uncompressed record
// batch v2 with base offset 0 (the log assigns it) and no producer id.
func encodeWriterBatch(recs []Record, logAppend bool) []byte {
	first := recs[0].Timestamp.UnixMilli()
	maxTS := first
	for i := range recs {
		maxTS = max(maxTS, recs[i].Timestamp.UnixMilli())
	}
	dst := make([]byte, 0, storage.BatchHeaderLen+len(recs)*64)
	dst = binary.BigEndian.AppendUint64(dst, 0) // base offset
	dst = append(dst, 0, 0, 0, 0)               // length, set below
	dst = binary.BigEndian.AppendUint32(dst, 0) // partition leader epoch
	dst = append(dst, 2, 0, 0, 0, 0)            // magic; crc set below
	attrs := uint16(0)
	if logAppend {
		attrs |= 0x08
	}
	dst = binary.BigEndian.AppendUint16(dst, attrs)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)-1))
	dst = binary.BigEndian.AppendUint64(dst, uint64(first))
	dst = binary.BigEndian.AppendUint64(dst, uint64(maxTS))
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(0)) // producer id -1
	dst = binary.BigEndian.AppendUint16(dst, ^uint16(0)) // producer epoch -1
	dst = binary.BigEndian.AppendUint32(dst, ^uint32(0)) // base sequence -1
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	var rec []byte
	for i := range recs {
		r := &recs[i]
		rec = append(rec[:0], 0) // attributes
		rec = binary.AppendVarint(rec, r.Timestamp.UnixMilli()-first)
		rec = binary.AppendVarint(rec, int64(i))
		rec = appendNullable(rec, r.Key)
		rec = appendNullable(rec, r.Value)
		rec = binary.AppendVarint(rec, int64(len(r.Headers)))
		for _, h := range r.Headers {
			rec = binary.AppendVarint(rec, int64(len(h.Key)))
			rec = append(rec, h.Key...)
			rec = appendNullable(rec, h.Value)
		}
		dst = binary.AppendVarint(dst, int64(len(rec)))
		dst = append(dst, rec...)
	}
	binary.BigEndian.PutUint32(dst[8:], uint32(len(dst)-12))
	binary.BigEndian.PutUint32(dst[17:], crc32.Checksum(dst[21:], castagnoliTable))
	return dst
}

// appendNullable appends a Kafka varint-length byte string, -1 for nil.
func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}
