package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Kafka's record batch v2 (magic 2), the unit the log stores. Layout, big
// endian, as Kafka writes it:
//
//	0  int64  base offset (assigned by the log)
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
//	61        records (compressed as a whole when the codec is not none)
//
// The CRC covers the bytes from the attributes on, so the log rewrites the
// base offset and leader epoch without recomputing it, as Kafka does.
const BatchHeaderLen = 61

// Attribute bits of a record batch.
const (
	attrCodecMask     = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

// Compression codecs (attributes bits 0-2).
const (
	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLz4    = 3
	codecZstd   = 4
)

// BatchHeader is the fixed 61-byte header of a record batch v2.
type BatchHeader struct {
	BaseOffset      int64
	Length          int32
	LeaderEpoch     int32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// Codec is the batch's compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
func (h *BatchHeader) Codec() int { return int(h.Attributes & attrCodecMask) }

// Control reports a control batch (transaction markers), which holds no user records.
func (h *BatchHeader) Control() bool { return h.Attributes&attrControl != 0 }

// NextOffset is the offset after the batch's last record: base offset + last
// offset delta + 1 (compaction may remove records, never this span).
func (h *BatchHeader) NextOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) + 1 }

// ParseBatchHeader parses and checks the header of the one record batch b
// holds: magic 2, a length that covers exactly b, a record count that fits the
// offset span. It does not check the CRC (CheckBatchCRC does).
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	if len(b) < BatchHeaderLen {
		return BatchHeader{}, fmt.Errorf("record batch of %d bytes is shorter than its %d-byte header", len(b), BatchHeaderLen)
	}
	if m := int8(b[16]); m != 2 {
		return BatchHeader{}, fmt.Errorf("record batch magic %d: only v2 is stored", m)
	}
	h := BatchHeader{
		BaseOffset:      int64(binary.BigEndian.Uint64(b[0:])),
		Length:          int32(binary.BigEndian.Uint32(b[8:])),
		LeaderEpoch:     int32(binary.BigEndian.Uint32(b[12:])),
		Attributes:      int16(binary.BigEndian.Uint16(b[21:])),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:])),
		FirstTimestamp:  int64(binary.BigEndian.Uint64(b[27:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[35:])),
		ProducerID:      int64(binary.BigEndian.Uint64(b[43:])),
		ProducerEpoch:   int16(binary.BigEndian.Uint16(b[51:])),
		BaseSequence:    int32(binary.BigEndian.Uint32(b[53:])),
		NumRecords:      int32(binary.BigEndian.Uint32(b[57:])),
	}
	if int64(h.Length)+12 != int64(len(b)) {
		return BatchHeader{}, fmt.Errorf("record batch length %d does not match its %d bytes", h.Length, len(b))
	}
	if h.LastOffsetDelta < 0 || h.NumRecords < 0 || int64(h.NumRecords) > int64(h.LastOffsetDelta)+1 {
		return BatchHeader{}, fmt.Errorf("record batch holds %d records over an offset span of %d", h.NumRecords, int64(h.LastOffsetDelta)+1)
	}
	return h, nil
}

// CheckBatchCRC reports whether the batch's CRC-32C matches its bytes.
func CheckBatchCRC(b []byte) bool {
	return len(b) >= BatchHeaderLen && crc32.Checksum(b[21:], castagnoli) == binary.BigEndian.Uint32(b[17:])
}

// batchRecord is one record of a batch, still encoded: body holds
// attributes, deltas, key, value and headers (after the length prefix).
type batchRecord struct {
	offsetDelta int32
	tsDelta     int64
	raw         []byte // the whole record, length prefix included
}

// maxDecodedBatch bounds what one stored batch may decompress to. The Kafka
// layer bounds produced batches by max.message.bytes before they reach the
// log, and every entry's CRC-32C is checked before decoding, so this only
// keeps a damaged or hostile in-process caller from sizing an allocation.
const maxDecodedBatch = 256 << 20

