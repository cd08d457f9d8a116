package kafka

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// Record batch v2 layout (big endian), as Kafka writes it:
//
//	0  int64  base offset
//	8  int32  batch length (bytes after this field)
//	12 int32  partition leader epoch
//	16 int8   magic (2)
//	17 uint32 CRC-32C of bytes [21:]
//	21 int16  attributes: codec (bits 0-2), timestamp type (3), transactional (4), control (5)
//	23 int32  last offset delta
//	27 int64  first timestamp
//	35 int64  max timestamp
//	43 int64  producer id
//	51 int16  producer epoch
//	53 int32  base sequence
//	57 int32  record count
//	61        records
const batchHeaderLen = 61

// Batch attribute bits.
const (
	attrCodecMask     = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batch is one parsed v2 record batch; records are still encoded (and maybe
// compressed).
type batch struct {
	baseOffset      int64
	leaderEpoch     int32
	attrs           int16
	lastOffsetDelta int32
	firstTimestamp  int64
	maxTimestamp    int64
	producerID      int64
	producerEpoch   int16
	baseSequence    int32
	numRecords      int32
	records         []byte
	size            int // whole batch size in bytes
}

// parseBatch parses the record data of one produce partition, which must hold
// exactly one v2 batch whose CRC-32C is correct. Errors carry Kafka codes.
func parseBatch(data []byte) (*batch, error) {
	if len(data) < batchHeaderLen {
		return nil, codeErrorf(errCorruptMessage, "record data of %d bytes is shorter than a record batch header", len(data))
	}
	if magic := int8(data[16]); magic != 2 {
		return nil, codeErrorf(errInvalidRecord, "record batch magic %d: only v2 (magic 2) is supported", magic)
	}
	length := int32(binary.BigEndian.Uint32(data[8:]))
	if length < batchHeaderLen-12 || int64(length)+12 > int64(len(data)) {
		return nil, codeErrorf(errCorruptMessage, "record batch length %d does not match the %d bytes sent", length, len(data))
	}
	if int(length)+12 != len(data) {
		return nil, codeErrorf(errInvalidRecord, "produce requests must carry exactly one record batch per partition")
	}
	if crc := crc32.Checksum(data[21:], castagnoli); crc != binary.BigEndian.Uint32(data[17:]) {
		return nil, codeErrorf(errCorruptMessage, "record batch CRC-32C mismatch")
	}
	b := &batch{
		baseOffset:      int64(binary.BigEndian.Uint64(data[0:])),
		leaderEpoch:     int32(binary.BigEndian.Uint32(data[12:])),
		attrs:           int16(binary.BigEndian.Uint16(data[21:])),
		lastOffsetDelta: int32(binary.BigEndian.Uint32(data[23:])),
		firstTimestamp:  int64(binary.BigEndian.Uint64(data[27:])),
		maxTimestamp:    int64(binary.BigEndian.Uint64(data[35:])),
		producerID:      int64(binary.BigEndian.Uint64(data[43:])),
		producerEpoch:   int16(binary.BigEndian.Uint16(data[51:])),
		baseSequence:    int32(binary.BigEndian.Uint32(data[53:])),
		numRecords:      int32(binary.BigEndian.Uint32(data[57:])),
		records:         data[batchHeaderLen:],
		size:            len(data),
	}
	if b.numRecords <= 0 {
		return nil, codeErrorf(errInvalidRecord, "record batch holds %d records", b.numRecords)
	}
	if b.lastOffsetDelta != b.numRecords-1 {
		return nil, codeErrorf(errInvalidRecord, "record batch last offset delta %d does not match its %d records", b.lastOffsetDelta, b.numRecords)
	}
	if b.attrs&attrControl != 0 {
		return nil, codeErrorf(errInvalidRecord, "control batches cannot be produced")
	}
	return b, nil
}

func (b *batch) codec() int { return int(b.attrs & attrCodecMask) }

// lastSequence is the sequence number of the batch's last record.
func (b *batch) lastSequence() int32 {
	return int32((int64(b.baseSequence) + int64(b.numRecords) - 1) % (1 << 31))
}

// minRecordBody is the smallest record body (after its length prefix):
// attributes, timestamp delta, offset delta, key length, value length and
// header count take at least one byte each.
const minRecordBody = 6

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

var codecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd", "codec-5", "codec-6", "codec-7"}

// recordFraming follows the length prefixes of a batch's records as the
// decompressed bytes arrive, so a batch whose records cannot be what its
// header claims fails at the first bad record, and the record slice is sized
// only once the bytes have proved the records are there.
type recordFraming struct {
	want  int32 // records the batch header claims
	count int32 // complete records seen
	pos   int   // start of the first record not yet seen
}

// advance steps over the complete records in raw[f.pos:]; final says raw is
// all there is.
func (f *recordFraming) advance(raw []byte, final bool) error {
	for f.pos < len(raw) {
		length, n := binary.Varint(raw[f.pos:])
		if n == 0 {
			break // length prefix cut by the chunk end
		}
		if n < 0 || length < minRecordBody {
			return codeErrorf(errCorruptMessage, "record %d: bad length", f.count)
		}
		if f.count >= f.want {
			return codeErrorf(errCorruptMessage, "record batch has bytes after its %d records", f.want)
		}
		if length > int64(len(raw)-f.pos-n) {
			break // record cut by the chunk end
		}
		f.pos += n + int(length)
		f.count++
	}
	if final && (f.pos != len(raw) || f.count != f.want) {
		if f.pos != len(raw) {
			return codeErrorf(errCorruptMessage, "record %d: bad length", f.count)
		}
		return codeErrorf(errCorruptMessage, "record batch claims %d records but holds %d", f.want, f.count)
	}
	return nil
}

// validateRecords checks the batch's records as decodeRecords does (limit
// bounds the decompressed size, a batch over it fails with a
// *batchTooLargeError) without keeping them: produce stores the batch as
// sent, so only the checks are needed.
func (b *batch) validateRecords(limit int) error {
	raw, err := b.decompressed(limit)
	if err != nil {
		return err
	}
	for i := range b.numRecords {
		_, n, err := decodeRecord(raw, b.firstTimestamp, i)
		if err != nil {
			return err
		}
		raw = raw[n:]
	}
	if len(raw) != 0 {
		return codeErrorf(errCorruptMessage, "record batch has %d bytes after its %d records", len(raw), b.numRecords)
	}
	return nil
}

// decompressed returns the batch's records decompressed, their framing
// checked against the record count (see decodeRecords).
func (b *batch) decompressed(limit int) ([]byte, error) {
	framing := recordFraming{want: b.numRecords}
	raw, err := decompress(b.codec(), b.records, limit, framing.advance)
	if err != nil {
		var ce *codeError
		switch {
		case errors.Is(err, errTooLarge):
			name := codecNames[b.codec()]
			return nil, &batchTooLargeError{Codec: name, Limit: limit,
				err: codeErrorf(errMessageTooLarge, "record batch (%s) decompresses to more than %d bytes", name, limit)}
		case errors.As(err, &ce):
			return nil, err
		}
		return nil, codeErrorf(errCorruptMessage, "record batch: %v", err)
	}
	return raw, nil
}

// decodeRecords decompresses the batch and decodes its records. limit bounds
// the decompressed size (produce passes max_request_bytes) and is checked while
// decompressing; memory grows with the bytes actually decoded, never with the
// record count the header claims. Keys, values and header values alias the
// decompressed buffer (or the request). A batch over limit fails with a
// *batchTooLargeError.
func (b *batch) decodeRecords(limit int) ([]broker.Record, error) {
	raw, err := b.decompressed(limit)
	if err != nil {
		return nil, err
	}
	// framing proved that exactly numRecords records of at least 7 bytes
	// each fill raw, so this slice is bounded by the bytes decoded.
	recs := make([]broker.Record, b.numRecords)
	for i := range recs {
		var n int
		recs[i], n, err = decodeRecord(raw, b.firstTimestamp, int32(i))
		if err != nil {
			return nil, err
		}
		raw = raw[n:]
	}
	if len(raw) != 0 {
		return nil, codeErrorf(errCorruptMessage, "record batch has %d bytes after its %d records", len(raw), b.numRecords)
	}
	return recs, nil
}

// reader decodes Kafka's zig-zag varints and length-prefixed fields, failing
// (never panicking) on short or invalid input.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) varint() int64 {
	if r.bad {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int8() int8 {
	if r.bad || len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := int8(r.b[0])
	r.b = r.b[1:]
	return v
}

// bytes reads a varint length and that many bytes; -1 is null.
func (r *reader) bytes() []byte {
	n := r.varint()
	if r.bad || n == -1 {
		return nil
	}
	if n < -1 || n > int64(len(r.b)) {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// decodeRecord decodes one record from the start of raw and returns it with
// the number of bytes it took.
func decodeRecord(raw []byte, firstTimestamp int64, want int32) (broker.Record, int, error) {
	r := reader{b: raw}
	length := r.varint()
	if r.bad || length < 0 || length > int64(len(r.b)) {
		return broker.Record{}, 0, codeErrorf(errCorruptMessage, "record %d: bad length", want)
	}
	total := len(raw) - len(r.b) + int(length)
	r.b = r.b[:length]
	r.int8() // attributes, unused
	tsDelta := r.varint()
	offDelta := r.varint()
	key := r.bytes()
	value := r.bytes()
	nh := r.varint()
	if r.bad || nh < 0 || nh > int64(len(r.b)) {
		return broker.Record{}, 0, codeErrorf(errCorruptMessage, "record %d: malformed", want)
	}
	var headers []broker.Header
	if nh > 0 {
		headers = make([]broker.Header, nh)
		for i := range headers {
			k := r.bytes()
			if k == nil && !r.bad {
				r.bad = true // header keys are never null
			}
			headers[i] = broker.Header{Key: string(k), Value: r.bytes()}
		}
	}
	if r.bad || len(r.b) != 0 {
		return broker.Record{}, 0, codeErrorf(errCorruptMessage, "record %d: malformed", want)
	}
	if offDelta != int64(want) {
		return broker.Record{}, 0, codeErrorf(errInvalidRecord, "record %d has offset delta %d: offsets in a batch must be consecutive", want, offDelta)
	}
	rec := broker.Record{Key: key, Value: value, Headers: headers}
	if ts := firstTimestamp + tsDelta; firstTimestamp >= 0 && ts >= 0 {
		rec.Timestamp = time.UnixMilli(ts)
	}
	return rec, total, nil
}

// appendBatches encodes recs (consecutive offsets) as uncompressed v2 record
// batches. On LogAppendTime topics a new batch starts whenever the append
// time changes, since a client applies a batch's max timestamp to all of its
// records.
func appendBatches(dst []byte, recs []broker.Record, logAppendTime bool) []byte {
	if need := batchesSizeBound(recs, logAppendTime); cap(dst)-len(dst) < need {
		dst = append(make([]byte, 0, len(dst)+need), dst...)
	}
	for len(recs) > 0 {
		n := len(recs)
		if logAppendTime {
			for i := 1; i < len(recs); i++ {
				if !recs[i].Timestamp.Equal(recs[0].Timestamp) {
					n = i
					break
				}
			}
		}
		dst = appendBatch(dst, recs[:n], logAppendTime)
		recs = recs[n:]
	}
	return dst
}

// batchesSizeBound is an upper bound of appendBatches' output for recs, so the
// response buffer is allocated once instead of growing by copying (the profile
// of fetch showed that growth as its largest CPU cost). It counts the key,
// value and header bytes exactly and bounds each varint by the spread of
// offsets and timestamps in recs.
func batchesSizeBound(recs []broker.Record, logAppendTime bool) int {
	if len(recs) == 0 {
		return 0
	}
	const perBatch = 61
	lo, hi := recs[0].Timestamp.UnixMilli(), recs[0].Timestamp.UnixMilli()
	batches := 1
	for i := 1; i < len(recs); i++ {
		ts := recs[i].Timestamp.UnixMilli()
		lo, hi = min(lo, ts), max(hi, ts)
		if logAppendTime && !recs[i].Timestamp.Equal(recs[i-1].Timestamp) {
			batches++ // a new batch starts here
		}
	}
	fixed := 5 + 1 + max(varintLen(hi-lo), varintLen(lo-hi)) + varintLen(recs[len(recs)-1].Offset-recs[0].Offset)
	n := batches * perBatch
	for i := range recs {
		n += fixed + bytesLen(recs[i].Key) + bytesLen(recs[i].Value) + varintLen(int64(len(recs[i].Headers)))
		for _, h := range recs[i].Headers {
			n += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
		}
	}
	return n
}

// appendBatch encodes recs as one uncompressed v2 record batch.
func appendBatch(dst []byte, recs []broker.Record, logAppendTime bool) []byte {
	start := len(dst)
	base := recs[0].Offset
	first := recs[0].Timestamp.UnixMilli()
	maxTS := first
	for i := range recs {
		maxTS = max(maxTS, recs[i].Timestamp.UnixMilli())
	}
	var attrs int16
	if logAppendTime {
		attrs |= attrLogAppendTime
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(base))
	dst = append(dst, 0, 0, 0, 0) // length, set below
	dst = binary.BigEndian.AppendUint32(dst, 0)
	dst = append(dst, 2)
	dst = append(dst, 0, 0, 0, 0) // crc, set below
	dst = binary.BigEndian.AppendUint16(dst, uint16(attrs))
	dst = binary.BigEndian.AppendUint32(dst, uint32(int32(recs[len(recs)-1].Offset-base)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(first))
	dst = binary.BigEndian.AppendUint64(dst, uint64(maxTS))
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(0)) // producer id -1
	dst = binary.BigEndian.AppendUint16(dst, ^uint16(0)) // producer epoch -1
	dst = binary.BigEndian.AppendUint32(dst, ^uint32(0)) // base sequence -1
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	for i := range recs {
		dst = appendRecord(dst, &recs[i], base, first)
	}
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[start+17:], crc32.Checksum(dst[start+21:], castagnoli))
	return dst
}

func varintLen(v int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutVarint(tmp[:], v)
}

func bytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

func appendRecord(dst []byte, r *broker.Record, base, firstTS int64) []byte {
	tsDelta := r.Timestamp.UnixMilli() - firstTS
	offDelta := r.Offset - base
	n := 1 + varintLen(tsDelta) + varintLen(offDelta) + bytesLen(r.Key) + bytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	dst = binary.AppendVarint(dst, int64(n))
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offDelta)
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}
