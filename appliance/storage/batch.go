package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// Kafka's record batch v2 (magic 2) is the unit the log stores; its layout,
// header, CRC, codecs and record encoding are appliance/recordbatch's, shared
// with the Kafka protocol layer.

// BatchHeaderLen is the size of a record batch v2 header.
const BatchHeaderLen = recordbatch.HeaderLen

// BatchHeader is the fixed 61-byte header of a record batch v2.
type BatchHeader = recordbatch.Header

// ParseBatchHeader parses and checks the header of the one record batch b
// holds: magic 2, a length that covers exactly b, a record count that fits the
// offset span. It does not check the CRC (CheckBatchCRC does).
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	h, err := recordbatch.ParseHeader(b)
	if err != nil {
		return BatchHeader{}, err
	}
	if err := h.CheckCounts(); err != nil {
		return BatchHeader{}, err
	}
	return h, nil
}

// ParseBatchEpoch returns the partitionLeaderEpoch field of a record batch
// (bytes 12-16 of its header), -1 if b is too short to hold one. It checks
// nothing else: ParseBatchHeader gives the same value as LeaderEpoch.
func ParseBatchEpoch(b []byte) int32 {
	if len(b) < 16 {
		return -1
	}
	return int32(binary.BigEndian.Uint32(b[12:]))
}

// CheckBatchCRC reports whether the batch's CRC-32C matches its bytes.
func CheckBatchCRC(b []byte) bool { return recordbatch.CheckCRC(b) }

// CodecByName returns the record batch codec of a Kafka compression.type
// value (recordbatch.CodecByName).
func CodecByName(name string) (codec int, ok bool) { return recordbatch.CodecByName(name) }

// batchRecord is one record of a batch: decoded, and its encoding (length
// prefix included) for a rewrite.
type batchRecord struct {
	rec recordbatch.Record
	raw []byte
}

// maxDecodedBatch bounds what one stored batch may decompress to. The Kafka
// layer bounds produced batches before they reach the log, and every entry's
// CRC-32C is checked before decoding, so this only keeps a damaged or hostile
// in-process caller from sizing an allocation.
const maxDecodedBatch = 256 << 20

// batchRecords decompresses a checked batch and decodes its records, each
// with an offset delta inside the batch's span.
func batchRecords(b []byte, h *BatchHeader) ([]batchRecord, error) {
	raw, err := recordbatch.DecompressRecords(h, b[BatchHeaderLen:], maxDecodedBatch)
	if err != nil {
		return nil, err
	}
	// DecompressRecords proved that exactly NumRecords records fill raw, so
	// this slice is bounded by the bytes decoded.
	recs := make([]batchRecord, 0, h.NumRecords)
	for p := raw; len(p) > 0; {
		r, n, err := recordbatch.DecodeRecord(p)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", len(recs), err)
		}
		if r.OffsetDelta < 0 || r.OffsetDelta > int64(h.LastOffsetDelta) {
			return nil, fmt.Errorf("record %d: bad offset delta %d", len(recs), r.OffsetDelta)
		}
		recs = append(recs, batchRecord{rec: r, raw: p[:n]})
		p = p[n:]
	}
	return recs, nil
}

// decodeBatch appends to dst the records of a checked batch whose offsets
// lie in [from, to). Keys, values and headers alias one buffer owned by the
// records (a copy of b, or the decompressed records). Control batches hold no
// user records and give none.
func decodeBatch(dst []Record, b []byte, from, to int64) ([]Record, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return dst, err
	}
	if h.Control() || h.NumRecords == 0 || h.NextOffset() <= from || h.BaseOffset >= to {
		return dst, nil
	}
	if h.Codec() == recordbatch.CodecNone {
		b = bytes.Clone(b) // records alias our own copy, never the caller's buffer
	}
	recs, err := batchRecords(b, &h)
	if err != nil {
		return dst, err
	}
	for _, br := range recs {
		if off := h.BaseOffset + br.rec.OffsetDelta; off >= from && off < to {
			dst = append(dst, kafkaRecord(&br.rec, &h))
		}
	}
	return dst, nil
}

// kafkaRecord is a batch's record as a Record: its offset and timestamp
// (the batch's max timestamp on LogAppendTime batches). The producer fields
// of an idempotent batch go on its record at the last offset delta, where the
// per-record format kept them.
func kafkaRecord(r *recordbatch.Record, h *BatchHeader) Record {
	ts := h.FirstTimestamp + r.TimestampDelta
	if h.Attributes&recordbatch.AttrLogAppendTime != 0 {
		ts = h.MaxTimestamp
	}
	rec := Record{Offset: h.BaseOffset + r.OffsetDelta, Timestamp: time.UnixMilli(ts), Key: r.Key, Value: r.Value, Headers: r.Headers}
	if r.OffsetDelta == int64(h.LastOffsetDelta) && h.ProducerID >= 0 && h.BaseSequence >= 0 {
		rec.Producer = &ProducerBatch{ID: h.ProducerID, Epoch: h.ProducerEpoch, FirstSeq: h.BaseSequence,
			LastSeq: int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (1 << 31))}
	}
	return rec
}

// BatchFormat says how Append encodes the batches it writes.
type BatchFormat struct {
	// Codec compresses the records of each batch (CodecByName; 0 none); a
	// batch it would not make smaller is written uncompressed.
	Codec int
	// LogAppendTime sets the batches' timestamp type to LogAppendTime (the
	// records' timestamps are then the append time, set by the caller).
	LogAppendTime bool
	// LeaderEpoch is written into each batch's partitionLeaderEpoch field
	// (not covered by the batch CRC): the leader epoch the records were
	// appended in, for replication (0 outside a cell).
	LeaderEpoch int32
}

