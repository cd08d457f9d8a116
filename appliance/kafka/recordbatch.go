package kafka

import (
	"errors"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/recordbatch"
)

// Produced record batches (RecordBatch v2) are parsed and decoded by
// appliance/recordbatch, the decoder the storage uses too; this file adds
// what a produce request needs on top: Kafka's error codes, the stricter
// checks of a batch a client sends, and the decoded-size limit error.

// batchHeaderLen is the size of a record batch v2 header.
const batchHeaderLen = recordbatch.HeaderLen

// batch is one parsed v2 record batch; records are still encoded (and maybe
// compressed).
type batch struct {
	recordbatch.Header
	records []byte // the bytes after the header
	size    int    // whole batch size in bytes
}

// parseBatch parses the record data of one produce partition, which must hold
// exactly one v2 batch whose CRC-32C is correct. Errors carry Kafka codes.
func parseBatch(data []byte) (*batch, error) {
	h, err := recordbatch.ParseHeader(data)
	switch {
	case errors.Is(err, recordbatch.ErrMagic):
		return nil, codeErrorf(errInvalidRecord, "%v", err)
	case errors.Is(err, recordbatch.ErrTrailing):
		return nil, codeErrorf(errInvalidRecord, "produce requests must carry exactly one record batch per partition")
	case err != nil:
		return nil, codeErrorf(errCorruptMessage, "%v", err)
	}
	if !recordbatch.CheckCRC(data) {
		return nil, codeErrorf(errCorruptMessage, "record batch CRC-32C mismatch")
	}
	if h.NumRecords <= 0 {
		return nil, codeErrorf(errInvalidRecord, "record batch holds %d records", h.NumRecords)
	}
	if h.LastOffsetDelta != h.NumRecords-1 {
		return nil, codeErrorf(errInvalidRecord, "record batch last offset delta %d does not match its %d records", h.LastOffsetDelta, h.NumRecords)
	}
	if h.Control() {
		return nil, codeErrorf(errInvalidRecord, "control batches cannot be produced")
	}
	return &batch{Header: h, records: data[batchHeaderLen:], size: len(data)}, nil
}

// batchTooLargeError is the error of a batch whose records decompress to more
// than the limit allowed. It answers MESSAGE_TOO_LARGE (errorCode finds the
// code it wraps); the caller, which knows the client, counts it with
// broker.LimitRejected(broker.LimitRecordBatch, ...).
type batchTooLargeError struct {
	Codec string // compression codec name
	Limit int    // bytes the records could have taken
	err   error  // the codeError answered
}

func (e *batchTooLargeError) Error() string { return e.err.Error() }

// Unwrap returns the codeError carrying MESSAGE_TOO_LARGE.
func (e *batchTooLargeError) Unwrap() error { return e.err }

// validateRecords checks the batch's records as decodeRecords does (limit
// bounds the decompressed size, a batch over it fails with a
// *batchTooLargeError) without keeping them: produce stores the batch as
// sent, so only the checks are needed.
func (b *batch) validateRecords(limit int) error {
	return b.eachRecord(limit, nil)
}

// eachRecord decompresses the batch's records (at most limit bytes, checked
// while decompressing: memory grows with the bytes actually decoded, never
// with the record count the header claims), decodes each, checks that the
// offset deltas are consecutive from 0, and calls fn (if not nil) with each.
// Errors carry Kafka codes. The record is passed by value: a pointer to it
// would make every record of every produce a heap allocation (a func value
// may keep what it is given), 88 bytes of garbage per record.
func (b *batch) eachRecord(limit int, fn func(i int, r recordbatch.Record)) error {
	raw, err := recordbatch.DecompressRecords(&b.Header, b.records, limit)
	if err != nil {
		if errors.Is(err, recordbatch.ErrTooLarge) {
			name := recordbatch.CodecNames[b.Codec()]
			return &batchTooLargeError{Codec: name, Limit: limit,
				err: codeErrorf(errMessageTooLarge, "record batch (%s) decompresses to more than %d bytes", name, limit)}
		}
		return codeErrorf(errCorruptMessage, "record batch: %v", err)
	}
	for i := range int(b.NumRecords) {
		r, n, err := recordbatch.DecodeRecord(raw)
		if err != nil {
			return codeErrorf(errCorruptMessage, "record %d: %v", i, err)
		}
		if r.OffsetDelta != int64(i) {
			return codeErrorf(errInvalidRecord, "record %d has offset delta %d: offsets in a batch must be consecutive", i, r.OffsetDelta)
		}
		if fn != nil {
			fn(i, r)
		}
		raw = raw[n:]
	}
	if len(raw) != 0 {
		return codeErrorf(errCorruptMessage, "record batch has %d bytes after its %d records", len(raw), b.NumRecords)
	}
	return nil
}

// decodeRecords decompresses the batch and decodes its records (as
// eachRecord checks them). Keys, values and header values alias the
// decompressed buffer (or the request). A batch over limit fails with a
// *batchTooLargeError.
func (b *batch) decodeRecords(limit int) ([]broker.Record, error) {
	var recs []broker.Record
	err := b.eachRecord(limit, func(i int, r recordbatch.Record) {
		if recs == nil {
			// DecompressRecords proved that exactly NumRecords records of
			// at least 7 bytes each fill the bytes decoded, so this slice is
			// bounded by them.
			recs = make([]broker.Record, b.NumRecords)
		}
		recs[i] = broker.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}
		if ts := b.FirstTimestamp + r.TimestampDelta; b.FirstTimestamp >= 0 && ts >= 0 {
			recs[i].Timestamp = time.UnixMilli(ts)
		}
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}
