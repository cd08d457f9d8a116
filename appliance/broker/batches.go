package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/katka-io/katka/appliance/recordbatch"
	"github.com/katka-io/katka/appliance/storage"
)

// BatchHeader is a stored record batch's header (storage.BatchHeader).
type BatchHeader = storage.BatchHeader

// ParseBatchHeader parses the header of one record batch v2 (see
// storage.ParseBatchHeader); BatchHeaderLen is its size.
func ParseBatchHeader(b []byte) (BatchHeader, error) { return storage.ParseBatchHeader(b) }

// BatchHeaderLen is the size of a record batch v2 header.
const BatchHeaderLen = storage.BatchHeaderLen

// BatchFetch is what FetchBatches returns.
type BatchFetch struct {
	// Batches are stored record batches v2 as a Fetch response carries them;
	// the first may start before the requested offset.
	Batches []byte
	// HighWatermark and LogStartOffset as in FetchResult.
	HighWatermark  int64
	LogStartOffset int64
	// Parts, from FetchBatchParts only, are the batches one by one, slices of
	// pooled buffers (not copies): valid until Release.
	Parts [][]byte
	parts *storage.BatchParts
}

// Held is the memory Parts keep until Release (the read buffers' capacity,
// at least the length of Parts); 0 without Parts.
func (f *BatchFetch) Held() int {
	if f.parts == nil {
		return 0
	}
	return f.parts.Held
}

// More says the read stopped in front of a stored batch that did not fit in
// its maxBytes: the partition has more than the read had room for.
func (f *BatchFetch) More() bool {
	return f.parts != nil && f.parts.More
}

// Release gives the buffers behind Parts back for reuse (FetchBatchParts);
// Parts must not be used after it.
func (f *BatchFetch) Release() {
	f.parts.Release()
	f.parts, f.Parts = nil, nil
}

// AppendBatch appends one record batch v2 to a partition exactly as given
// (compression and producer fields kept; transactional and control batches
// included: this is how Kafka transactions and their markers are written)
// and returns its base offset once it is as durable as acks asks. The batch
// must be well formed with a valid CRC. beforeVisible, if not nil, is called
// with the batch's base offset after the append and before the high
// watermark can cover it, so a caller can record what the batch means (an
// open transaction) before any consumer may read it. On a LogAppendTime
// topic the batch's max timestamp and timestamp type are set to the append
// time (its CRC recomputed), as Kafka does. On a topic whose
// compression.type names a codec the batch is recompressed to it first.
func (b *Broker) AppendBatch(ctx context.Context, topicName string, partition int32, batch []byte, acks Acks, beforeVisible func(base int64)) (int64, error) {
	base, _, err := b.AppendBatchTime(ctx, topicName, partition, batch, acks, beforeVisible)
	return base, err
}

// AppendBatchTime is AppendBatch that also returns the append time it set in
// the batch on a LogAppendTime topic (Unix milliseconds; -1 on other topics),
// which a produce response reports.
func (b *Broker) AppendBatchTime(ctx context.Context, topicName string, partition int32, batch []byte, acks Acks, beforeVisible func(base int64)) (int64, int64, error) {
	base, appendTime, end, err := b.AppendBatchDeferred(ctx, topicName, partition, batch, acks, beforeVisible)
	if err != nil {
		return 0, 0, err
	}
	if err := b.Acknowledge(ctx, topicName, partition, end, acks); err != nil {
		return 0, 0, err
	}
	return base, appendTime, nil
}

// Acknowledge waits until a partition's offsets below end are as durable
// as acks asks (this node's fsync; on a replicated partition's leader with
// acks all, every in-sync replica): the second half of
// AppendBatchDeferred, and the wait for a duplicate batch an idempotent
// producer retried (it is answered once the first copy is acknowledged).
func (b *Broker) Acknowledge(ctx context.Context, topicName string, partition int32, end int64, acks Acks) error {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return err
	}
	if err := b.acknowledge(ctx, p, end, acks); err != nil {
		return fmt.Errorf("append batch to %s-%d: %w", topicName, partition, err)
	}
	return nil
}