// batchRecords decompresses a checked batch and splits its records.
func batchRecords(b []byte, h *BatchHeader) ([]batchRecord, []byte, error) {
	raw, err := decompress(h.Codec(), b[BatchHeaderLen:], maxDecodedBatch)
	if err != nil {
		return nil, nil, err
	}
	// Each record takes at least 7 bytes, so the count is bounded by the bytes.
	if int64(h.NumRecords) > int64(len(raw))/7+1 {
		return nil, nil, fmt.Errorf("record batch claims %d records in %d bytes", h.NumRecords, len(raw))
	}
	recs := make([]batchRecord, 0, h.NumRecords)
	p := raw
	for len(p) > 0 {
		length, n := binary.Varint(p)
		if n <= 0 || length < 6 || length > int64(len(p)-n) {
			return nil, nil, fmt.Errorf("record %d: bad length", len(recs))
		}
		body := p[n : n+int(length)]
		r := reader{b: body[1:]} // attributes unused
		ts := r.varint()
		od := r.varint()
		if r.bad || od < 0 || od > int64(h.LastOffsetDelta) {
			return nil, nil, fmt.Errorf("record %d: bad offset delta", len(recs))
		}
		recs = append(recs, batchRecord{offsetDelta: int32(od), tsDelta: ts, raw: p[:n+int(length)]})
		p = p[n+int(length):]
	}
	if len(recs) != int(h.NumRecords) {
		return nil, nil, fmt.Errorf("record batch claims %d records, holds %d", h.NumRecords, len(recs))
	}
	return recs, raw, nil
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
	if h.Codec() == codecNone {
		b = bytes.Clone(b) // records alias our own copy, never the caller's buffer
	}
	recs, _, err := batchRecords(b, &h)
	if err != nil {
		return dst, err
	}
	for i, br := range recs {
		off := h.BaseOffset + int64(br.offsetDelta)
		if off < from || off >= to {
			continue
		}
		rec, err := decodeKafkaRecord(br.raw, &h)
		if err != nil {
			return dst, fmt.Errorf("record %d: %w", i, err)
		}
		dst = append(dst, rec)
	}
	return dst, nil
}

// reader decodes Kafka's zig-zag varints and varint-length byte fields,
// failing (never panicking) on short or invalid input.
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

// BatchFormat says how Append encodes the batches it writes.
type BatchFormat struct {
	// Codec compresses the records of each batch (CodecByName; 0 none); a
	// batch it would not make smaller is written uncompressed.
	Codec int
	// LogAppendTime sets the batches' timestamp type to LogAppendTime (the
	// records' timestamps are then the append time, set by the caller).
	LogAppendTime bool
}

// CodecByName returns the record batch codec of a Kafka compression.type
// value: uncompressed 0, gzip 1, snappy 2, lz4 3, zstd 4. ok is false for
// "producer" (keep what the producer sent), "" and unknown names.
func CodecByName(name string) (codec int, ok bool) {
	switch name {
	case "uncompressed", "none":
		return codecNone, true
	case "gzip":
		return codecGzip, true
	case "snappy":
		return codecSnappy, true
	case "lz4":
		return codecLz4, true
	case "zstd":
		return codecZstd, true
	}
	return 0, false
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
	raw, err := decompress(h.Codec(), b[BatchHeaderLen:], maxDecodedBatch)
	if err != nil {
		return nil, fmt.Errorf("recompress batch: %w", err)
	}
	body := raw
	if codec != codecNone {
		if body, err = compress(codec, raw); err != nil {
			return nil, fmt.Errorf("recompress batch: %w", err)
		}
	}
	out := append(make([]byte, 0, BatchHeaderLen+len(body)), b[:BatchHeaderLen]...)
	out = append(out, body...)
	binary.BigEndian.PutUint16(out[21:], uint16(h.Attributes)&^attrCodecMask|uint16(codec))
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out, nil
}