// withRecords returns a copy of the batch header bytes hdr followed by
// records, with codec in its attributes, count records, length and CRC set.
func withRecords(hdr []byte, records []byte, codec int, count int32) []byte {
	out := append(make([]byte, 0, BatchHeaderLen+len(records)), hdr[:BatchHeaderLen]...)
	out = append(out, records...)
	attrs := binary.BigEndian.Uint16(out[21:])&^recordbatch.AttrCodecMask | uint16(codec)
	binary.BigEndian.PutUint16(out[21:], attrs)
	binary.BigEndian.PutUint32(out[57:], uint32(count))
	recordbatch.Seal(out)
	return out
}

// RecompressBatch returns the checked record batch b with its records
// compressed with codec instead of the producer's (what Kafka does on a topic
// whose compression.type names a codec): offsets, timestamps, producer fields
// and the other attributes kept, the CRC recomputed. A batch already in codec,
// a control batch and an empty batch are returned as they are.
func RecompressBatch(b []byte, codec int) ([]byte, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Codec() == codec || h.Control() || h.NumRecords == 0 {
		return b, nil
	}
	raw, err := recordbatch.DecompressRecords(&h, b[BatchHeaderLen:], maxDecodedBatch)
	if err != nil {
		return nil, fmt.Errorf("recompress batch: %w", err)
	}
	body := raw
	if codec != recordbatch.CodecNone {
		if body, err = recordbatch.Compress(codec, raw); err != nil {
			return nil, fmt.Errorf("recompress batch: %w", err)
		}
	}
	return withRecords(b, body, codec, h.NumRecords), nil
}

// encodeBatch encodes recs as one record batch v2 with base offset
// recs[0].Offset and offset deltas from their offsets (increasing),
// compressed and typed as f says. prod, if set, gives the producer id, epoch
// and base sequence.
func encodeBatch(dst []byte, recs []Record, prod *ProducerBatch, f BatchFormat) []byte {
	start := len(dst)
	h := BatchHeader{BaseOffset: recs[0].Offset, LastOffsetDelta: int32(recs[len(recs)-1].Offset - recs[0].Offset),
		FirstTimestamp: recTS(&recs[0]), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, NumRecords: int32(len(recs))}
	h.MaxTimestamp = h.FirstTimestamp
	for i := range recs {
		h.MaxTimestamp = max(h.MaxTimestamp, recTS(&recs[i]))
	}
	if prod != nil {
		h.ProducerID, h.ProducerEpoch, h.BaseSequence = prod.ID, prod.Epoch, prod.FirstSeq
	}
	if f.LogAppendTime {
		h.Attributes |= recordbatch.AttrLogAppendTime
	}
	h.LeaderEpoch = f.LeaderEpoch
	dst = recordbatch.AppendHeader(dst, &h)
	for i := range recs {
		r := &recs[i]
		dst = recordbatch.AppendRecord(dst, r.Offset-h.BaseOffset, recTS(r)-h.FirstTimestamp, r.Key, r.Value, r.Headers)
	}
	if f.Codec != recordbatch.CodecNone {
		// Compressing records this package just encoded cannot fail for a
		// known codec; an unknown one leaves the batch uncompressed, and so
		// does a codec that does not make it smaller (a batch of one short
		// record: zstd's frame costs more than it saves).
		if body, err := recordbatch.Compress(f.Codec, dst[start+BatchHeaderLen:]); err == nil && len(body) < len(dst)-start-BatchHeaderLen {
			dst = append(dst[:start+BatchHeaderLen], body...)
			binary.BigEndian.PutUint16(dst[start+21:], uint16(h.Attributes)|uint16(f.Codec))
		}
	}
	recordbatch.Seal(dst[start:])
	return dst
}

// recTS is a record's timestamp in Unix milliseconds; the zero time is 0, as
// the per-record format stored it.
func recTS(r *Record) int64 {
	if r.Timestamp.IsZero() {
		return 0
	}
	return r.Timestamp.UnixMilli()
}

// kafkaRecordLen is the encoded size of r in a batch (length prefix included),
// bounded above for the deltas.
func kafkaRecordLen(r *Record) int { return recordbatch.RecordLenBound(r.Key, r.Value, r.Headers) }

// rebuildBatch returns a copy of the checked batch b holding only the records
// keep accepts, with their offset and timestamp deltas, the header's offset
// span, timestamps and producer fields kept, compressed again with the
// batch's codec. It reports how many records were removed. A control batch
// (a transaction marker) is never rebuilt: it is kept as it is.
func rebuildBatch(b []byte, keep func(r *Record) bool) ([]byte, int, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return nil, 0, err
	}
	if h.Control() || h.NumRecords == 0 {
		return nil, 0, nil
	}
	recs, err := batchRecords(b, &h)
	if err != nil {
		return nil, 0, err
	}
	var body []byte
	kept := 0
	for i := range recs {
		if r := kafkaRecord(&recs[i].rec, &h); keep(&r) {
			body = append(body, recs[i].raw...)
			kept++
		}
	}
	if kept == len(recs) {
		return nil, 0, nil
	}
	codec := h.Codec()
	if kept > 0 && codec != recordbatch.CodecNone {
		if body, err = recordbatch.Compress(codec, body); err != nil {
			return nil, 0, err
		}
	}
	if kept == 0 {
		codec = recordbatch.CodecNone // an empty batch keeps the offset span and producer fields (Kafka does the same)
		body = nil
	}
	return withRecords(b, body, codec, int32(kept)), len(recs) - kept, nil
}
