package recordbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed marks records that do not decode: a bad length prefix, a
// field cut short, bytes left over, or a record count the bytes do not hold.
var ErrMalformed = errors.New("malformed record")

// RecordHeader is one header of a record; keys are never null.
type RecordHeader struct {
	Key   string
	Value []byte
}

// Record is one record of a batch as encoded: the deltas are relative to the
// batch header's base offset and first timestamp. Key, Value and header
// values alias the bytes decoded; a nil Key or Value is null.
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int64
	Key, Value     []byte
	Headers        []RecordHeader
}

// minRecordBody is the smallest record body (after its length prefix):
// attributes, timestamp delta, offset delta, key length, value length and
// header count take at least one byte each.
const minRecordBody = 6

// framing follows the length prefixes of a batch's records as the
// decompressed bytes arrive, so a batch whose records cannot be what its
// header claims fails at the first bad record, and a caller's record slice is
// sized only once the bytes have proved the records are there.
type framing struct {
	want  int32 // records the batch header claims
	count int32 // complete records seen
	pos   int   // start of the first record not yet seen
}

// advance steps over the complete records in raw[f.pos:]; final says raw is
// all there is.
func (f *framing) advance(raw []byte, final bool) error {
	for f.pos < len(raw) {
		length, n := binary.Varint(raw[f.pos:])
		if n == 0 {
			break // length prefix cut by the chunk end
		}
		if n < 0 || length < minRecordBody {
			return fmt.Errorf("%w: record %d: bad length", ErrMalformed, f.count)
		}
		if f.count >= f.want {
			return fmt.Errorf("%w: record batch has bytes after its %d records", ErrMalformed, f.want)
		}
		if length > int64(len(raw)-f.pos-n) {
			break // record cut by the chunk end
		}
		f.pos += n + int(length)
		f.count++
	}
	if final && (f.pos != len(raw) || f.count != f.want) {
		if f.pos != len(raw) {
			return fmt.Errorf("%w: record %d: bad length", ErrMalformed, f.count)
		}
		return fmt.Errorf("%w: record batch claims %d records but holds %d", ErrMalformed, f.want, f.count)
	}
	return nil
}

// DecompressRecords returns the records of a batch with header h, records
// being the bytes after the header: decompressed with the batch's codec
// (records itself when uncompressed), never more than limit bytes
// (ErrTooLarge, checked while decompressing: memory grows with the bytes
// produced, never with a size the data claims), and framed: exactly
// h.NumRecords length-prefixed records of at least 7 bytes fill the result
// (ErrMalformed at the first that does not fit).
func DecompressRecords(h *Header, records []byte, limit int) ([]byte, error) {
	if h.NumRecords < 0 {
		return nil, fmt.Errorf("%w: record batch claims %d records", ErrMalformed, h.NumRecords)
	}
	f := framing{want: h.NumRecords}
	return Decompress(h.Codec(), records, limit, f.advance)
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

// DecodeRecord decodes the record at the start of raw (decompressed records,
// as DecompressRecords returns them) and returns it with the number of bytes
// it took, length prefix included. Errors wrap ErrMalformed. The header slice
// is bounded by the record's bytes.
func DecodeRecord(raw []byte) (Record, int, error) {
	r := reader{b: raw}
	length := r.varint()
	if r.bad || length < minRecordBody || length > int64(len(r.b)) {
		return Record{}, 0, fmt.Errorf("%w: bad length", ErrMalformed)
	}
	total := len(raw) - len(r.b) + int(length)
	r.b = r.b[:length]
	var rec Record
	rec.Attributes = r.int8()
	rec.TimestampDelta = r.varint()
	rec.OffsetDelta = r.varint()
	rec.Key = r.bytes()
	rec.Value = r.bytes()
	nh := r.varint()
	if r.bad || nh < 0 || nh > int64(len(r.b)) {
		return Record{}, 0, ErrMalformed
	}
	if nh > 0 {
		rec.Headers = make([]RecordHeader, nh)
		for i := range rec.Headers {
			k := r.bytes()
			if k == nil && !r.bad {
				r.bad = true // header keys are never null
			}
			rec.Headers[i] = RecordHeader{Key: string(k), Value: r.bytes()}
		}
	}
	if r.bad || len(r.b) != 0 {
		return Record{}, 0, ErrMalformed
	}
	return rec, total, nil
}

func varintLen(v int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutVarint(tmp[:], v)
}

// BytesLen is the encoded size of a varint-length byte field (nil is null).
func BytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

// recordBodyLen is the size of a record after its length prefix.
func recordBodyLen(offDelta, tsDelta int64, key, value []byte, headers []RecordHeader) int {
	n := 1 + varintLen(tsDelta) + varintLen(offDelta) + BytesLen(key) + BytesLen(value) + varintLen(int64(len(headers)))
	for _, h := range headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + BytesLen(h.Value)
	}
	return n
}

// RecordLenBound bounds the encoded size of a record (length prefix
// included) whatever its deltas, for sizing buffers before encoding.
func RecordLenBound(key, value []byte, headers []RecordHeader) int {
	n := recordBodyLen(0, 0, key, value, headers) - 2 + 2*binary.MaxVarintLen64
	return n + varintLen(int64(n))
}

// AppendRecord appends one record (attributes 0) to dst.
func AppendRecord(dst []byte, offDelta, tsDelta int64, key, value []byte, headers []RecordHeader) []byte {
	dst = binary.AppendVarint(dst, int64(recordBodyLen(offDelta, tsDelta, key, value, headers)))
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offDelta)
	dst = appendBytes(dst, key)
	dst = appendBytes(dst, value)
	dst = binary.AppendVarint(dst, int64(len(headers)))
	for _, h := range headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}

// RecordKey reads only the offset delta and the key of the record at the
// start of raw (decompressed records, as DecompressRecords returns them) and
// returns them with the record's whole length, prefix included, so a caller
// can step over the rest: compaction's scan for each key's latest offset
// needs no more, and decoding values and headers doubled its cost. Errors
// wrap ErrMalformed.
func RecordKey(raw []byte) (offDelta int64, key []byte, n int, err error) {
	r := reader{b: raw}
	length := r.varint()
	if r.bad || length < minRecordBody || length > int64(len(r.b)) {
		return 0, nil, 0, fmt.Errorf("%w: bad length", ErrMalformed)
	}
	total := len(raw) - len(r.b) + int(length)
	r.b = r.b[:length]
	r.int8()
	r.varint()
	offDelta = r.varint()
	key = r.bytes()
	if r.bad {
		return 0, nil, 0, fmt.Errorf("%w: bad record", ErrMalformed)
	}
	return offDelta, key, total, nil
}