// encodeBatch encodes recs as one record batch v2 with base offset
// recs[0].Offset and offset deltas from their offsets (increasing),
// compressed and typed as f says. prod, if set, gives the producer id, epoch
// and base sequence.
func encodeBatch(dst []byte, recs []Record, prod *ProducerBatch, f BatchFormat) []byte {
	start := len(dst)
	base := recs[0].Offset
	first := recTS(&recs[0])
	maxTS := first
	for i := range recs {
		maxTS = max(maxTS, recTS(&recs[i]))
	}
	pid, pepoch, pseq := int64(-1), int16(-1), int32(-1)
	if prod != nil {
		pid, pepoch, pseq = prod.ID, prod.Epoch, prod.FirstSeq
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(base))
	dst = append(dst, 0, 0, 0, 0) // length, set below
	dst = binary.BigEndian.AppendUint32(dst, 0)
	dst = append(dst, 2, 0, 0, 0, 0) // magic; crc set below
	attrs := uint16(0)
	if f.LogAppendTime {
		attrs |= attrLogAppendTime
	}
	dst = binary.BigEndian.AppendUint16(dst, attrs)
	dst = binary.BigEndian.AppendUint32(dst, uint32(recs[len(recs)-1].Offset-base))
	dst = binary.BigEndian.AppendUint64(dst, uint64(first))
	dst = binary.BigEndian.AppendUint64(dst, uint64(maxTS))
	dst = binary.BigEndian.AppendUint64(dst, uint64(pid))
	dst = binary.BigEndian.AppendUint16(dst, uint16(pepoch))
	dst = binary.BigEndian.AppendUint32(dst, uint32(pseq))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	for i := range recs {
		dst = appendKafkaRecord(dst, &recs[i], recs[i].Offset-base, first)
	}
	if f.Codec != codecNone {
		// Compressing records this package just encoded cannot fail for a
		// known codec; an unknown one leaves the batch uncompressed, and so
		// does a codec that does not make it smaller (a batch of one short
		// record: zstd's frame costs more than it saves).
		if body, err := compress(f.Codec, dst[start+BatchHeaderLen:]); err == nil && len(body) < len(dst)-start-BatchHeaderLen {
			dst = append(dst[:start+BatchHeaderLen], body...)
			binary.BigEndian.PutUint16(dst[start+21:], attrs|uint16(f.Codec))
		}
	}
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[start+17:], crc32.Checksum(dst[start+21:], castagnoli))
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

func kafkaBytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendKafkaRecord(dst []byte, r *Record, offDelta, firstTS int64) []byte {
	tsDelta := recTS(r) - firstTS
	n := 1 + varintLen(tsDelta) + varintLen(offDelta) + kafkaBytesLen(r.Key) + kafkaBytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + kafkaBytesLen(h.Value)
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

// kafkaRecordLen is the encoded size of r in a batch (length prefix included),
// bounded above for the deltas.
func kafkaRecordLen(r *Record) int {
	n := 1 + 2*binary.MaxVarintLen64 + kafkaBytesLen(r.Key) + kafkaBytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + kafkaBytesLen(h.Value)
	}
	return n + varintLen(int64(n))
}

// rebuildBatch returns a copy of the checked batch b holding only the records
// keep accepts, with their offset and timestamp deltas, the header's offset
// span, timestamps and producer fields kept, compressed again with the
// batch's codec. It reports how many records were removed.
func rebuildBatch(b []byte, keep func(off int64, raw []byte) bool) ([]byte, int, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return nil, 0, err
	}
	if h.Control() || h.NumRecords == 0 {
		return nil, 0, nil
	}
	recs, _, err := batchRecords(b, &h)
	if err != nil {
		return nil, 0, err
	}
	var body []byte
	kept := 0
	for _, r := range recs {
		if keep(h.BaseOffset+int64(r.offsetDelta), r.raw) {
			body = append(body, r.raw...)
			kept++
		}
	}
	if kept == len(recs) {
		return nil, 0, nil
	}
	codec := h.Codec()
	if kept > 0 && codec != codecNone {
		if body, err = compress(codec, body); err != nil {
			return nil, 0, err
		}
	}
	if kept == 0 {
		codec = codecNone // an empty batch keeps the offset span and producer fields (Kafka does the same)
		body = nil
	}
	out := append(make([]byte, 0, BatchHeaderLen+len(body)), b[:BatchHeaderLen]...)
	out = append(out, body...)
	attrs := uint16(h.Attributes)&^attrCodecMask | uint16(codec)
	binary.BigEndian.PutUint16(out[21:], attrs)
	binary.BigEndian.PutUint32(out[57:], uint32(kept))
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out, len(recs) - kept, nil
}