// AppendBatchDeferred is AppendBatchTime without the wait for durability:
// it returns once the batch is in the log, with the offset after it, for a
// caller that records the batch (an idempotent producer's sequence) before
// it waits with Acknowledge, so a retry of it arriving meanwhile is known
// as a duplicate.
func (b *Broker) AppendBatchDeferred(ctx context.Context, topicName string, partition int32, batch []byte, acks Acks, beforeVisible func(base int64)) (base, appendTime, end int64, err error) {
	appendTime = -1
	t, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, 0, 0, err
	}
	h, err := storage.ParseBatchHeader(batch)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("append batch to %s-%d: %w", topicName, partition, err)
	}
	if max := t.info.Config.MaxMessageBytes; max > 0 && int64(len(batch)) > max && !h.Control() {
		return 0, 0, 0, fmt.Errorf("append batch to %s-%d: %w: %d bytes, limit %d", topicName, partition, ErrRecordTooLarge, len(batch), max)
	}
	if codec, ok := storage.CodecByName(t.info.Config.CompressionType); ok && !h.Control() && h.Codec() != codec {
		// compression.type names a codec: recompress, as Kafka does.
		if batch, err = storage.RecompressBatch(batch, codec); err != nil {
			return 0, 0, 0, fmt.Errorf("append batch to %s-%d: %w", topicName, partition, err)
		}
	}
	if t.info.Config.TimestampType == "LogAppendTime" && !h.Control() {
		batch = append([]byte(nil), batch...)
		attrs := binary.BigEndian.Uint16(batch[21:]) | recordbatch.AttrLogAppendTime
		binary.BigEndian.PutUint16(batch[21:], attrs)
		appendTime = time.Now().UnixMilli()
		binary.BigEndian.PutUint64(batch[35:], uint64(appendTime))
		recordbatch.Seal(batch)
	}
	need := int64(len(batch) + 32)
	if err := b.makeRoom(t, need); err != nil {
		return 0, 0, 0, err
	}
	p.roleMu.RLock()
	if err := p.checkLeader(acks); err != nil {
		p.roleMu.RUnlock()
		return 0, 0, 0, err
	}
	base, end, err = p.log.AppendBatchesEpoch([][]byte{batch}, p.leaderEpoch())
	p.roleMu.RUnlock()
	if err != nil {
		if err := p.goneErr(nil); err != nil {
			return 0, 0, 0, err
		}
		b.m.produceError(topicName)
		return 0, 0, 0, fmt.Errorf("append batch to %s-%d: %w", topicName, partition, err)
	}
	b.disk.used.Add(need)
	if beforeVisible != nil {
		beforeVisible(base)
	}
	if !h.Control() {
		b.m.recordsIn(topicName, int(h.NumRecords), len(batch))
	}
	if p.interval {
		p.raise(end)
	}
	return base, appendTime, end, nil
}

// FetchBatches returns the stored record batches from the one holding offset
// up to limit (capped at the high watermark; a batch is returned whole, so the
// last may end past limit only if it started below it: callers pass a limit
// at a batch boundary, such as the last stable offset), as they are stored,
// at most about maxBytes but always one batch if any. It does not wait. An
// offset outside the log gives ErrOffsetOutOfRange.
func (b *Broker) FetchBatches(ctx context.Context, topicName string, partition int32, offset, limit int64, maxBytes int) (BatchFetch, error) {
	res, err := b.FetchBatchParts(ctx, topicName, partition, offset, limit, maxBytes)
	if err != nil || res.parts == nil {
		return res, err
	}
	res.Batches = make([]byte, 0, res.parts.Len)
	for _, b := range res.Parts {
		res.Batches = append(res.Batches, b...)
	}
	res.Release()
	return res, nil
}

// FetchBatchParts is FetchBatches without copying the batches into one
// slice: Parts are the stored batches one by one, read from the segment
// files straight into pooled buffers (every entry's CRC-32C checked), for a
// caller that writes them to a socket as they are. The caller must Release
// the result (a result without Parts needs none, but Release is harmless).
func (b *Broker) FetchBatchParts(ctx context.Context, topicName string, partition int32, offset, limit int64, maxBytes int) (BatchFetch, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return BatchFetch{}, err
	}
	for attempt := 0; ; attempt++ {
		if err := p.goneErr(nil); err != nil {
			return BatchFetch{}, err
		}
		hw := p.hw.Load()
		start := p.log.StartOffset()
		res := BatchFetch{HighWatermark: hw, LogStartOffset: start}
		if offset < start || offset > p.fetchable(hw) {
			return res, fmt.Errorf("fetch %s-%d at %d: %w (log start %d, high watermark %d)", topicName, partition, offset, ErrOffsetOutOfRange, start, hw)
		}
		limit = min(limit, hw)
		if offset >= limit {
			return res, nil
		}
		bp, err := p.log.ReadBatchParts(offset, limit, maxBytes)
		if err != nil {
			if errors.Is(err, storage.ErrOutOfRange) && attempt < 3 { // retention moved the start meanwhile
				continue
			}
			if err := p.goneErr(nil); err != nil {
				return BatchFetch{}, err
			}
			if errors.Is(err, ErrCorrupt) {
				b.m.corruptRead(topicName)
			}
			return res, fmt.Errorf("fetch %s-%d: %w", topicName, partition, err)
		}
		res.Parts, res.parts = bp.Parts, bp
		return res, nil
	}
}