// decodeKafkaRecord decodes one raw record of a batch (as batchRecords split
// it); keys, values and header values alias raw. The producer fields of an
// idempotent batch go on its record at the last offset delta, where the
// per-record format kept them.
func decodeKafkaRecord(raw []byte, h *BatchHeader) (Record, error) {
	_, n := binary.Varint(raw)
	r := reader{b: raw[n+1:]}
	ts := h.FirstTimestamp + r.varint()
	od := r.varint()
	if h.Attributes&attrLogAppendTime != 0 {
		ts = h.MaxTimestamp
	}
	rec := Record{Offset: h.BaseOffset + od, Timestamp: time.UnixMilli(ts)}
	rec.Key = r.bytes()
	rec.Value = r.bytes()
	nh := r.varint()
	if r.bad || nh < 0 || nh > int64(len(r.b)) {
		return Record{}, errors.New("malformed record")
	}
	if nh > 0 {
		rec.Headers = make([]Header, nh)
		for j := range rec.Headers {
			k := r.bytes()
			if k == nil {
				r.bad = true // header keys are never null
			}
			rec.Headers[j] = Header{Key: string(k), Value: r.bytes()}
		}
	}
	if r.bad || len(r.b) != 0 {
		return Record{}, errors.New("malformed record")
	}
	if od == int64(h.LastOffsetDelta) && h.ProducerID >= 0 && h.BaseSequence >= 0 {
		rec.Producer = &ProducerBatch{ID: h.ProducerID, Epoch: h.ProducerEpoch, FirstSeq: h.BaseSequence,
			LastSeq: int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (1 << 31))}
	}
	return rec, nil
}

var (
	zstdDec  sync.Pool // *zstd.Decoder
	zstdEnc  sync.Pool // *zstd.Encoder
	gzipRd   sync.Pool // *gzip.Reader
	lz4Rd    sync.Pool // *lz4.Reader
	errLarge = fmt.Errorf("record batch decompresses to more than %d bytes", maxDecodedBatch)
)

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// decompress decodes a stored batch's records with its codec, producing at
// most limit bytes. The uncompressed case returns src itself.
func decompress(codec int, src []byte, limit int) ([]byte, error) {
	switch codec {
	case codecNone:
		return src, nil
	case codecGzip:
		zr, _ := gzipRd.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		defer gzipRd.Put(zr)
		if err := zr.Reset(bytes.NewReader(src)); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return readAllLimited(zr, len(src), limit, "gzip")
	case codecSnappy:
		if !bytes.HasPrefix(src, xerialMagic) {
			return snappyBlock(nil, src, limit)
		}
		if len(src) < 16 {
			return nil, errors.New("snappy: truncated xerial header")
		}
		var out []byte
		for src = src[16:]; len(src) > 0; {
			if len(src) < 4 {
				return nil, errors.New("snappy: truncated xerial chunk")
			}
			n := binary.BigEndian.Uint32(src)
			if uint64(n) > uint64(len(src)-4) {
				return nil, errors.New("snappy: xerial chunk exceeds the data")
			}
			var err error
			if out, err = snappyBlock(out, src[4:4+n], limit); err != nil {
				return nil, err
			}
			src = src[4+n:]
		}
		return out, nil
	case codecLz4:
		lr, _ := lz4Rd.Get().(*lz4.Reader)
		if lr == nil {
			lr = lz4.NewReader(nil)
		}
		defer lz4Rd.Put(lr)
		lr.Reset(bytes.NewReader(src))
		return readAllLimited(lr, len(src), limit, "lz4")
	case codecZstd:
		d, _ := zstdDec.Get().(*zstd.Decoder)
		if d == nil {
			var err error
			d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
		}
		defer zstdDec.Put(d)
		out, err := d.DecodeAll(src, nil)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

func snappyBlock(dst, block []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > limit-len(dst) {
		return nil, errLarge
	}
	out, err := s2.Decode(nil, block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return append(dst, out...), nil
}

func readAllLimited(r io.Reader, srcLen, limit int, name string) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(limit, max(4*srcLen, 4<<10))))
	n, err := io.Copy(buf, io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if n > int64(limit) {
		return nil, errLarge
	}
	return buf.Bytes(), nil
}

// compress encodes records with codec, for a batch compaction rewrote.
func compress(codec int, raw []byte) ([]byte, error) {
	switch codec {
	case codecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case codecSnappy:
		return s2.EncodeSnappy(nil, raw), nil
	case codecLz4:
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case codecZstd:
		e, _ := zstdEnc.Get().(*zstd.Encoder)
		if e == nil {
			var err error
			if e, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1)); err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
		}
		defer zstdEnc.Put(e)
		return e.EncodeAll(raw, nil), nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}
